"""The features of the colour-histogram matcher, SynthVID's no-learning reference.

A tracklet is described by the mean of the L1-normalised ``bins**3`` joint RGB histograms of up to ``max_frames``
evenly spaced frames. The square root of that histogram is returned, so that the Euclidean distance between two
features is ``sqrt(2)`` times their Hellinger distance (same ranking): any Euclidean retrieval pipeline scores it.
Scoring lives above the data layer (``reidzoo.cli.synth.colour_histogram_baseline`` runs it through
``reidzoo.eval``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..io import load_frame

__all__ = ['colour_histogram_features']


def _tracklet_histogram(frames: Sequence[str], bins: int, max_frames: int) -> np.ndarray:
    pick = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    hist = np.zeros(bins ** 3, np.float64)
    for i in pick:
        q = (np.asarray(load_frame(frames[i]), np.int64) * bins) // 256
        h = np.bincount(((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).ravel(), minlength=bins ** 3)
        hist += h / h.sum()
    return hist / len(pick)


def colour_histogram_features(tracklets: Sequence, bins: int = 8, max_frames: int = 8) -> np.ndarray:
    """``(len(tracklets), bins**3)`` float64 square-rooted mean RGB histograms (see the module docstring).

    Args:
        tracklets: objects with ``.frames`` (frame paths in temporal order), e.g. :class:`reidzoo.data.Tracklet`.
        bins: bins per colour channel.
        max_frames: frames sampled per tracklet (evenly spaced).
    """
    if not len(tracklets):
        return np.zeros((0, bins ** 3), np.float64)
    return np.sqrt(np.stack([_tracklet_histogram(t.frames, bins, max_frames) for t in tracklets]))
