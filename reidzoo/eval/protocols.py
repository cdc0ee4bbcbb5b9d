"""Named evaluation protocols: which tracklets form the gallery, what is junk, which AP, which queries count.

Published video re-ID numbers are only comparable under the same protocol: on MARS the gallery alone moves rank-1 by
about 3 points and the AP formula mAP by 1.5-2 (datasets.md §8.5). Every :class:`RankResult` produced here carries the
protocol name. Sections cited are those of the design note ``datasets.md``.

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

from .distance import compute_distance
from .metrics import RankResult, evaluate_rank
from .rerank import k_reciprocal_rerank

__all__ = ['Protocol', 'EvalSets', 'PROTOCOLS', 'get_protocol', 'list_protocols', 'build_eval_sets',
           'evaluate_protocol', 'average_results']


@dataclass(frozen=True)
class Protocol:
    """How a dataset's query and gallery are scored.

    Attributes:
        name: registry name, e.g. ``'mars_official'``.
        dataset: dataset name it applies to (``build_dataset`` name).
        description: one-paragraph summary.
        source: where the rule comes from (code, and the datasets.md section that documents it).
        ap: ``'step'`` (mean precision at each hit) or ``'trapezoid'`` (official MATLAB ``compute_AP``).
        skip_no_positive: queries without a positive are dropped (True) or count as AP = 0 (False).
        gallery_includes_query: the queries are prepended to the gallery (AP3D/SINet ``cat(qf, gf)``).
        include_junk: the dataset's junk tracklets (MARS pid -1) join the gallery, flagged junk for every query.
        num_splits: number of train/test splits whose results are averaged (1 = single split).
        max_rank: CMC length.
    """
    name: str
    dataset: str
    description: str
    source: str
    ap: str = 'step'
    skip_no_positive: bool = True
    gallery_includes_query: bool = False
    include_junk: bool = False
    num_splits: int = 1
    max_rank: int = 50


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(
        'mars_official', 'mars',
        'Official MARS evaluation: the gallery is all 12,180 test tracklets (queries and pid -1 junk included); per '
        'query, good = same pid from another camera, junk = pid -1 plus same pid and camera (the query itself '
        'included); pid 0 distractors are negatives. Trapezoid AP; CMC and mAP averaged over all 1,980 queries.',
        'liangzheng06/MARS-evaluation test_mars.m, evaluation_mars.m, compute_AP.m (datasets.md §2.5, §8.2)',
        ap='trapezoid', skip_no_positive=False, gallery_includes_query=True, include_junk=True),
    Protocol(
        'mars_torchreid', 'mars',
        'torchreid / Video-Person-ReID / COSAM: gallery = the 9,330 test tracklets that are neither queries nor '
        'pid -1; same pid and camera removed per query; step AP; the 140 queries left without a positive are '
        'skipped (1,840 count).',
        'KaiyangZhou/deep-person-reid metrics/rank.py eval_market1501 (datasets.md §2.5, §8.1)'),
    Protocol(
        'mars_query_in_gallery', 'mars',
        'AP3D / SINet / BiCnet / TCLNet: gallery = queries + the 9,330 tracklets (11,310; "gallery set must contain '
        'query set, otherwise 140 query imgs will not have ground truth"); same pid and camera removed per query; '
        'step AP. Ranking and junk equal the official protocol; only the AP formula differs.',
        'guxinqian/AP3D test-all.py, baist/SINet main.py (datasets.md §2.5, §8.5)',
        gallery_includes_query=True),
    Protocol(
        'lsvid_official', 'lsvid',
        'LS-VID MATLAB evaluation: gallery = all 11,333 test tracklets (3,504 queries included); junk = same pid and '
        'camera; trapezoid AP; queries without a positive (4) count with AP 0 and an all-zero CMC; averages over all '
        '3,504 queries.',
        'LS-VID release eval_func.m / compute_AP.m, copy in oracl4/torch_videoreid (datasets.md §4.5, §8.2)',
        ap='trapezoid', skip_no_positive=False, gallery_includes_query=True),
    Protocol(
        'dukev_standard', 'dukev',
        'DukeMTMC-VideoReID: the gallery as on disk (2,636 tracklets, duplicates of the 702 queries included); same '
        'pid and camera removed per query (which removes the duplicate); step AP; queries without a positive '
        'skipped.',
        'Yu-Wu/DukeMTMC-VideoReID README and issue #3, reid/evaluators.py (datasets.md §3.3)'),
    Protocol(
        'ilidsvid_10split', 'ilidsvid',
        'iLIDS-VID: per split, query = the 150 test identities in cam1, gallery = the same in cam2 (one positive '
        'each, so AP = 1/rank); step AP; CMC, mAP and mINP are the mean over the 10 splits of '
        'train_test_splits_ilidsvid.mat (average_results).',
        'KaiyangZhou/deep-person-reid data/datasets/video/ilidsvid.py, docs/evaluation.rst (datasets.md §5.2)',
        num_splits=10, max_rank=20),
    Protocol(
        'prid2011_10split', 'prid2011',
        'PRID-2011: per split, query = the 89 test identities in cam_a, gallery = the same in cam_b; step AP; mean '
        'over the 10 splits of splits_prid2011.json (average_results).',
        'KaiyangZhou/deep-person-reid data/datasets/video/prid2011.py (datasets.md §6.2)',
        num_splits=10, max_rank=20),
    Protocol(
        'synthvid_standard', 'synthvid',
        'SynthVID (reidzoo synthetic benchmark): Market-1501 rule on the generated query / gallery: same pid and '
        'camera removed, step AP, queries without a positive skipped.',
        'reidzoo.data.synthvid; rule of datasets.md §8.1'),
)}


def list_protocols(dataset: Optional[str] = None) -> list[str]:
    """Protocol names, optionally only those of one dataset."""
    return [n for n, p in PROTOCOLS.items() if dataset is None or p.dataset == dataset]


def get_protocol(protocol: Union[str, Protocol]) -> Protocol:
    """The :class:`Protocol` of a name (a :class:`Protocol` passes through)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f'unknown protocol {protocol!r}; known: {", ".join(PROTOCOLS)}')
    return PROTOCOLS[protocol]


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
    )
