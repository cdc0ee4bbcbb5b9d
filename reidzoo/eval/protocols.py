"""Named evaluation protocols: which tracklets form the gallery, what is junk, which AP, which queries count.

Published video re-ID numbers are only comparable under the same protocol: on MARS the gallery alone moves rank-1 by
about 3 points and the AP formula mAP by 1.5-2 (``docs/datasets-and-protocols.md``). Every :class:`RankResult`
produced here carries the protocol name. The protocol table itself lives in :mod:`reidzoo.spec.datasets`
(re-exported here).

>>> sets = build_eval_sets(dataset, 'mars_query_in_gallery')
>>> feats = embed(sets.unique_tracklets)          # each tracklet once, even when query ⊂ gallery
>>> result = evaluate_protocol(feats, sets, 'mars_query_in_gallery')

Split protocols (iLIDS-VID, PRID-2011) are evaluated per split (``dataset`` built with each ``split_id``) and the
split results combined with :func:`average_results` (mean CMC / mAP / mINP over the 10 splits, torchreid's rule).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..spec.datasets import PROTOCOLS, Protocol, get_protocol, list_protocols
from .distance import compute_distance
from .metrics import RankResult, evaluate_rank
from .rerank import k_reciprocal_rerank

__all__ = ['Protocol', 'EvalSets', 'PROTOCOLS', 'get_protocol', 'list_protocols', 'build_eval_sets',
           'evaluate_protocol', 'average_results']


@dataclass
class EvalSets:
    """Query and gallery of one evaluation, as indices into ``unique_tracklets`` (embed each of those once).

    Attributes:
        unique_tracklets: distinct tracklets to embed, in first-seen order (queries, gallery, junk).
        query_index: ``(num_query,)`` indices into ``unique_tracklets``.
        gallery_index: ``(num_gallery,)`` indices into ``unique_tracklets``.
        q_pids, q_camids, g_pids, g_camids: identity and camera arrays (int64).
        g_junk: ``(num_gallery,)`` bool, gallery items that are junk for every query.
        q_indices_in_gallery: ``(num_query,)`` gallery position of each query's own copy, -1 if absent.
        protocol: protocol name.
    """
    unique_tracklets: list
    query_index: np.ndarray
    gallery_index: np.ndarray
    q_pids: np.ndarray
    q_camids: np.ndarray
    g_pids: np.ndarray
    g_camids: np.ndarray
    g_junk: np.ndarray
    q_indices_in_gallery: np.ndarray
    protocol: str = ''

    @property
    def num_query(self) -> int:
        return len(self.query_index)

    @property
    def num_gallery(self) -> int:
        return len(self.gallery_index)


def _key(tracklet: Any) -> Any:
    try:
        hash(tracklet)
        return tracklet
    except TypeError:  # unhashable (lists inside): identity only
        return ('__id__', id(tracklet))


def build_eval_sets(dataset: Any, protocol: Union[str, Protocol]) -> EvalSets:
    """Query / gallery / junk of ``dataset`` under ``protocol``.

    Args:
        dataset: object with ``.query``, ``.gallery`` (and ``.junk`` for MARS) lists of tracklets with ``.pid`` and
            ``.camid``, and optionally ``.name``; for split protocols, the dataset of one split.
        protocol: a protocol name or :class:`Protocol`.

    Returns:
        :class:`EvalSets`; equal tracklets (same frames, pid, camera) are embedded once.
    """
    protocol = get_protocol(protocol)
    name = getattr(dataset, 'name', None)
    if isinstance(name, str) and name.lower() != protocol.dataset:
        warnings.warn(f'protocol {protocol.name!r} is defined for {protocol.dataset!r}, applied to {name!r}')
    query, gallery = list(dataset.query), list(dataset.gallery)
    junk = list(getattr(dataset, 'junk', None) or []) if protocol.include_junk else []
    if protocol.include_junk and not junk:
        warnings.warn(f'protocol {protocol.name!r} adds the junk tracklets (MARS pid -1) to the gallery, but the '
                      'dataset has none; the metrics do not change (junk is ignored), only the gallery size does')
    if not query or not gallery:
        raise ValueError(f'dataset has {len(query)} query and {len(gallery)} gallery tracklets; both must be non-empty')

    unique, index_of = [], {}

    def index(tracklets: Sequence) -> np.ndarray:
        out = np.empty(len(tracklets), dtype=np.int64)
        for i, t in enumerate(tracklets):
            k = _key(t)
            if k not in index_of:
                index_of[k] = len(unique)
                unique.append(t)
            out[i] = index_of[k]
        return out

    q_idx = index(query)
    g_parts = ([query] if protocol.gallery_includes_query else []) + [gallery, junk]
    g_idx = np.concatenate([index(part) for part in g_parts])
    g_list = [t for part in g_parts for t in part]
    g_junk = np.zeros(len(g_list), dtype=bool)
    if junk:
        g_junk[-len(junk):] = True
    q_self = np.arange(len(query)) if protocol.gallery_includes_query else np.full(len(query), -1)
    return EvalSets(
        unique_tracklets=unique,
        query_index=q_idx,
        gallery_index=g_idx,
        q_pids=np.array([t.pid for t in query], dtype=np.int64),
        q_camids=np.array([t.camid for t in query], dtype=np.int64),
        g_pids=np.array([t.pid for t in g_list], dtype=np.int64),
        g_camids=np.array([t.camid for t in g_list], dtype=np.int64),
        g_junk=g_junk,
        q_indices_in_gallery=q_self.astype(np.int64),
        protocol=protocol.name,
    )


def evaluate_protocol(
        features_by_unique_index: Union[np.ndarray, torch.Tensor],
        eval_sets: EvalSets,
        protocol: Union[str, Protocol, None] = None,
        distance: str = 'cosine',
        rerank: Union[bool, dict] = False,
        *,
        chunk_size: Optional[int] = None,
) -> RankResult:
    """Score embeddings of ``eval_sets.unique_tracklets`` under ``protocol``.

    Args:
        features_by_unique_index: ``(len(unique_tracklets), dim)`` embeddings, row ``i`` for tracklet ``i``.
        eval_sets: from :func:`build_eval_sets`.
        protocol: defaults to the one the sets were built for.
        distance: ``'cosine'``, ``'euclidean'`` or ``'sqeuclidean'``.
        rerank: k-reciprocal re-ranking: ``True`` for the paper's k1=20, k2=6, lambda=0.3, or a dict of
            :func:`k_reciprocal_rerank` keyword arguments. Re-ranked results are named ``'<protocol>+rerank'``.
        chunk_size: query rows per chunk for the distance and the metrics.

    Returns:
        :class:`RankResult` whose ``protocol`` names the protocol (and re-ranking).
    """
    protocol = get_protocol(protocol or eval_sets.protocol)
    feats = features_by_unique_index
    feats = feats if isinstance(feats, torch.Tensor) else torch.as_tensor(np.asarray(feats))
    if feats.dim() != 2 or len(feats) != len(eval_sets.unique_tracklets):
        raise ValueError(f'features_by_unique_index must be ({len(eval_sets.unique_tracklets)}, dim), one row per '
                         f'unique tracklet, got shape {tuple(feats.shape)}')
    qf = feats[torch.as_tensor(eval_sets.query_index, device=feats.device)]
    gf = feats[torch.as_tensor(eval_sets.gallery_index, device=feats.device)]
    name = protocol.name
    if rerank:
        kwargs = dict(rerank) if isinstance(rerank, dict) else {}
        distmat = k_reciprocal_rerank(qf, gf, metric=kwargs.pop('metric', distance), **kwargs)
        name += '+rerank'
    else:
        distmat = compute_distance(qf, gf, distance, chunk_size=chunk_size)
    return evaluate_rank(
        distmat, eval_sets.q_pids, eval_sets.g_pids, eval_sets.q_camids, eval_sets.g_camids,
        max_rank=protocol.max_rank, ap=protocol.ap, skip_no_positive=protocol.skip_no_positive,
        g_junk=eval_sets.g_junk, q_indices_in_gallery=eval_sets.q_indices_in_gallery, chunk_size=chunk_size,
        protocol=name)


def average_results(results: Sequence[RankResult]) -> RankResult:
    """Mean over splits (each split weighs the same): CMC, mAP and mINP averaged; query counts summed; per-query
    AP / INP concatenated. This is how iLIDS-VID / PRID-2011 numbers are reported (torchreid ``evaluation.rst``)."""
    if not results:
        raise ValueError('average_results needs at least one result')
    lengths = {len(r.cmc) for r in results}
    if len(lengths) != 1:
        raise ValueError(f'results have CMC curves of different lengths {sorted(lengths)}; use one max_rank')
    return RankResult(
        cmc=np.mean([r.cmc for r in results], axis=0),
        mAP=float(np.mean([r.mAP for r in results])),
        mINP=float(np.mean([r.mINP for r in results])),
        num_valid_queries=sum(r.num_valid_queries for r in results),
        num_queries=sum(r.num_queries for r in results),
        all_ap=np.concatenate([r.all_ap for r in results]),
        all_inp=np.concatenate([r.all_inp for r in results]),
        protocol=results[0].protocol,
        ap=results[0].ap,
        num_gallery=results[0].num_gallery,
    )
