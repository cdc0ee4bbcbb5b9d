"""Cross-camera association: camera-constrained agglomerative clustering with average linkage.

Every tracklet starts as its own identity; the two closest identities are merged while their average-linkage
distance (the mean distance over all their tracklet pairs, UPGMA) is below a threshold. The physical constraint is a
cannot-link: two tracklets of one camera whose frame spans overlap are two people, so identities holding such a pair
are never merged (their distance is infinite, and stays so after every merge). This is the constrained hierarchical
clustering used for multi-camera tracking (e.g. Ristani & Tomasi, "Features for Multi-Target Multi-Camera Tracking
and Re-Identification", CVPR 2018, which clusters under the same kind of constraints); average linkage is less
sensitive than single linkage to one spuriously close pair.

:func:`calibrate_threshold` picks the threshold on labelled tracklets: the one whose clustering has the best
pairwise F1 (precision and recall of "same identity" over all tracklet pairs).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ['cannot_link_matrix', 'associate', 'pairwise_f1', 'calibrate_threshold']


def cannot_link_matrix(camids: Sequence[int], spans: Optional[Sequence[tuple[int, int]]] = None) -> np.ndarray:
    """``(N, N)`` bool: tracklets of one camera whose ``(first, last)`` frame spans overlap (never the same person).

    Without ``spans`` nothing is forbidden.
    """
    n = len(camids)
    if spans is None or n == 0:
        return np.zeros((n, n), bool)
    cam = np.asarray(camids)
    first = np.asarray([s[0] for s in spans])
    last = np.asarray([s[1] for s in spans])
    overlap = (first[:, None] <= last[None]) & (first[None] <= last[:, None])
    out = (cam[:, None] == cam[None]) & overlap
    np.fill_diagonal(out, False)
    return out


def associate(dist: np.ndarray, threshold: float, cannot_link: Optional[np.ndarray] = None) -> np.ndarray:
    """Average-linkage agglomerative clustering under cannot-link constraints.

    Args:
        dist: ``(N, N)`` symmetric tracklet distances.
        threshold: merge while the closest pair of identities is nearer than this.
        cannot_link: ``(N, N)`` bool, pairs that must stay apart (see :func:`cannot_link_matrix`).

    Returns:
        ``(N,)`` int64 identity labels ``0..K-1``, numbered in order of each identity's first tracklet.
    """
    d = np.array(dist, dtype=np.float64, copy=True)
    n = d.shape[0]
    if d.shape != (n, n):
        raise ValueError(f'dist must be a square (N, N) matrix, got shape {d.shape}')
    if n == 0:
        return np.zeros(0, np.int64)
    if cannot_link is not None:
        d[np.asarray(cannot_link, bool)] = np.inf
    np.fill_diagonal(d, np.inf)
    size = np.ones(n)
    parent = np.arange(n)
    active = np.ones(n, bool)
    while True:
        flat = int(np.argmin(d))
        i, j = divmod(flat, n)
        if not d[i, j] < threshold:
            break
        # Lance-Williams update for average linkage; an infinite (cannot-link) entry stays infinite
        row = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        d[i], d[:, i] = row, row
        d[i, i] = np.inf
        d[j], d[:, j] = np.inf, np.inf
        size[i] += size[j]
        active[j] = False
        parent[parent == j] = i
    _, labels = np.unique(parent, return_inverse=True)
    # renumber by first occurrence so that labels do not depend on which index survived a merge
    order = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    return np.asarray([order[int(lab)] for lab in labels], np.int64)


def pairwise_f1(labels: np.ndarray, pids: np.ndarray) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of a clustering against true identities (over unordered tracklet pairs)."""
    labels, pids = np.asarray(labels), np.asarray(pids)
    same_pred = labels[:, None] == labels[None]
    same_true = pids[:, None] == pids[None]
    iu = np.triu_indices(len(labels), 1)
    tp = float((same_pred & same_true)[iu].sum())
    pred, true = float(same_pred[iu].sum()), float(same_true[iu].sum())
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def calibrate_threshold(dist: np.ndarray, pids: Sequence[int], num_candidates: int = 40) -> tuple[float, float]:
    """The clustering threshold with the best pairwise F1 on labelled tracklets.

    Candidates are quantiles (0.5 % .. 60 %) of the off-diagonal distances, so the search adapts to any metric's
    scale. Returns ``(threshold, f1)``.
    """
    dist = np.asarray(dist, np.float64)
    pids = np.asarray(pids)
    iu = np.triu_indices(len(pids), 1)
    if len(iu[0]) == 0:
        raise ValueError('Calibration needs at least two labelled tracklets.')
    candidates = np.unique(np.quantile(dist[iu], np.linspace(0.005, 0.6, num_candidates)))
    best = (float(candidates[0]), -1.0)
    for t in candidates:
        f1 = pairwise_f1(associate(dist, float(t)), pids)[2]
        if f1 > best[1]:
            best = (float(t), f1)
    return best
