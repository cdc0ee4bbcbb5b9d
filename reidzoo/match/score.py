"""Multi-camera identity scores: IDF1, IDP, IDR over all cameras as one sequence (the DukeMTMC-MTMC protocol).

Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera Tracking" (ECCV 2016 workshops)
define the identity measures on a single truth-to-prediction identity assignment made over the whole recording;
for multi-camera tracking the per-camera sequences are concatenated, so a person must keep one identity across
cameras to be counted as correct. The computation is TrackEval's ``Identity`` metric (``trackeval`` on PyPI, the
MOTChallenge/HOTA reference implementation, maintained and NumPy-2 compatible, unlike ``motmetrics`` 1.4.0 whose
``np.asfarray`` call is gone in NumPy 2): we only build its per-timestep input (ids and box IoUs) with the cameras'
frames laid end to end.
"""
from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from .tracks import Detection, read_mot

__all__ = ['box_iou', 'score_mtmc', 'score_mtmc_files']

PathLike = Union[str, os.PathLike]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``(N, 4)`` and ``(M, 4)`` boxes given as ``x, y, w, h``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax1, ay1, bx1, by1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def score_mtmc(gt: Sequence[Sequence[Detection]], pred: Sequence[Sequence[Detection]],
               iou_threshold: float = 0.5) -> dict[str, float]:
    """IDF1/IDP/IDR of predicted global identities against ground truth, cameras concatenated.

    Args:
        gt: per camera, the ground-truth rows (id column = true global identity).
        pred: per camera (same order), the predicted rows (id column = predicted global identity).
        iou_threshold: a predicted box matches a true one at IoU >= this (0.5, as in MOTChallenge).

    Returns:
        ``{'IDF1', 'IDP', 'IDR', 'IDTP', 'IDFP', 'IDFN'}``.
    """
    from trackeval.metrics import Identity
    if len(gt) != len(pred):
        raise ValueError(f'Got ground truth for {len(gt)} cameras but predictions for {len(pred)}.')
    gt_index: dict[int, int] = {}
    pr_index: dict[int, int] = {}
    data = {'gt_ids': [], 'tracker_ids': [], 'similarity_scores': []}
    num_gt = num_pred = 0
    for g_rows, p_rows in zip(gt, pred):
        by_frame_g: dict[int, list[Detection]] = {}
        by_frame_p: dict[int, list[Detection]] = {}
        for d in g_rows:
            by_frame_g.setdefault(d.frame, []).append(d)
        for d in p_rows:
            by_frame_p.setdefault(d.frame, []).append(d)
        last = max([0, *by_frame_g, *by_frame_p])
        for frame in range(1, last + 1):  # this camera's frames follow the previous camera's: one long sequence
            gs, ps = by_frame_g.get(frame, []), by_frame_p.get(frame, [])
            data['gt_ids'].append(np.asarray([gt_index.setdefault(d.track_id, len(gt_index)) for d in gs], int))
            data['tracker_ids'].append(np.asarray([pr_index.setdefault(d.track_id, len(pr_index)) for d in ps], int))
            data['similarity_scores'].append(box_iou([[d.x, d.y, d.w, d.h] for d in gs],
                                                     [[d.x, d.y, d.w, d.h] for d in ps]))
            num_gt += len(gs)
            num_pred += len(ps)
    data.update(num_gt_ids=len(gt_index), num_tracker_ids=len(pr_index), num_gt_dets=num_gt,
                num_tracker_dets=num_pred, num_timesteps=len(data['gt_ids']))
    metric = Identity({'THRESHOLD': iou_threshold, 'PRINT_CONFIG': False})
    res = metric.eval_sequence(data)
    if num_pred == 0 or num_gt == 0:  # TrackEval returns early without its final fields
        res = metric._compute_final_fields(res)
    return {k: float(res[k]) for k in ('IDF1', 'IDP', 'IDR', 'IDTP', 'IDFP', 'IDFN')}


def score_mtmc_files(gt_files: Sequence[PathLike], pred_files: Sequence[PathLike],
                     iou_threshold: float = 0.5) -> dict[str, float]:
    """:func:`score_mtmc` on MOT files, one ground-truth and one prediction file per camera, same order."""
    return score_mtmc([read_mot(p) for p in gt_files], [read_mot(p) for p in pred_files], iou_threshold)
