"""Published numbers (``reidzoo/spec/paper_results.json``) and when a measured row may stand beside one.

A paper's number is shown only beside a model that *is* the paper's setting: the same architecture, the same trunk,
input size and clip length as the row's ``config`` (what the authors' converted checkpoint runs with), weights
trained on the row's dataset, evaluated on that dataset under the row's protocol (and re-ranking). A random-init
model, a resnet18-trunk variant, SynthVID-trained weights run on MARS-layout data, or another protocol get "–".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ['PAPER_RESULTS', 'ModelFacts', 'model_facts', 'load_paper_results', 'paper_for']

PAPER_RESULTS = Path(__file__).resolve().parents[1] / 'spec' / 'paper_results.json'  # package data


@dataclass(frozen=True)
class ModelFacts:
    """What a paper row must agree with, read from the built model (not from what a config claims).

    Attributes:
        architecture: registered architecture name, e.g. ``'sinet_resnet50'``.
        backbone: trunk name without its pretrained tag (``'resnet50'`` for ``'resnet50.tv_in1k'``), '' if unknown.
        input_size: ``(3, H, W)`` the model was built for.
        num_frames: clip length the model was built for.
        trained_on: dataset the loaded weights were trained on (the weights' config ``dataset``), None when no
            weights were loaded or they do not say.
    """
    architecture: str
    backbone: str
    input_size: tuple[int, ...]
    num_frames: Optional[int]
    trained_on: Optional[str]


def _trunk(name: Any) -> str:
    return str(name).split('.')[0] if name else ''


def model_facts(model: Any, weights_loaded: bool = True) -> ModelFacts:
    """:class:`ModelFacts` of a built model; ``weights_loaded=False`` marks a random-init model (trained on nothing)."""
    cfg = getattr(model, 'pretrained_cfg', {}) or {}
    img_size = getattr(model, 'img_size', None)
    input_size = (3, *img_size) if img_size else tuple(cfg.get('input_size', ()))
    return ModelFacts(
        architecture=str(cfg.get('architecture', '')),
        backbone=_trunk((cfg.get('model_args') or {}).get('backbone')),
        input_size=tuple(int(v) for v in input_size),
        num_frames=getattr(model, 'num_frames', None) or cfg.get('num_frames'),
        trained_on=cfg.get('dataset') if weights_loaded else None)


def load_paper_results(path: Path = PAPER_RESULTS) -> list[dict[str, Any]]:
    """The rows of the published-results table (empty when the file is absent)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding='utf-8'))
    return data['results'] if isinstance(data, dict) and 'results' in data else data


def _matches(entry: dict[str, Any], facts: ModelFacts) -> bool:
    config = entry.get('config')
    if not config:  # a row that does not say what it was measured with cannot be matched
        return False
    return (entry.get('model') == facts.architecture
            and _trunk(config.get('backbone')) == facts.backbone
            and tuple(config.get('input_size', ())) == facts.input_size
            and config.get('num_frames') == facts.num_frames
            and facts.trained_on == entry.get('dataset'))


def paper_for(facts: ModelFacts, dataset: str, protocol: str, rerank: bool,
              papers: list[dict[str, Any]]) -> tuple[dict[str, float], str]:
    """``(metrics, source)`` of the paper row that matches, or ``({}, '')``.

    Args:
        facts: the evaluated model (:func:`model_facts`).
        dataset: name of the evaluated dataset.
        protocol: name of the protocol the row was scored with.
        rerank: whether the row is re-ranked.
        papers: :func:`load_paper_results`.
    """
    for entry in papers:
        if (entry.get('dataset') == dataset and entry.get('protocol') == protocol
                and bool(entry.get('rerank')) == rerank and _matches(entry, facts)):
            return entry.get('metrics', {}), entry.get('source', '')
    return {}, ''
