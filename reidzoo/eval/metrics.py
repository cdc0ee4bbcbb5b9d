"""Exact, vectorised CMC / mAP / mINP for re-identification retrieval.

:func:`evaluate_rank` implements the Market-1501 / MARS rule of torchreid's ``evaluate_rank`` (datasets.md §8.1) and,
as options, the official MATLAB rule of MARS-evaluation / LS-VID (§8.2: trapezoid AP, every query averaged) and AGW's
mINP (§8.3). It gives exactly the numbers of a plain per-query loop that sorts each distance row (tests check this),
without sorting the rows.

How it avoids the sort: a query's metrics only depend on the kept ranks of its positives, and the rank of a positive
``p`` is ``#{j: d_j < d_p} + #{j < p: d_j = d_p}`` (ties in gallery order) minus the junk items before it. Only a
query's same-pid items can be positives or per-query junk, so each chunk of query rows sorts just those few items and
counts, per positive, the entries below its distance with one vectorised compare (numpy, on rows packed to the
entries below the farthest positive: with useful features a few per cent of the gallery). Rows where a negative ties
with a positive exactly fall back to a stable argsort. Cost: about ``2 x (#positives) x (packed width)`` compares
per query instead of a ``G log G`` sort; memory is ``O(chunk x G)``.

Conventions (all documented choices, identical in the reference loop of the tests):

* **Ties** are ordered by gallery index (a stable sort on distance), so results are deterministic. torchreid uses an
  unstable quicksort, which orders ties arbitrarily. NaN distances sort last, as in ``numpy.argsort``; a NaN distance
  to a positive raises ``ValueError``.
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
        ValueError: on inconsistent shapes, an unknown ``ap``, a NaN distance to a positive, or (when skipping) no
            query having a positive at all.
    """
    if ap not in _AP_KINDS:
        raise ValueError(f"ap must be one of {_AP_KINDS}, got {ap!r}")
    if int(max_rank) < 1:
        raise ValueError(f'max_rank must be >= 1, got {max_rank}')
    max_rank = int(max_rank)
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
    q_pids = _label_vector(q_pids, 'q_pids', num_q, device)
    q_camids = _label_vector(q_camids, 'q_camids', num_q, device)
    g_pids = _label_vector(g_pids, 'g_pids', num_g, device)
    g_camids = _label_vector(g_camids, 'g_camids', num_g, device)
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

    # junk for every query: drop the columns (one copy per chunk) instead of tracking them per query
    if bool(g_junk.any()):
        kept_cols = torch.nonzero(~g_junk).squeeze(1)
        new_index = torch.full((num_g,), -1, dtype=torch.int64, device=device)
        new_index[kept_cols] = torch.arange(len(kept_cols), device=device)
        q_self = torch.where(q_self >= 0, new_index[q_self.clamp(min=0)], -1)
        g_pids, g_camids = g_pids[kept_cols], g_camids[kept_cols]
    else:
        kept_cols = None
    num_kept = len(g_pids)

    # gallery items grouped by pid: only a query's same-pid items (and its own copy) are not plain negatives
    g_order = torch.sort(g_pids, stable=True).indices  # ascending gallery index within each group
    uniq_pids, group_counts = torch.unique_consecutive(g_pids[g_order], return_counts=True)
    group_starts = torch.cumsum(group_counts, 0) - group_counts
    if num_kept:
        slot = torch.searchsorted(uniq_pids, q_pids).clamp_(max=len(uniq_pids) - 1)
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
    for start in range(0, len(order), chunk_size):
        rows = order[start:start + chunk_size]
        d = _take_rows(dist, rows, kept_cols)
        ranks, is_pos = _positive_ranks(
            d, q_pids[rows], q_camids[rows], q_self[rows], self_extra[rows], g_pids, g_camids,
            g_order, group_starts, slot[rows], q_group_size[rows])
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
        num_queries=num_q,
        all_ap=all_ap.cpu().numpy(),
        all_inp=all_inp.cpu().numpy(),
        protocol=protocol,
        ap=ap,
    )


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
    at = torch.searchsorted(uniq_keys, q_key).clamp_(max=len(uniq_keys) - 1)
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
            block.sort(axis=1)  # NaN last; numpy's searchsorted agrees with that order
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
                    group_size):
    """Kept ranks of a chunk's special items (same pid, plus the own copy) in (distance, gallery index) order.

    Returns ``(ranks, is_pos)``, both ``(rows, width)``, sorted along dim 1 by (distance, index); padding and junk
    entries have ``is_pos`` False. A positive's rank among all items is ``#{d_j < d_p} + #{j < p: d_j = d_p}``: one
    pass of ``<`` and one of ``<=`` over the rows per positive slot gives it whenever no non-special item ties with
    it (then the equal ones are all special and ordered by index below); rows with such a tie are argsorted (rare).
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

    # order the specials by (distance, index), NaN after +inf (as argsort), padding last: three stable sorts
    cols, valid, is_pos = _permute(torch.where(valid, cols, num_g), cols, valid, is_pos)
    vals = d.gather(1, cols)
    vals, cols, valid, is_pos = _permute(vals, vals, cols, valid, is_pos)
    vals, cols, valid, is_pos = _permute((~valid).to(torch.uint8), vals, cols, valid, is_pos)
    if bool(torch.isnan(vals[is_pos]).any()):
        raise ValueError('distmat holds NaN distances between queries and their positives')

    # the per-positive passes: thresholds are the positives' distances, padded slots compare against -inf
    num_slots = int(is_pos.sum(1).max())
    slot_of_pos = torch.cumsum(is_pos, 1) - 1  # k-th positive of its row
    thresholds = torch.full((num_rows, num_slots), -torch.inf, dtype=d.dtype, device=device)
    r_idx = torch.arange(num_rows, device=device)[:, None].expand_as(is_pos)
    thresholds[r_idx[is_pos], slot_of_pos[is_pos]] = vals[is_pos]
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
        perm = torch.sort(d[tie_rows], dim=1, stable=True).indices
        inverse = torch.empty_like(perm)
        inverse.scatter_(1, perm, torch.arange(num_g, device=device).expand_as(perm))
        rank_all[tie_rows] = inverse.gather(1, cols[tie_rows])
    junk_before = torch.cumsum(valid & ~is_pos, 1) - (valid & ~is_pos).long()
    return rank_all - junk_before, is_pos
