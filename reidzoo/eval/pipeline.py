"""The one evaluation pipeline: embed a dataset's tracklets, compute distances, rank under a protocol.

:func:`evaluate` is what the trainer, the leaderboard and the SynthVID colour-histogram baseline call, so a number
means the same thing wherever it is printed:

>>> result = evaluate(model, build_dataset('mars', '/data/MARS'))               # the dataset's default protocol
>>> result = evaluate(model, dataset, 'mars_official', cache='~/.cache/reidzoo/features')
>>> result.as_dict()['rank1'], result.mAP

:func:`evaluate_features` starts from embeddings (an array, or a function that embeds tracklets), for methods that
are not reidzoo models (e.g. hand-made colour histograms).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..spec.datasets import Protocol, default_protocol, get_protocol
from .cache import FeatureCache, cache_namespace, tracklet_key
from .distributed import gather_shards, init_distributed
from .extract import extract_features
from .metrics import RankResult
from .protocols import EvalSets, build_eval_sets, evaluate_protocol

__all__ = ['evaluate', 'evaluate_features', 'embed_tracklets', 'resolve_protocol']

Features = Union[np.ndarray, torch.Tensor]
EmbedFn = Callable[[list], Features]


def resolve_protocol(dataset: Any, protocol: Union[str, Protocol, None] = None) -> Protocol:
    """``protocol``, else the dataset object's ``default_protocol``, else the spec's default for its name."""
    if protocol is not None:
        return get_protocol(protocol)
    own = getattr(dataset, 'default_protocol', None)
    if own:
        return get_protocol(own)
    name = getattr(dataset, 'name', None)
    if not name:
        raise ValueError(f'{type(dataset).__name__} has neither default_protocol nor name: pass protocol=...')
    return get_protocol(default_protocol(name))


def embed_tracklets(
        model: Any,
        tracklets: Sequence[Any],
        cache: Optional[FeatureCache] = None,
        *,
        shard: bool = False,
        **extract_kwargs: Any,
) -> tuple[torch.Tensor, int]:
    """Embeddings of ``tracklets``: cached rows read, missing ones extracted (and added to ``cache``).

    Args:
        model: a reidzoo model or any object :func:`extract_features` accepts.
        tracklets: objects with ``.frames``.
        cache: feature cache for this model and settings (see :func:`cache_namespace`), or None.
        shard: split the extraction across ``torchrun`` ranks; every rank must then call this (a collective).
        **extract_kwargs: :func:`extract_features` options.

    Returns:
        ``(len(tracklets), D)`` float32 embeddings and how many tracklets were extracted (not read from the cache).
    """
    keys = [tracklet_key(t.frames) for t in tracklets] if cache is not None else []
    todo = cache.missing(keys) if cache is not None else list(range(len(tracklets)))
    if not todo:
        return cache.get(keys), 0
    rank, world, _ = init_distributed(extract_kwargs.get('device')) if shard else (0, 1, 0)
    feats = extract_features(model, [tracklets[i] for i in todo], rank=rank, world_size=world, **extract_kwargs)
    feats = gather_shards(feats, len(todo), world)
    if cache is None:
        return feats, len(todo)
    cache.add([keys[i] for i in todo], feats, persist=rank == 0)  # one writer per job; the others keep rows in RAM
    return cache.get(keys), len(todo)


def evaluate_features(
        features: Union[Features, EmbedFn],
        dataset: Any,
        protocol: Union[str, Protocol, None] = None,
        *,
        distance: str = 'cosine',
        rerank: Union[bool, dict] = False,
        chunk_size: Optional[int] = None,
        eval_sets: Optional[EvalSets] = None,
) -> RankResult:
    """Rank precomputed embeddings of ``dataset`` under ``protocol`` (default: the dataset's own).

    Args:
        features: ``(N, D)`` embeddings of ``build_eval_sets(dataset, protocol).unique_tracklets`` in that order,
            or a function ``embed(tracklets) -> (N, D)`` called with those tracklets.
        dataset: a parsed dataset (``.query``, ``.gallery``, optional ``.junk``, ``.name``).
        protocol: protocol name or :class:`Protocol`.
        distance: ``'cosine'``, ``'euclidean'`` or ``'sqeuclidean'``.
        rerank: k-reciprocal re-ranking (see :func:`evaluate_protocol`).
        chunk_size: query rows per chunk for distances and metrics.
        eval_sets: reuse sets already built for this dataset and protocol.

    Returns:
        :class:`RankResult` named after the protocol.
    """
    protocol = resolve_protocol(dataset, protocol)
    sets = eval_sets if eval_sets is not None else build_eval_sets(dataset, protocol)
    feats = features(list(sets.unique_tracklets)) if callable(features) else features
    return evaluate_protocol(feats, sets, protocol, distance=distance, rerank=rerank, chunk_size=chunk_size)


def evaluate(
        model: Any,
        dataset: Any,
        protocol: Union[str, Protocol, None] = None,
        *,
        cache: Union[FeatureCache, str, Path, None] = None,
        distance: Optional[str] = None,
        rerank: Union[bool, dict] = False,
        shard: bool = False,
        chunk_size: Optional[int] = None,
        **extract_kwargs: Any,
) -> RankResult:
    """Score ``model`` on ``dataset``: extract -> distances -> rank metrics, under one named protocol.

    Each tracklet the protocol ranks is embedded once (queries that are also gallery items included) with the
    model's own test sampling; the distance is the model's (``pretrained_cfg['distance']``) unless given.

    Args:
        model: a reidzoo model (or any object :func:`extract_features` accepts).
        dataset: a parsed dataset; split datasets (iLIDS-VID, PRID-2011) are one split here, average the splits'
            results with :func:`average_results`.
        protocol: protocol name or :class:`Protocol`; default the dataset's own.
        cache: a :class:`FeatureCache`, or a folder for one (the file is named by :func:`cache_namespace`, so
            changed weights or settings never read another model's rows).
        distance: override the model's distance.
        rerank: k-reciprocal re-ranking: True for the paper's settings, or a dict of its arguments.
        shard: split extraction across ``torchrun`` ranks (every rank must call :func:`evaluate`).
        chunk_size: query rows per chunk for distances and metrics.
        **extract_kwargs: :func:`extract_features` options (``batch_size``, ``num_workers``, ``device``, ``amp``,
            ``test_sampling``, ``seq_len``, ``progress``).

    Returns:
        :class:`RankResult`; ``result.as_dict()`` gives rank1/rank5/rank10/rank20/mAP/mINP.
    """
    protocol = resolve_protocol(dataset, protocol)
    if cache is not None and not isinstance(cache, FeatureCache):
        cache = FeatureCache(Path(cache).expanduser(), cache_namespace(model, **extract_kwargs))
    distance = distance or getattr(model, 'pretrained_cfg', {}).get('distance', 'cosine')
    sets = build_eval_sets(dataset, protocol)
    feats, _ = embed_tracklets(model, sets.unique_tracklets, cache, shard=shard, **extract_kwargs)
    return evaluate_features(feats, dataset, protocol, distance=distance, rerank=rerank, chunk_size=chunk_size,
                             eval_sets=sets)
