"""Exact, vectorised CMC / mAP / mINP for re-identification retrieval.

:func:`evaluate_rank` implements the Market-1501 / MARS rule of torchreid's ``evaluate_rank`` and, as options, the
official MATLAB rule of MARS-evaluation / LS-VID (trapezoid AP, every query averaged) and the mINP of AGW (Ye et al.,
"Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021, arXiv:2001.04193);
``docs/datasets-and-protocols.md`` defines each. It gives exactly the numbers of a plain per-query loop that sorts
each distance row (tests check this), without sorting the rows.

How it avoids the sort: a query's metrics only depend on the kept ranks of its positives, and the rank of a positive
``p`` is ``#{j: d_j < d_p} + #{j < p: d_j = d_p}`` (ties in gallery order) minus the junk items before it. Only a
query's same-pid items can be positives or per-query junk, so each chunk of query rows sorts just those few items and
counts, per positive, the entries below its distance with one vectorised compare (numpy, on rows packed to the
entries below the farthest positive: with useful features a few per cent of the gallery). Rows where a plain item
ties with a positive exactly (duplicated gallery tracklets, float16 or 8-bit quantised distances) take one more pass
per positive counting the equal entries before it in gallery order, still without sorting the row. Cost: about
``2 x (#positives) x (packed width)`` compares per query (3 more per positive on rows with ties) instead of a
``G log G`` sort; memory is ``O(chunk x G)``.

Conventions (all documented choices, identical in the reference loop of the tests):

* **Ties** are ordered by gallery index (a stable sort on distance), so results are deterministic. torchreid uses an
  unstable quicksort, which orders ties arbitrarily.
* **Non-finite distances** (NaN, +-inf) anywhere in the matrix raise ``ValueError``: a NaN sorts last, so a NaN
  negative would silently lift the positives ranked after it.
* **Junk** (removed from the ranked list for a query): same pid and same camera; every gallery item flagged in
  ``g_junk`` (MARS pid -1 under the official protocol); and the query's own copy ``q_indices_in_gallery[i]``.
* **CMC past the end of the list**: ``cmc_q[k] = 1`` for every ``k >= first hit``, also past the number of items the
  query keeps, and the curve keeps length ``max_rank`` when the gallery is smaller (torchreid instead shortens
  ``max_rank`` to the gallery size and, in Cython, reads stale buffer entries for queries keeping fewer items).
* **Queries without a positive**: skipped by default (torchreid/Market); with ``skip_no_positive=False`` they count
  with AP = 0, INP = 0 and an all-zero CMC, and every average is over all queries (official MATLAB / LS-VID rule).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

__all__ = ['RankResult', 'evaluate_rank']

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]

_AP_KINDS = ('step', 'trapezoid')
_CHUNK_ELEMENTS = 1 << 20  # query rows per chunk = this // gallery size (4 MB of float32)
_BLOCK_ELEMENTS = 1 << 18  # packed entries compared per threshold at once (1 MB: stays in cache)
_SORT_ABOVE = 96  # thresholds per block above which sorting the block beats one compare pass per threshold
_LEX_ABOVE = 0.2  # fraction of rows with ties to a positive above which (distance, index) keys are compared


@dataclass
class RankResult:
    """Retrieval metrics of one evaluation.

    Attributes:
        cmc: cumulative match characteristic, float64, length ``max_rank``; ``cmc[0]`` is rank-1.
        mAP: mean average precision.
        mINP: mean inverse negative penalty (AGW): mean of ``R / rank of the hardest positive``.
        num_valid_queries: queries with at least one positive in the gallery.
        num_queries: all queries.
        all_ap: AP per averaged query (the valid ones, or all of them when no-positive queries are counted),
            in query order.
        all_inp: INP per averaged query, same order.
        protocol: name of the protocol that produced the numbers, if given.
        ap: ``'step'`` (mean precision at each hit) or ``'trapezoid'`` (official MATLAB ``compute_AP``).
        num_gallery: gallery items ranked against each query (columns of the distance matrix, junk included).
    """
    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_queries: int
    all_ap: np.ndarray = field(repr=False)
    all_inp: np.ndarray = field(repr=False)
    protocol: Optional[str] = None
    ap: str = 'step'
    num_gallery: int = 0

    def as_dict(self, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict:
        """Flat summary (fractions in [0, 1]) for logs, model cards and leaderboard rows."""
        out = {'mAP': float(self.mAP), 'mINP': float(self.mINP)}
        out.update({f'rank{r}': float(self.cmc[r - 1]) for r in ranks if r <= len(self.cmc)})
        out.update(num_valid_queries=int(self.num_valid_queries), num_queries=int(self.num_queries),
                   protocol=self.protocol, ap=self.ap)
        return out


def _as_tensor(x: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    x = np.asarray(x)
    if x.dtype.kind == 'u' and x.dtype != np.uint8:  # MARS ships uint16 ids; torch indexes with int64
        x = x.astype(np.int64)
    with warnings.catch_warnings():  # read-only arrays (np.load mmap) are fine: nothing here writes to them
        warnings.simplefilter('ignore', UserWarning)
        return torch.from_numpy(x if x.strides and min(x.strides) >= 0 else np.ascontiguousarray(x)).to(device)


def _label_vector(x: ArrayLike, name: str, length: int, device: torch.device) -> torch.Tensor:
    t = _as_tensor(x, device)
    if t.dim() != 1 or t.numel() != length:
        raise ValueError(f'{name} must have shape ({length},) to match the distance matrix, got {tuple(t.shape)}')
    if t.dtype == torch.bool:
        raise ValueError(f'{name} must hold integer ids, got dtype {t.dtype}')
    if t.is_floating_point():  # ids read from .mat files are often float64
        if not bool((t == t.round()).all()):
            raise ValueError(f'{name} must hold integer ids, got non-integral values of dtype {t.dtype}')
    return t.to(torch.int64)


def evaluate_rank(
        distmat: ArrayLike,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike,
        g_camids: ArrayLike,
        *,
        max_rank: int = 50,
        ap: str = 'step',
        skip_no_positive: bool = True,
        g_junk: Optional[ArrayLike] = None,
        q_indices_in_gallery: Optional[ArrayLike] = None,
        chunk_size: Optional[int] = None,
        protocol: Optional[str] = None,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = more similar).

    For each query, the gallery items with the same pid and the same camera are junk (removed); positives are the
    remaining items with the query's pid. AP is ``(1/R) sum_k k / r_k`` over the 1-based kept ranks ``r_k`` of the
    ``R`` positives (``ap='step'``), or the official MATLAB trapezoid ``(1/R) sum_k (k/r_k + (k-1)/(r_k-1)) / 2``
    with the second term 1 when ``r_k = 1`` (``ap='trapezoid'``). INP is ``R / r_R``. See the module docstring for
    ties, junk and CMC padding.

    Args:
        distmat: ``(num_query, num_gallery)`` distances, numpy or torch (any device), float or integer.
        q_pids: query identities ``(num_query,)``.
        g_pids: gallery identities ``(num_gallery,)``.
        q_camids: query cameras.
        g_camids: gallery cameras.
        max_rank: length of the CMC curve (kept even when the gallery is smaller; the curve is padded).
        ap: ``'step'`` (Market-1501/torchreid, default) or ``'trapezoid'`` (official MARS/LS-VID MATLAB).
        skip_no_positive: drop queries without a positive from every average (default) instead of counting them
            as AP = INP = 0 with an all-zero CMC.
        g_junk: boolean ``(num_gallery,)`` mask of items that are junk for every query (MARS pid -1 tracklets).
        q_indices_in_gallery: ``(num_query,)`` gallery index of each query's own copy (-1 if absent); that item is
            junk for its query (it already is by the same-pid-and-camera rule; this makes it explicit).
        chunk_size: query rows per chunk (default: about 2M matrix entries per chunk); memory is O(chunk x gallery).
        protocol: name recorded in the result.

    Returns:
        A :class:`RankResult`.

    Raises:
        ValueError: on inconsistent shapes, an unknown ``ap``, a non-finite distance, or (when skipping) no
            query having a positive at all.
    """
    inputs = _validate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ap=ap, g_junk=g_junk,
                       q_indices_in_gallery=q_indices_in_gallery)
    kept_cols, q_self, g_pids_kept, g_camids_kept = _drop_global_junk(inputs)
    num_pos, first_hit, ap_sum, inp = _rank_chunks(inputs, kept_cols, q_self, g_pids_kept, g_camids_kept, ap=ap,
                                                   chunk_size=chunk_size)
    return _summarize(num_pos, first_hit, ap_sum, inp, max_rank=int(max_rank), ap=ap,
                      skip_no_positive=skip_no_positive, num_gallery=inputs.dist.shape[1], protocol=protocol)


@dataclass
class _Inputs:
    """Validated inputs of :func:`evaluate_rank`, as tensors on the distance matrix's device."""
    dist: torch.Tensor
    q_pids: torch.Tensor
    q_camids: torch.Tensor
    g_pids: torch.Tensor
    g_camids: torch.Tensor
    g_junk: torch.Tensor
    q_self: torch.Tensor


def _validate(distmat, q_pids, g_pids, q_camids, g_camids, *, max_rank, ap, g_junk, q_indices_in_gallery) -> _Inputs:
    """Shapes, dtypes and values of every input; every distance must be finite."""
    if ap not in _AP_KINDS:
        raise ValueError(f"ap must be one of {_AP_KINDS}, got {ap!r}")
    if int(max_rank) < 1:
        raise ValueError(f'max_rank must be >= 1, got {max_rank}')
    dist = distmat.detach() if isinstance(distmat, torch.Tensor) else _as_tensor(distmat, torch.device('cpu'))
    if dist.dim() != 2:
        raise ValueError(f'distmat must be 2-D (num_query, num_gallery), got shape {tuple(dist.shape)}')
    if dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.float()  # exact and order-preserving
    elif not dist.is_floating_point():
        dist = dist.double()
    device = dist.device
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f'distmat must be non-empty, got shape {tuple(dist.shape)}')
    if not _all_finite(dist):
        # anywhere, not only at positives: a NaN negative sorts last, which silently lifts every positive above it
        finite = torch.isfinite(dist)
        bad_rows = torch.nonzero(~finite.all(1)).squeeze(1)
        raise ValueError(f'distmat holds {int((~finite).sum())} non-finite distances (NaN or inf) in '
                         f'{len(bad_rows)} query rows (first: row {int(bad_rows[0])}); they usually come from '
                         'non-finite embeddings (a float16 model overflowing, or broken weights): fix the features')
    if g_junk is None:
        g_junk = torch.zeros(num_g, dtype=torch.bool, device=device)
    else:
        g_junk = _as_tensor(g_junk, device)
        if tuple(g_junk.shape) != (num_g,) or g_junk.dtype != torch.bool:
            raise ValueError(f'g_junk must be a boolean mask of shape ({num_g},), got dtype {g_junk.dtype} and '
                             f'shape {tuple(g_junk.shape)}')
    if q_indices_in_gallery is None:
        q_self = torch.full((num_q,), -1, dtype=torch.int64, device=device)
    else:
        q_self = _label_vector(q_indices_in_gallery, 'q_indices_in_gallery', num_q, device)
        if bool(((q_self < -1) | (q_self >= num_g)).any()):
            raise ValueError(f'q_indices_in_gallery must be in [-1, {num_g}), got values outside it')
    return _Inputs(dist=dist, q_pids=_label_vector(q_pids, 'q_pids', num_q, device),
                   q_camids=_label_vector(q_camids, 'q_camids', num_q, device),
                   g_pids=_label_vector(g_pids, 'g_pids', num_g, device),
                   g_camids=_label_vector(g_camids, 'g_camids', num_g, device), g_junk=g_junk, q_self=q_self)


def _all_finite(dist: torch.Tensor) -> bool:
    """No NaN or inf in ``dist``. On CPU numpy's min and max (NaN propagates through both) are single-threaded SIMD
    passes, several times faster than ``torch.isfinite`` on a busy machine."""
    if dist.device.type != 'cpu':
        return bool(torch.isfinite(dist).all())
    d = dist.numpy()
    return bool(np.isfinite(d.min()) and np.isfinite(d.max()))


def _many_ties(dist: torch.Tensor, sample: int = 16) -> bool:
    """Whether a few evenly spaced rows repeat many values (quantised distances: float16, 8-bit features)."""
    if dist.device.type != 'cpu' or dist.dtype != torch.float32:
        return False
    rows = dist.numpy()[np.linspace(0, dist.shape[0] - 1, min(sample, dist.shape[0])).astype(int)]
    distinct = np.mean([len(np.unique(r)) for r in rows]) / rows.shape[1]
    return bool(distinct < 1 - _LEX_ABOVE)


def _drop_global_junk(x: _Inputs) -> tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Junk for every query (``g_junk``) is dropped as columns (one copy per chunk) instead of tracked per query.

    Returns ``(kept_cols or None, q_self re-indexed to kept columns, kept g_pids, kept g_camids)``.
    """
    if not bool(x.g_junk.any()):
        return None, x.q_self, x.g_pids, x.g_camids
    kept_cols = torch.nonzero(~x.g_junk).squeeze(1)
    new_index = torch.full((len(x.g_junk),), -1, dtype=torch.int64, device=x.dist.device)
    new_index[kept_cols] = torch.arange(len(kept_cols), device=x.dist.device)
    q_self = torch.where(x.q_self >= 0, new_index[x.q_self.clamp(min=0)], -1)
    return kept_cols, q_self, x.g_pids[kept_cols], x.g_camids[kept_cols]


def _rank_chunks(x: _Inputs, kept_cols: Optional[torch.Tensor], q_self: torch.Tensor, g_pids: torch.Tensor,
                 g_camids: torch.Tensor, *, ap: str, chunk_size: Optional[int]) -> tuple[torch.Tensor, ...]:
    """Per query: number of positives, 0-based kept rank of the first hit (-1 if none), sum of precisions at the
    hits (the AP numerator) and INP; computed chunk by chunk of query rows."""
    q_pids, q_camids, device = x.q_pids, x.q_camids, x.dist.device
    num_q, num_kept = len(q_pids), len(g_pids)
    # gallery items grouped by pid: only a query's same-pid items (and its own copy) are not plain negatives
    g_order = torch.sort(g_pids, stable=True).indices  # ascending gallery index within each group
    uniq_pids, group_counts = torch.unique_consecutive(g_pids[g_order], return_counts=True)
    group_starts = torch.cumsum(group_counts, 0) - group_counts
    if num_kept:
        slot = _searchsorted(uniq_pids, q_pids).clamp_(max=len(uniq_pids) - 1)
        q_group_size = torch.where(uniq_pids[slot] == q_pids, group_counts[slot], 0)
    else:
        slot = q_group_size = torch.zeros(num_q, dtype=torch.int64, device=device)
    # the query's own copy only needs separate handling when it is not in its group (its pid differs)
    self_extra = torch.full_like(q_self, -1)
    if num_kept:
        self_extra = torch.where((q_self >= 0) & (g_pids[q_self.clamp(min=0)] != q_pids), q_self, -1)
    num_pos = _count_positives(q_pids, q_camids, q_self, g_pids, g_camids)

    first_hit = torch.full((num_q,), -1, dtype=torch.int64, device=device)
    ap_sum = torch.zeros(num_q, dtype=torch.float64, device=device)
    inp = torch.zeros(num_q, dtype=torch.float64, device=device)
    # rows with similar numbers of positives share a chunk: the per-positive passes are padded to the chunk's max
    order = torch.sort(num_pos, stable=True).indices
    order = order[num_pos[order] > 0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(num_kept, 1))
    chunk_size = max(1, int(chunk_size))
    # (distance, index) keys when ties are common: decided from a sample of rows, revised by every chunk
    lexicographic = _many_ties(x.dist)
    for start in range(0, len(order), chunk_size):
        rows = order[start:start + chunk_size]
        d = _take_rows(x.dist, rows, kept_cols)
        ranks, is_pos, tied = _positive_ranks(
            d, q_pids[rows], q_camids[rows], q_self[rows], self_extra[rows], g_pids, g_camids,
            g_order, group_starts, slot[rows], q_group_size[rows], lexicographic)
        lexicographic = tied > _LEX_ABOVE
        # ranks: kept 0-based rank of every special item in (distance, index) order; read the metrics off them
        hit = torch.cumsum(is_pos, 1).double()
        rank = ranks.double()
        precision = torch.where(is_pos, hit / (rank + 1), 0.)
        if ap == 'trapezoid':
            prev = torch.where(rank > 0, (hit - 1) / rank.clamp(min=1), 1.)
            precision = torch.where(is_pos, (precision + prev) / 2, 0.)
        ap_sum[rows] = precision.sum(1)
        last_rank = torch.where(is_pos, rank, -1.).amax(1)
        inp[rows] = num_pos[rows].double() / (last_rank + 1)
        first_hit[rows] = torch.where(is_pos, ranks, num_kept).amin(1)
    return num_pos, first_hit, ap_sum, inp


def _summarize(num_pos: torch.Tensor, first_hit: torch.Tensor, ap_sum: torch.Tensor, inp: torch.Tensor, *,
               max_rank: int, ap: str, skip_no_positive: bool, num_gallery: int,
               protocol: Optional[str]) -> RankResult:
    """CMC, mAP and mINP averaged over the counted queries."""
    valid = num_pos > 0
    num_valid = int(valid.sum())
    if skip_no_positive and num_valid == 0:
        raise ValueError('no query has a positive in the gallery (no gallery item with its pid from another camera); '
                         'check the query/gallery split or evaluate with skip_no_positive=False')
    counted = valid if skip_no_positive else torch.ones_like(valid)
    denom = int(counted.sum())
    all_ap = torch.where(valid, ap_sum / num_pos.clamp(min=1), 0.)[counted]
    all_inp = inp[counted]
    hits = first_hit[valid & (first_hit < max_rank)]
    cmc = torch.cumsum(torch.bincount(hits, minlength=max_rank).double(), 0) / denom
    return RankResult(
        cmc=cmc.cpu().numpy(),
        mAP=float(all_ap.sum()) / denom,
        mINP=float(all_inp.sum()) / denom,
        num_valid_queries=num_valid,
        num_queries=len(num_pos),
        all_ap=all_ap.cpu().numpy(),
        all_inp=all_inp.cpu().numpy(),
        protocol=protocol,
        ap=ap,
        num_gallery=num_gallery,
    )


def _searchsorted(sorted_values: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``torch.searchsorted`` (left); numpy's on CPU, which costs a fraction of torch's there (measured: torch's was
    about 15 % of a whole evaluation's CPU time)."""
    if sorted_values.device.type != 'cpu':
        return torch.searchsorted(sorted_values, values)
    return torch.from_numpy(np.searchsorted(sorted_values.numpy(), values.numpy()))


def _take_rows(dist: torch.Tensor, rows: torch.Tensor, cols: Optional[torch.Tensor]) -> torch.Tensor:
    """Copy of ``dist[rows][:, cols]``; numpy on CPU (single-threaded copies: torch's parallel ones stall when the
    machine is busy, and a chunk is small enough that one thread saturates memory)."""
    if dist.device.type != 'cpu':
        d = dist.index_select(0, rows)
        return d if cols is None else d.index_select(1, cols)
    d = dist.numpy()[rows.numpy()]
    return torch.from_numpy(d if cols is None else d[:, cols.numpy()])


def _count_positives(q_pids, q_camids, q_self, g_pids, g_camids) -> torch.Tensor:
    """Per query: gallery items with its pid from another camera, minus its own copy."""
    if len(g_pids) == 0:
        return torch.zeros_like(q_pids)
    both_pids = torch.unique(torch.cat([q_pids, g_pids]), return_inverse=True)[1]
    both_cams = torch.unique(torch.cat([q_camids, g_camids]), return_inverse=True)[1]
    num_cams = int(both_cams.max()) + 1
    key = both_pids * num_cams + both_cams  # (pid, camera) -> int, exact
    q_key, g_key = key[:len(q_pids)], key[len(q_pids):]
    q_pid_idx, g_pid_idx = both_pids[:len(q_pids)], both_pids[len(q_pids):]
    pid_count = torch.bincount(g_pid_idx, minlength=int(both_pids.max()) + 1)
    uniq_keys, key_counts = torch.unique(g_key, return_counts=True)
    at = _searchsorted(uniq_keys, q_key).clamp_(max=len(uniq_keys) - 1)
    same_cam = torch.where(uniq_keys[at] == q_key, key_counts[at], 0)
    count = pid_count[q_pid_idx] - same_cam
    s = q_self.clamp(min=0)
    self_is_pos = (q_self >= 0) & (g_pids[s] == q_pids) & (g_camids[s] != q_camids)
    return count - self_is_pos.long()


def _count_below(d: torch.Tensor, thresholds: torch.Tensor, num_used: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``#{j: d[i, j] < t[i, k]}`` and ``#{j: d[i, j] <= t[i, k]}`` for the first ``num_used[i]`` columns of ``t``.

    CPU: entries above a row's largest threshold never count, so each row is first packed to the entries below it
    (with useful features the hardest positive comes early: a few per cent of the row). Rows of similar packed width
    then share a cache-sized block, NaN-padded (NaN compares False), and each threshold is one vectorised compare plus
    a row count; for many thresholds a row sort plus binary searches is cheaper. numpy does this single-threaded,
    several times faster than torch's ``lt(...).sum()`` on such blocks.
    """
    if d.device.type != 'cpu':
        return _count_below_torch(d, thresholds)
    d_np, t_np, used = d.numpy(), thresholds.numpy(), num_used.numpy()
    num_rows, num_g = d_np.shape
    keep = d_np <= t_np.max(1, keepdims=True)
    width = keep.view(np.uint8).sum(1, dtype=np.int64)
    less = np.zeros(t_np.shape, dtype=np.int64)
    less_equal = np.zeros(t_np.shape, dtype=np.int64)
    by_width = np.argsort(width, kind='stable')
    start = 0
    while start < num_rows:
        stop = start + 1  # grow the block while it stays cache-sized (rows sorted by width: little padding)
        while stop < num_rows and (stop + 1 - start) * width[by_width[stop]] <= _BLOCK_ELEMENTS:
            stop += 1
        rows = by_width[start:stop]
        start = stop
        w = max(int(width[rows[-1]]), 1)
        if 2 * w >= num_g:
            block = d_np[rows]
        else:
            block = np.full((len(rows), w), np.nan, dtype=d_np.dtype)
            n = width[rows]
            block[np.repeat(np.arange(len(rows)), n), np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)] = \
                d_np[rows][keep[rows]]
        k_max = int(used[rows].max())
        t_block = t_np[rows, :k_max]
        if k_max > _SORT_ABOVE:
            block.sort(axis=1)  # NaN padding last; numpy's searchsorted agrees with that order
            for r, row in enumerate(rows):
                k = used[row]
                less[row, :k] = np.searchsorted(block[r], t_block[r, :k], 'left')
                less_equal[row, :k] = np.searchsorted(block[r], t_block[r, :k], 'right')
            continue
        buf, count = _row_counter(len(rows), block.shape[1])
        for k in range(k_max):
            t = t_block[:, k:k + 1]
            np.less(block, t, out=buf)
            less[rows, k] = count()
            np.less_equal(block, t, out=buf)
            less_equal[rows, k] = count()
    return torch.from_numpy(less), torch.from_numpy(less_equal)


def _lex_keys(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as ``(value, index)``: the float32's order-preserving bits above the index's 32 bits."""
    bits = (values + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into +0.0: equal floats, equal keys
    bits = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    return (bits.astype(np.uint64) << np.uint64(32)) | index.astype(np.uint64)


def _count_lex_below(d: torch.Tensor, thresholds: torch.Tensor, positions: torch.Tensor,
                     num_used: torch.Tensor) -> torch.Tensor:
    """``#{j: (d[i, j], j) < (t[i, k], p[i, k])}`` for the first ``num_used[i]`` columns (float32 ``d`` on CPU).

    The exact rank under the tie rule in one compare per positive: each row is packed to its entries not above its
    largest threshold (as in :func:`_count_below`) as uint64 ``(distance, index)`` keys.
    """
    d_np, t_np, p_np, used = d.numpy(), thresholds.numpy(), positions.numpy(), num_used.numpy()
    num_rows, num_g = d_np.shape
    out = np.zeros(t_np.shape, dtype=np.int64)
    keep = d_np <= t_np.max(1, keepdims=True)
    width = keep.view(np.uint8).sum(1, dtype=np.int64)
    t_keys = _lex_keys(np.where(np.isfinite(t_np), t_np, 0).astype(np.float32), p_np)
    by_width = np.argsort(width, kind='stable')
    start = 0
    while start < num_rows:
        stop = start + 1  # cache-sized blocks of rows of similar packed width, as in _count_below
        while stop < num_rows and (stop + 1 - start) * width[by_width[stop]] <= _BLOCK_ELEMENTS // 2:
            stop += 1
        rows = by_width[start:stop]
        start = stop
        w = max(int(width[rows[-1]]), 1)
        n = width[rows]
        flat = np.flatnonzero(keep[rows])  # kept entries, row-major: one pass gives both row and column
        r_of = np.repeat(np.arange(len(rows)), n)  # cheaper than an integer divmod of flat
        c_of = flat - r_of * num_g
        at = (r_of, np.arange(len(flat)) - np.repeat(np.cumsum(n) - n, n))
        block = np.full((len(rows), w), np.iinfo(np.uint64).max, dtype=np.uint64)  # padding above every key
        block[at] = _lex_keys(d_np[rows[r_of], c_of], c_of)
        k_max = int(used[rows].max())
        t_block = t_keys[rows, :k_max]
        if k_max > _SORT_ABOVE:
            block.sort(axis=1)
            for r, row in enumerate(rows):
                out[row, :used[row]] = np.searchsorted(block[r], t_block[r, :used[row]], 'left')
            continue
        buf, count = _row_counter(len(rows), w)
        for k in range(k_max):
            np.less(block, t_block[:, k:k + 1], out=buf)
            out[rows, k] = count()
    return torch.from_numpy(out)


def _count_equal_before(d: torch.Tensor, thresholds: torch.Tensor, positions: torch.Tensor,
                        num_used: torch.Tensor) -> torch.Tensor:
    """``#{j < p[i, k]: d[i, j] == t[i, k]}`` for the first ``num_used[i]`` columns of ``t`` (``p = positions``).

    The tie rule (equal distances rank by gallery index) without sorting a row: each row is packed to its entries
    not above its largest threshold, as in :func:`_count_below`, keeping their column indices; then per threshold one
    equality compare, one index compare and a row count.
    """
    if d.device.type != 'cpu':
        cols = torch.arange(d.shape[1], device=d.device)
        return torch.stack([((d == t[:, None]) & (cols < p[:, None])).sum(1)
                            for t, p in zip(thresholds.T, positions.T)], 1)
    d_np, t_np, used = d.numpy(), thresholds.numpy(), num_used.numpy()
    num_rows, num_g = d_np.shape
    p_np = positions.numpy().astype(np.int32 if num_g < 2 ** 31 else np.int64)
    out = np.zeros(t_np.shape, dtype=np.int64)
    keep = d_np <= t_np.max(1, keepdims=True)
    width = keep.view(np.uint8).sum(1, dtype=np.int64)
    by_width = np.argsort(width, kind='stable')
    start = 0
    while start < num_rows:
        stop = start + 1  # cache-sized blocks of rows of similar packed width, as in _count_below
        while stop < num_rows and (stop + 1 - start) * width[by_width[stop]] <= _BLOCK_ELEMENTS:
            stop += 1
        rows = by_width[start:stop]
        start = stop
        w = max(int(width[rows[-1]]), 1)
        n = width[rows]
        sub_keep = keep[rows]
        at = (np.repeat(np.arange(len(rows)), n), np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        block = np.full((len(rows), w), np.nan, dtype=d_np.dtype)
        block[at] = d_np[rows][sub_keep]
        index = np.full((len(rows), w), num_g, dtype=p_np.dtype)
        index[at] = np.nonzero(sub_keep)[1]
        buf, count = _row_counter(len(rows), w)
        before = np.empty((len(rows), w), dtype=bool)
        for k in range(int(used[rows].max())):
            np.equal(block, t_np[rows, k:k + 1], out=buf)
            np.less(index, p_np[rows, k:k + 1], out=before)
            np.logical_and(buf, before, out=buf)
            out[rows, k] = count()
    return torch.from_numpy(out)


def _count_below_torch(d: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accelerator version of :func:`_count_below`: two batched compares per threshold column."""
    less = torch.stack([torch.lt(d, t[:, None]).sum(1) for t in thresholds.T], 1)
    less_equal = torch.stack([torch.le(d, t[:, None]).sum(1) for t in thresholds.T], 1)
    return less, less_equal


def _row_counter(num_rows: int, width: int):
    """A bool ``(num_rows, width)`` buffer and a fast function counting its True entries per row."""
    if width < 255 * 8:
        buf = np.zeros((num_rows, width), dtype=bool)
        return buf, lambda: buf.view(np.uint8).sum(1, dtype=np.uint16)
    # rows padded with False to whole blocks of 255 uint64 words: summing a block's words adds the 8 byte lanes
    # separately without carries (each lane <= 255), then the lanes are added up
    full = np.zeros((num_rows, -(-width // (255 * 8)) * 255 * 8), dtype=bool)
    words = full.view(np.uint64).reshape(num_rows, -1, 255)
    return full[:, :width], lambda: words.sum(2).view(np.uint8).sum(1, dtype=np.int64)


def _permute(key: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Reorder each row of ``tensors`` by a stable sort of ``key`` along dim 1."""
    perm = torch.sort(key, dim=1, stable=True).indices
    return tuple(t.gather(1, perm) for t in tensors)


def _positive_ranks(d, q_pids, q_camids, q_self, self_extra, g_pids, g_camids, g_order, group_starts, slot,
                    group_size, lexicographic=False):
    """Kept ranks of a chunk's special items (same pid, plus the own copy) in (distance, gallery index) order.

    Returns ``(ranks, is_pos, tied)``: ``ranks`` and ``is_pos`` are ``(rows, width)``, sorted along dim 1 by
    (distance, index), padding and junk entries have ``is_pos`` False (only the positives' ranks are meaningful);
    ``tied`` is the fraction of rows where a plain item ties with a positive.

    A positive's rank among all items is ``#{d_j < d_p} + #{j < p: d_j = d_p}``. Default: one pass of ``<`` and one
    of ``<=`` per positive give it whenever no plain item ties with the positive (the equal ones are then all special
    and ordered by index here); rows with such a tie take one more pass (:func:`_count_equal_before`).
    ``lexicographic=True`` (float32 on CPU, for matrices full of ties) compares ``(distance, index)`` keys packed in
    one uint64 instead: one pass per positive, ties included (:func:`_count_lex_below`).
    """
    device = d.device
    num_rows, num_g = d.shape
    width = int(group_size.max())
    arange_w = torch.arange(width, device=device)
    valid = arange_w < group_size[:, None]
    cols = g_order[(group_starts[slot, None] + arange_w).clamp_(max=num_g - 1)]
    if bool((self_extra >= 0).any()):  # own copy with another pid: one more special column, junk
        cols = torch.cat([cols, self_extra.clamp(min=0)[:, None]], 1)
        valid = torch.cat([valid, (self_extra >= 0)[:, None]], 1)
    junk = (g_camids[cols] == q_camids[:, None]) | (g_pids[cols] != q_pids[:, None]) | (cols == q_self[:, None])
    is_pos = valid & ~junk

    # order the specials by (distance, index), padding last: three stable sorts
    cols, valid, is_pos = _permute(torch.where(valid, cols, num_g), cols, valid, is_pos)
    vals = d.gather(1, cols)
    vals, cols, valid, is_pos = _permute(vals, vals, cols, valid, is_pos)
    vals, cols, valid, is_pos = _permute((~valid).to(torch.uint8), vals, cols, valid, is_pos)

    # the per-positive passes: thresholds are the positives' distances, padded slots compare against -inf
    num_slots = int(is_pos.sum(1).max())
    slot_of_pos = torch.cumsum(is_pos, 1) - 1  # k-th positive of its row
    thresholds = torch.full((num_rows, num_slots), -torch.inf, dtype=d.dtype, device=device)
    r_idx = torch.arange(num_rows, device=device)[:, None].expand_as(is_pos)
    thresholds[r_idx[is_pos], slot_of_pos[is_pos]] = vals[is_pos]
    if lexicographic and d.device.type == 'cpu' and d.dtype == torch.float32:
        positions = torch.zeros((num_rows, num_slots), dtype=torch.int64, device=device)
        positions[r_idx[is_pos], slot_of_pos[is_pos]] = cols[is_pos]
        below = _count_lex_below(d, thresholds, positions, is_pos.sum(1))
        rank_all = torch.zeros_like(cols)
        rank_all[is_pos] = below[r_idx[is_pos], slot_of_pos[is_pos]]
        junk_before = torch.cumsum(valid & ~is_pos, 1) - (valid & ~is_pos).long()
        return rank_all - junk_before, is_pos, 1.0
    less, less_equal = _count_below(d, thresholds, is_pos.sum(1))

    # specials are sorted, so those tied with a positive form a run: position - run start = ties before it
    width = cols.shape[1]
    pos_in_row = torch.arange(width, device=device).expand_as(cols)
    run_vals = torch.where(valid, vals, torch.nan)  # NaN never equals anything: padding never joins a run
    starts_run = torch.ones_like(valid)
    starts_run[:, 1:] = run_vals[:, 1:] != run_vals[:, :-1]
    run_start = torch.where(starts_run, pos_in_row, 0).cummax(1).values
    ends_run = torch.ones_like(valid)
    ends_run[:, :-1] = starts_run[:, 1:]
    run_end = torch.where(ends_run, pos_in_row, width).flip(1).cummin(1).values.flip(1)
    special_equal = run_end - run_start + 1
    lt_p = torch.zeros_like(cols)
    le_p = torch.zeros_like(cols)
    lt_p[is_pos] = less[r_idx[is_pos], slot_of_pos[is_pos]]
    le_p[is_pos] = less_equal[r_idx[is_pos], slot_of_pos[is_pos]]
    rank_all = lt_p + pos_in_row - run_start
    foreign_tie = ((le_p - lt_p) != special_equal) & is_pos
    tie_rows = torch.nonzero(foreign_tie.any(1)).squeeze(1)
    if len(tie_rows):
        # a plain item ties with a positive: count the tied items before it in gallery order, one more pass per
        # positive (duplicated tracklets and float16 / 8-bit distances make this common, so no sort of the row)
        positions = torch.zeros((num_rows, num_slots), dtype=torch.int64, device=device)
        positions[r_idx[is_pos], slot_of_pos[is_pos]] = cols[is_pos]
        every = len(tie_rows) == num_rows  # with quantised distances: skip the row copies
        sub = (lambda t: t) if every else (lambda t: _take_rows(t, tie_rows, None))
        equal_before = _count_equal_before(sub(d), sub(thresholds), sub(positions), sub(is_pos.sum(1)))
        t_pos = is_pos if every else is_pos[tie_rows]
        slots = (slot_of_pos if every else slot_of_pos[tie_rows]).clamp(min=0)
        exact = (less if every else less[tie_rows]).gather(1, slots) + equal_before.gather(1, slots)
        fixed = torch.where(t_pos, exact, rank_all if every else rank_all[tie_rows])
        if every:
            rank_all = fixed
        else:
            rank_all[tie_rows] = fixed
    junk_before = torch.cumsum(valid & ~is_pos, 1) - (valid & ~is_pos).long()
    return rank_all - junk_before, is_pos, len(tie_rows) / num_rows
