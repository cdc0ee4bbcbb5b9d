"""Gallery building blocks: tracklet metadata, embedding tracklets with a zoo model, reading ``reidzoo extract`` files.

The metadata row of a tracklet holds what a result needs to be shown and traced back: ``name`` (its folder, or for a
dataset ``Tracklet`` its first frame, since MARS-style layouts share one folder per person), ``thumbnail`` (its
middle frame, the one drawn in result strips), ``num_frames``, ``camid`` and ``pid`` (-1 when unknown, as for a
user's own folders).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch.nn as nn

from ..eval.extract import extract_features, list_frames
from ..models import split_model_name_tag
from ..spec.model_cfg import DEFAULT_DISTANCE, DEFAULT_TEST_SAMPLING
from .index import GalleryIndex

__all__ = ['tracklet_metadata', 'model_provenance', 'embed_tracklets', 'build_gallery_index', 'read_embeddings_file',
           'query_model_spec']


def tracklet_metadata(frames: Sequence[str], *, name: Optional[str] = None, pid: int = -1,
                      camid: int = -1) -> dict[str, Any]:
    """The metadata row of one tracklet (absolute paths, so results stay drawable from any working folder)."""
    frames = [os.path.abspath(f) for f in frames]
    folder = os.path.dirname(frames[0]) if frames else ''
    return {'name': name or folder, 'path': folder, 'thumbnail': frames[len(frames) // 2] if frames else None,
            'num_frames': len(frames), 'camid': int(camid), 'pid': int(pid)}


def model_provenance(model: nn.Module, name: Optional[str] = None, *, pretrained: bool = True,
                     model_kwargs: Optional[Mapping[str, Any]] = None,
                     test_sampling: Optional[str] = None) -> dict[str, Any]:
    """What ``index.json`` records about the model, so ``reidzoo search`` can embed queries the same way."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return {'name': name or '', 'architecture': cfg.get('architecture', ''), 'tag': cfg.get('tag', ''),
            'pretrained': bool(pretrained), 'model_kwargs': dict(model_kwargs or {}),
            'test_sampling': test_sampling or cfg.get('test_sampling') or DEFAULT_TEST_SAMPLING,
            'distance': cfg.get('distance') or DEFAULT_DISTANCE,
            'num_features': int(getattr(model, 'num_features', 0))}


def embed_tracklets(model: nn.Module, tracklets: Sequence[Any],
                    **extract_kwargs: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Embed tracklets (folders of frames, or ``Tracklet`` objects with pid/camid) with the model's own test
    sampling (:func:`reidzoo.eval.extract.extract_features`); returns ``(embeddings, metadata rows)``."""
    items, meta = [], []
    for t in tracklets:
        if hasattr(t, 'frames'):  # a dataset Tracklet: pid and camid are known
            items.append(t)
            # named by its first frame: MARS-style layouts keep all tracklets of a person in one folder
            meta.append(tracklet_metadata(t.frames, name=os.path.abspath(t.frames[0]), pid=t.pid, camid=t.camid))
        else:
            frames = list_frames(t)
            items.append(frames)
            meta.append(tracklet_metadata(frames, name=str(t)))
    feats = extract_features(model, items, **extract_kwargs)
    return feats.numpy(), meta


def build_gallery_index(model: nn.Module, tracklets: Sequence[Any], *, kind: str = 'auto',
                        metric: Optional[str] = None, name: Optional[str] = None, pretrained: bool = True,
                        model_kwargs: Optional[Mapping[str, Any]] = None,
                        index_kwargs: Optional[Mapping[str, Any]] = None,
                        **extract_kwargs: Any) -> GalleryIndex:
    """Embed ``tracklets`` with ``model`` and index them; ``metric`` defaults to the model's distance.

    ``name`` / ``pretrained`` / ``model_kwargs`` say how to rebuild the model (e.g. ``'tp_resnet50.synthvid'``); they
    are stored in the index so queries can be embedded by the same model.
    """
    emb, meta = embed_tracklets(model, tracklets, **extract_kwargs)
    metric = metric or model.pretrained_cfg.get('distance') or DEFAULT_DISTANCE
    provenance = model_provenance(model, name, pretrained=pretrained, model_kwargs=model_kwargs,
                                  test_sampling=extract_kwargs.get('test_sampling'))
    return GalleryIndex.build(emb, meta, metric=metric, kind=kind, model=provenance, **dict(index_kwargs or {}))


def read_embeddings_file(path: Union[str, os.PathLike]) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """Read a ``reidzoo extract`` output: ``.safetensors`` (tensor ``embeddings``, JSON metadata ``reidzoo``) or
    ``.npy`` with its ``.json`` sidecar. Returns ``(embeddings, metadata rows, provenance)``; metadata rows are
    built from the recorded tracklet folders (their frames, if still there, give thumbnails)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'embeddings file {path} not found (write one with `reidzoo extract ... --out {path}`)')
    if path.suffix == '.npy':
        emb = np.load(path, allow_pickle=False)
        side = path.with_suffix('.json')
        info = json.loads(side.read_text()) if side.is_file() else {}
    elif path.suffix == '.safetensors':
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), 'np') as f:
                if 'embeddings' not in f.keys():
                    raise ValueError(f'{path} has no tensor "embeddings" (found {sorted(f.keys())}): it was not '
                                     f'written by `reidzoo extract`')
                emb = f.get_tensor('embeddings')
                info = json.loads((f.metadata() or {}).get('reidzoo', '{}'))
        except SafetensorError as e:
            raise ValueError(f'{path} is not a readable safetensors file ({e}); re-run `reidzoo extract`') from e
    else:
        raise ValueError(f'{path}: expected a .safetensors or .npy file written by `reidzoo extract`')
    if emb.ndim != 2:
        raise ValueError(f'{path} holds embeddings of shape {emb.shape}; expected (num_tracklets, dim)')
    names = info.get('tracklets') or [f'row{i}' for i in range(len(emb))]
    if len(names) != len(emb):
        raise ValueError(f'{path} has {len(emb)} embeddings but its metadata names {len(names)} tracklets; re-run '
                         f'`reidzoo extract`')
    meta = []
    for n in names:
        try:
            meta.append(tracklet_metadata(list_frames(n), name=n))
        except (OSError, ValueError):  # folder moved or gone: keep the name, draw no thumbnail
            meta.append({'name': n, 'path': n, 'thumbnail': None, 'num_frames': 0, 'camid': -1, 'pid': -1})
    arch, tag = info.get('architecture', ''), info.get('tag', '')
    # only published weights (arch.tag) can be rebuilt from the file's record; otherwise search asks for --model
    provenance = {'name': f'{arch}.{tag}' if arch and tag else '', 'architecture': arch, 'tag': tag,
                  'pretrained': True, 'model_kwargs': {}, 'test_sampling': info.get('test_sampling', ''),
                  'distance': info.get('distance', ''), 'num_features': int(emb.shape[1]),
                  'embeddings_file': str(path.resolve())}
    return np.asarray(emb, dtype=np.float32), meta, provenance


def query_model_spec(index: GalleryIndex, model: Optional[str] = None, *, pretrained: Optional[bool] = None,
                     model_kwargs: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """How to build the query model: the caller's choice over what the index recorded.

    Raises ``ValueError`` when the index does not say which model made it and none is given, or when the given
    model is a different architecture (its embeddings would not be comparable).
    """
    recorded = index.model or {}
    name = model or recorded.get('name')
    if not name:
        raise ValueError('the index does not record which model made its embeddings: pass --model MODEL (the model '
                         'that embedded the gallery)')
    if model and recorded.get('architecture'):
        given_arch = split_model_name_tag(model)[0] if ':' not in model else None
        if given_arch is not None and given_arch != recorded['architecture']:
            built = f'{recorded.get("name") or "a"} ({recorded["architecture"]})'
            raise ValueError(f'the index was built with {built} but the query model is {model}: embeddings of '
                             f'different models are not comparable; drop --model or rebuild the index with {model}')
    if model:  # the caller names the weights: load them, with only the caller's architecture arguments
        recorded_pretrained, recorded_kwargs = True, {}
    else:
        recorded_pretrained, recorded_kwargs = recorded.get('pretrained', True), recorded.get('model_kwargs') or {}
    return {'name': name,
            'pretrained': recorded_pretrained if pretrained is None else pretrained,
            'model_kwargs': dict(recorded_kwargs if model_kwargs is None else model_kwargs),
            'test_sampling': recorded.get('test_sampling') or None}
