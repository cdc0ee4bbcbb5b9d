"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), with bounded memory.

Same algorithm and defaults as the authors' python code (zhunzhong07/person-re-ranking,
``python-version/re_ranking_feature``), which COSAM's ``main_video_person_reid.py`` calls on raw features with
``k1=20, k2=6, lambda_value=0.3`` (its Table 5):

1. ``d`` = distance over all ``N = Q + G`` items (queries first): squared Euclidean of raw features in the authors'
   feature version; each row is divided by its maximum.
2. ``R(i)`` = k-reciprocal neighbours: ``j`` in the ``k1 + 1`` nearest of ``i`` with ``i`` in the ``k1 + 1`` nearest of
   ``j``. Expansion: for each ``c`` in ``R(i)``, its ``round(k1/2) + 1``-reciprocal set ``R'(c)`` joins when
   ``|R'(c) ∩ R(i)| > 2/3 |R'(c)|``.
3. ``V[i, j] = exp(-d[i, j]) / sum_j' exp(-d[i, j'])`` over the expanded set; with ``k2 > 1`` each row becomes the
   mean of the rows of its ``k2`` nearest neighbours (local query expansion).
4. Jaccard distance ``1 - m / (2 - m)``, ``m = sum_k min(V[q, k], V[g, k])``; final
   ``(1 - lambda) * jaccard + lambda * d[q, g]``.

Where the reference holds dense ``N x N`` matrices (the issue-tracker complaints about 25 GB on MSMT17), this keeps
``N x max(k1+1, k2)`` neighbour lists from a chunked distance pass, ``V`` as a sparse matrix, and computes the Jaccard
term by joining each query's non-zeros with the gallery rows sharing them. Peak memory is the ``Q x G`` output plus
``O(chunk x N + N x nnz-per-row)``. Differences from the reference, all below float32 round-off in the tests: float32
instead of the authors' float16, the nearest-neighbour lists come from ``topk`` instead of a full ``argsort`` (same
lists unless distances tie exactly), and distances of the expansion pairs are recomputed pairwise.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .distance import DISTANCES, compute_distance

__all__ = ['k_reciprocal_rerank', 'rerank_distances']

Array = Union[np.ndarray, torch.Tensor]
_ROW_ELEMENTS = 1 << 24  # distance entries per chunk of rows (64 MB of float32)
_JOIN_PAIRS = 1 << 21  # (query, gallery, shared neighbour) triples per Jaccard chunk (~100 MB of temporaries)


@torch.no_grad()
def k_reciprocal_rerank(
        qf: Array,
        gf: Array,
        *,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        metric: str = 'sqeuclidean',
        chunk_size: Optional[int] = None,
        dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Re-ranked query x gallery distances from features.

    Args:
        qf: ``(Q, dim)`` query features (torch on any device, or numpy).
        gf: ``(G, dim)`` gallery features.
        k1: size of the k-reciprocal neighbourhoods (paper: 20).
        k2: neighbours averaged in the local query expansion (paper: 6; 1 disables it).
        lambda_value: weight of the original distance (paper: 0.3).
        metric: original distance; ``'sqeuclidean'`` on raw features is the authors' (and COSAM's) choice.
        chunk_size: rows of the ``N x N`` distance computed at once (default: about 16M entries).
        dtype: computation dtype of the distances.

    Returns:
        ``(Q, G)`` tensor of ``dtype`` on the device of ``qf``.
    """
    if metric not in DISTANCES:
        raise ValueError(f'metric must be one of {DISTANCES}, got {metric!r}')
    qf = qf if isinstance(qf, torch.Tensor) else torch.as_tensor(np.asarray(qf))
    gf = gf if isinstance(gf, torch.Tensor) else torch.as_tensor(np.asarray(gf))
    if qf.dim() != 2 or gf.dim() != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f'qf and gf must be (num_items, dim) with the same dim, got shapes {tuple(qf.shape)} and '
                         f'{tuple(gf.shape)}')
    device = qf.device
    feats = torch.cat([qf.to(dtype), gf.to(device=device, dtype=dtype)])
    unit = F.normalize(feats, dim=1) if metric == 'cosine' else None
    sq_norm = feats.pow(2).sum(1)

    def rows(start: int, stop: int) -> torch.Tensor:
        return compute_distance(feats[start:stop], feats, metric, dtype=dtype)

    def pairs(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(i), dtype=dtype, device=device)
        step = max(1, _ROW_ELEMENTS // (4 * feats.shape[1]))  # gathered feature rows stay ~64 MB
        for s in range(0, len(i), step):
            a, b = i[s:s + step], j[s:s + step]
            if metric == 'cosine':
                out[s:s + step] = 1 - (unit[a] * unit[b]).sum(1)
            else:
                d = (sq_norm[a] + sq_norm[b] - 2 * (feats[a] * feats[b]).sum(1)).clamp(min=0)
                out[s:s + step] = d.sqrt() if metric == 'euclidean' else d
        return out

    out = _rerank(rows, pairs, len(qf), len(feats), k1, k2, lambda_value, chunk_size, device, dtype)
    return out.to(device)


@torch.no_grad()
def rerank_distances(
        q_g_dist: Array,
        q_q_dist: Array,
        g_g_dist: Array,
        *,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Re-ranking from precomputed distance blocks (``(Q, G)``, ``(Q, Q)``, ``(G, G)``), used as given.

    The authors' ``re_ranking_ranklist`` squares these blocks first (so torchreid, which passes squared Euclidean
    distances, ends up ranking by their fourth power); pass squared distances here to reproduce it. Memory is
    bounded except for the inputs themselves; prefer :func:`k_reciprocal_rerank` on features for large galleries.
    """
    blocks = [torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
              for x in (q_g_dist, q_q_dist, g_g_dist)]
    q_g, q_q, g_g = (b.detach().cpu() for b in blocks)
    dtype = q_g.dtype if q_g.is_floating_point() else torch.float32
    q_g, q_q, g_g = q_g.to(dtype), q_q.to(dtype), g_g.to(dtype)
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(f'expected q_q_dist ({num_q}, {num_q}) and g_g_dist ({num_g}, {num_g}) for q_g_dist '
                         f'{tuple(q_g.shape)}, got {tuple(q_q.shape)} and {tuple(g_g.shape)}')

    def rows(start: int, stop: int) -> torch.Tensor:
        parts = []
        if start < num_q:  # query rows: [q_q | q_g]
            s = slice(start, min(stop, num_q))
            parts.append(torch.cat([q_q[s], q_g[s]], 1))
        if stop > num_q:  # gallery rows: [q_g^T | g_g]
            s = slice(max(start, num_q) - num_q, stop - num_q)
            parts.append(torch.cat([q_g[:, s].T, g_g[s]], 1))
        return torch.cat(parts)

    def pairs(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(i), dtype=dtype)
        iq, jq = i < num_q, j < num_q
        for mask, block, a, b in ((iq & jq, q_q, i, j), (iq & ~jq, q_g, i, j - num_q),
                                  (~iq & jq, q_g, j, i - num_q), (~iq & ~jq, g_g, i - num_q, j - num_q)):
            out[mask] = block[a[mask], b[mask]]
        return out

    return _rerank(rows, pairs, num_q, num_q + num_g, k1, k2, lambda_value, chunk_size, torch.device('cpu'), dtype)


def _rerank(
        rows: Callable[[int, int], torch.Tensor],
        pairs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        num_q: int,
        num_all: int,
        k1: int,
        k2: int,
        lambda_value: float,
        chunk_size: Optional[int],
        device: torch.device,
        dtype: torch.dtype,
) -> torch.Tensor:
    if k1 < 1 or k2 < 1:
        raise ValueError(f'k1 and k2 must be >= 1, got k1={k1}, k2={k2}')
    num_g = num_all - num_q
    num_nn = max(k1 + 1, k2)
    if num_nn > num_all:
        raise ValueError(f'k1 + 1 = {k1 + 1} and k2 = {k2} must not exceed the {num_all} query + gallery items; '
                         f'lower k1/k2 for such a small problem')
    chunk_size = max(1, int(chunk_size or _ROW_ELEMENTS // num_all))

    # 1. one pass over distance rows: row maxima, nearest-neighbour lists, normalised query x gallery block
    row_max = torch.empty(num_all, dtype=dtype)
    nearest = torch.empty(num_all, num_nn, dtype=torch.int64)
    original = torch.empty(num_q, num_g, dtype=dtype)
    for start in range(0, num_all, chunk_size):
        stop = min(start + chunk_size, num_all)
        d = rows(start, stop).to(device='cpu', dtype=dtype)
        m = d.amax(1).clamp(min=torch.finfo(dtype).tiny)  # reference: / max (0 / 0 only for all-identical items)
        d /= m[:, None]
        row_max[start:stop] = m
        nearest[start:stop] = torch.topk(d, num_nn, dim=1, largest=False, sorted=True).indices
        if start < num_q:
            original[start:min(stop, num_q)] = d[:min(stop, num_q) - start, num_q:]

    # 2. k-reciprocal sets and their expansion, as (row, column) pairs
    k_half = int(np.around(k1 / 2)) + 1  # as the reference (numpy rounds half to even)
    recip = _reciprocal_mask(nearest[:, :k1 + 1])
    recip_half = _reciprocal_mask(nearest[:, :k_half])
    rows_idx, cols_idx = _expanded_sets(nearest[:, :k1 + 1], recip, nearest[:, :k_half], recip_half)

    # 3. V: softmax of -d over each expanded set (sparse), then the local query expansion
    w = torch.exp(-(pairs(rows_idx.to(device), cols_idx.to(device)).to('cpu', dtype) / row_max[rows_idx]))
    w = w / torch.zeros(num_all, dtype=dtype).index_add_(0, rows_idx, w)[rows_idx]
    np_dtype = w.numpy().dtype
    v = sp.csr_matrix((w.numpy(), (rows_idx.numpy(), cols_idx.numpy())), shape=(num_all, num_all))
    if k2 != 1:
        qe_rows = np.repeat(np.arange(num_all), k2)
        qe = sp.csr_matrix((np.ones(num_all * k2, dtype=np_dtype), (qe_rows, nearest[:, :k2].reshape(-1).numpy())),
                           shape=(num_all, num_all))
        v = ((qe @ v) / k2).astype(np_dtype).tocsr()
        v.sort_indices()

    # 4. Jaccard distance, then the blend with the original distance (in place in `original`)
    v_q = v[:num_q]
    v_g = v[num_q:].tocsc()  # column k -> gallery items with a non-zero there
    _jaccard_blend(v_q, v_g, original, lambda_value)
    return original


def _reciprocal_mask(nearest: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``mask[i, a]``: ``i`` is among the neighbours of its ``a``-th neighbour ``nearest[i, a]``."""
    num, k = nearest.shape
    mask = torch.empty(num, k, dtype=torch.bool)
    for s in range(0, num, chunk):
        idx = torch.arange(s, min(s + chunk, num))
        mask[s:s + chunk] = (nearest[nearest[idx]] == idx[:, None, None]).any(2)
    return mask


def _expanded_sets(nn_full, recip, nn_half, recip_half, chunk: int = 2048):
    """Unique (i, j) pairs of the expanded k-reciprocal set of every i, sorted by i then j."""
    num, k_full = nn_full.shape
    keys = []
    for s in range(0, num, chunk):
        idx = torch.arange(s, min(s + chunk, num))
        r_set, r_ok = nn_full[idx], recip[idx]  # R(i) = r_set[r_ok]
        cand_set, cand_ok = nn_half[r_set], recip_half[r_set]  # R'(c) for c = r_set[:, a]: (n, k_full, k_half)
        in_r = ((cand_set[..., None] == r_set[:, None, None, :]) & r_ok[:, None, None, :]).any(3)
        inter = (in_r & cand_ok).sum(2).double()
        size = cand_ok.sum(2).double()
        take = r_ok & (inter > 2. / 3 * size)  # the reference's float comparison
        rows = idx[:, None].expand(-1, k_full)
        keys.append(rows[r_ok] * num + r_set[r_ok])
        extra = take[..., None] & cand_ok
        keys.append(rows[..., None].expand_as(cand_set)[extra] * num + cand_set[extra])
    keys = torch.unique(torch.cat(keys))
    return keys // num, keys % num


def _jaccard_blend(v_q: sp.csr_matrix, v_g: sp.csc_matrix, original: torch.Tensor, lambda_value: float) -> None:
    """``original[q] <- (1 - lambda) * (1 - m / (2 - m)) + lambda * original[q]``, ``m = sum_k min(v_q, v_g)``."""
    num_q, num_g = original.shape
    out = original.numpy()
    col_count = np.diff(v_g.indptr)
    per_entry = col_count[v_q.indices]  # gallery partners of each query non-zero
    cum = np.concatenate([[0], np.cumsum(per_entry)])
    per_row = cum[v_q.indptr[1:]] - cum[v_q.indptr[:-1]]
    # chunks of consecutive queries with about _JOIN_PAIRS triples (a heavier query gets its own) and a bounded
    # dense (rows x G) accumulator
    chunk_id = np.maximum(np.cumsum(per_row) - 1, 0) // _JOIN_PAIRS
    max_rows = max(1, (_ROW_ELEMENTS // 4) // max(num_g, 1))
    bounds = sorted({0, num_q, *(np.flatnonzero(np.diff(chunk_id)) + 1).tolist(), *range(0, num_q, max_rows)})
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi = v_q.indptr[a], v_q.indptr[b]
        entry_row = np.repeat(np.arange(b - a), np.diff(v_q.indptr[a:b + 1]))
        entry_col, entry_val = v_q.indices[lo:hi], v_q.data[lo:hi]
        reps = col_count[entry_col]
        src = np.repeat(np.arange(hi - lo), reps)
        offset = np.arange(len(src)) - np.repeat(np.cumsum(reps) - reps, reps)
        pos = v_g.indptr[entry_col][src] + offset
        shared = np.minimum(entry_val[src], v_g.data[pos]).astype(np.float64)
        m = np.bincount(entry_row[src] * num_g + v_g.indices[pos], weights=shared,
                        minlength=(b - a) * num_g).reshape(b - a, num_g)
        jaccard = 1 - m / (2 - m)
        out[a:b] = (1 - lambda_value) * jaccard + lambda_value * out[a:b]
