"""The leaderboard harness: score models on benchmarks with each dataset's standard protocol.

For every (model, dataset) it runs :func:`reidzoo.eval.evaluate` (the same pipeline the trainer uses) for each
protocol, with the feature cache (:mod:`reidzoo.eval.cache`: keyed by the weights actually loaded and each frame's
path, size and mtime, safe under concurrent runs), averages split datasets over their splits
(:data:`reidzoo.spec.datasets.DATASETS` says how many), and puts a paper's number beside a row only when the row is
the paper's setting (:mod:`reidzoo.eval.papers`). The files are written by :mod:`reidzoo.eval.report`.

    reidzoo benchmark --models sinet_resnet50.mars --dataset mars --root /data/mars
    torchrun --nproc_per_node 4 -m reidzoo benchmark --models ... --dataset mars --root ...   # sharded
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn as nn

from ..data import build_dataset
from ..models import create_model, get_pretrained_cfg, split_model_name_tag
from ..spec.datasets import num_splits
from ..spec.model_cfg import DEFAULT_DISTANCE, DEFAULT_TEST_SAMPLING
from .cache import FeatureCache, cache_namespace, weights_id
from .distributed import init_distributed
from .metrics import RankResult
from .papers import PAPER_RESULTS, load_paper_results, model_facts, paper_for
from .pipeline import embed_tracklets, evaluate, resolve_protocol
from .protocols import average_results, build_eval_sets
from .report import LeaderboardRow, RankedExample, format_markdown, plot_cmc, plot_ranked_results, write_outputs

__all__ = ['run_leaderboard', 'RowKey', 'LeaderboardRow', 'FeatureCache', 'weights_id', 'load_paper_results',
           'format_markdown', 'write_outputs', 'plot_cmc', 'plot_ranked_results', 'PAPER_RESULTS']


@dataclass(frozen=True)
class RowKey:
    """What makes a leaderboard row distinct for one model and dataset."""
    protocol: str
    rerank: bool


def _resolve_model(spec: str, device: torch.device, model_kwargs: dict[str, Any]) -> tuple[nn.Module, bool]:
    """The model named by ``spec`` and whether weights were loaded (False: random init)."""
    path = Path(spec)
    if path.is_dir() and (path / 'config.json').exists():
        spec = f'local-dir:{path}'
    pretrained = True
    if not spec.startswith(('hf-hub:', 'local-dir:')):
        arch, tag = split_model_name_tag(spec)
        pretrained = bool(tag) or bool(get_pretrained_cfg(arch).get('hf_hub_id'))
    return create_model(spec, pretrained=pretrained, **model_kwargs).eval().to(device), pretrained


def _dataset_variants(name: str, root: Optional[str], kwargs: dict[str, Any]) -> Iterator[Any]:
    """The dataset, or each of its splits when its results are averaged over splits (iLIDS-VID, PRID-2011, and
    SynthVID written in their layouts; an explicit ``split_id`` means that split only)."""
    first = build_dataset(name, root, **kwargs)
    yield first
    if 'split_id' in kwargs:
        return
    for split in range(1, num_splits(name, layout=getattr(first, 'layout', None))):
        yield build_dataset(name, root, **dict(kwargs, split_id=split))


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise ValueError(f'batch_size must be a positive number of clips per forward pass, got {batch_size}')


def run_leaderboard(
        models: Sequence[str],
        datasets: Sequence[tuple[str, Optional[str], dict[str, Any]]],
        *,
        protocols: Optional[Sequence[str]] = None,
        output_dir: str | Path = 'output/leaderboard',
        cache_dir: str | Path | None = None,
        rerank: bool = False,
        batch_size: int = 32,
        device: str | None = None,
        model_kwargs: Optional[dict[str, Any]] = None,
        num_workers: int = 0,
        progress: bool = True,
        plots: bool = True,
) -> list[LeaderboardRow]:
    """Score ``models`` on ``datasets`` (``(name, root, build kwargs)``) and write the leaderboard files.

    Args:
        models: ``arch.tag``, ``hf-hub:org/repo@rev``, ``local-dir:/path`` (or a folder written by save_pretrained).
        datasets: e.g. ``[('mars', '/data/mars', {})]``; iLIDS-VID and PRID run all 10 splits and average. A
            SynthVID folder is read with its own generation record (no need to repeat its parameters).
        protocols: protocol names; default each dataset's ``default_protocol``.
        output_dir: folder for ``leaderboard.json``, ``leaderboard.md`` and the plots.
        cache_dir: feature cache (default ``<output_dir>/features``).
        rerank: also add k-reciprocal re-ranked rows.
        batch_size: clips per forward pass (>= 1).
        device: torch device (default CUDA if available).
        model_kwargs: architecture arguments for every model.
        num_workers: data-loading workers.
        progress: show progress bars.
        plots: write the CMC and ranked-results pictures (False: no image at all).

    Returns:
        The rows, in (model, dataset, protocol, re-ranking) order.
    """
    _check_batch_size(batch_size)
    out = Path(output_dir)
    cache_root = Path(cache_dir) if cache_dir else out / 'features'
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    rank = init_distributed(dev).rank
    papers = load_paper_results()
    extract_kwargs = dict(batch_size=batch_size, num_workers=num_workers, device=dev, progress=progress)
    rows: list[LeaderboardRow] = []
    example: Optional[tuple[str, str, Any, str, FeatureCache, nn.Module]] = None
    for spec in models:
        model, weights_loaded = _resolve_model(spec, dev, model_kwargs or {})
        cfg = model.pretrained_cfg
        facts = model_facts(model, weights_loaded)
        distance = cfg.get('distance') or DEFAULT_DISTANCE
        cache = FeatureCache(cache_root, cache_namespace(model))
        for ds_name, root, kwargs in datasets:
            results: dict[RowKey, list[RankResult]] = {}
            before = len(cache)
            for ds in _dataset_variants(ds_name, root, kwargs):
                for proto in (protocols or [resolve_protocol(ds).name]):
                    for rr in ((False, True) if rerank else (False,)):
                        result = evaluate(model, ds, proto, cache=cache, distance=distance, rerank=rr, shard=True,
                                          **extract_kwargs)
                        results.setdefault(RowKey(proto, rr), []).append(result)
                    if example is None and plots:
                        example = (spec, ds_name, ds, proto, cache, model)
            extracted = len(cache) - before
            for key, split_results in results.items():
                result = average_results(split_results)  # iLIDS-VID / PRID: mean over the 10 splits
                metrics = {k: v for k, v in result.as_dict().items() if k in ('mAP', 'mINP') or k.startswith('rank')}
                paper, source = paper_for(facts, ds_name, key.protocol, key.rerank, papers)
                n = len(split_results)
                rows.append(LeaderboardRow(
                    model=spec, dataset=ds_name + (f' ({n} splits)' if n > 1 else ''), protocol=key.protocol,
                    metrics=metrics, cmc=[float(c) for c in result.cmc], num_queries=int(split_results[0].num_queries),
                    num_gallery=int(split_results[0].num_gallery), distance=distance,
                    test_sampling=cfg.get('test_sampling') or DEFAULT_TEST_SAMPLING, rerank=key.rerank, paper=paper, paper_source=source,
                    extracted=extracted))
    if rank == 0:
        write_outputs(rows, out, _ranked_example(example, extract_kwargs) if plots else None, plots=plots)
    return rows


def _ranked_example(example: Optional[tuple], extract_kwargs: dict[str, Any]) -> Optional[RankedExample]:
    """The first (model, dataset) evaluated, with its embeddings (all in the cache by now)."""
    if example is None:
        return None
    spec, ds_name, ds, proto, cache, model = example
    sets = build_eval_sets(ds, proto)
    feats, _ = embed_tracklets(model, sets.unique_tracklets, cache, **extract_kwargs)
    return RankedExample(model=spec, dataset=ds_name, sets=sets, feats=feats,
                         distance=model.pretrained_cfg.get('distance') or DEFAULT_DISTANCE)
