"""Temporal sampling: which frames of a tracklet form the clip(s) a video re-ID model sees.

Training draws one clip of ``seq_len`` frames per tracklet and epoch (:func:`sample_train_indices`); testing turns a
tracklet into a deterministic stack of clips whose embeddings are averaged (:func:`test_clip_indices`). Every mode
reproduces the index arithmetic of the reference code it is named after, including how short tracklets are padded, so
that scores obtained with reidzoo match the authors' protocols. :data:`SAMPLING_MODES` documents each mode.

Sources:
    torchreid ``VideoDataset`` (KaiyangZhou/deep-person-reid, ``torchreid/data/datasets/dataset.py``);
    SINet ``TemporalRestrictedCrop`` / ``TemporalRestrictedBeginCrop`` / ``VideoDatasetInfer.loop_padding``
    (baist/SINet, ``transforms/temporal_transforms.py``, ``utils/video_loader.py``);
    COSAM ``VideoDataset`` ``random`` / ``dense`` (InnovArul/vidreid_cosegmentation and its parent
    jiyanggao/Video-Person-ReID, ``video_loader.py``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ['SAMPLING_MODES', 'TRAIN_MODES', 'TEST_MODES', 'sample_train_indices', 'test_clip_indices']

TRAIN_MODES = ('random', 'restricted', 'consecutive')
TEST_MODES = ('restricted_begin', 'evenly', 'dense', 'interleaved', 'all')

SAMPLING_MODES: dict[str, str] = {
    'random': 'train: T random frame indices, sorted; drawn without replacement unless the tracklet has fewer than T '
              'frames (torchreid sample_method="random").',
    'restricted': 'train: the tracklet is cut into T equal chunks (the last absorbs the remainder) and one random '
                  'frame is taken from each; tracklets shorter than T are first padded by repeating their last frame '
                  '(SINet TemporalRestrictedCrop, the TSN-style sampling of the SINet paper).',
    'consecutive': 'train: T consecutive frames from a random start in [0, n - T - 1]; shorter tracklets are cycled '
                   '(0, 1, .., n-1, 0, 1, ..) (COSAM / Video-Person-ReID sample="random"; STMP also uses consecutive '
                   'frames).',
    'restricted_begin': 'test: one clip made of the first frame of each of T equal chunks, short tracklets padded with '
                        'the last frame (SINet TemporalRestrictedBeginCrop).',
    'evenly': 'test: one clip; n >= T: n -= n % T and indices arange(0, n, n / T); n < T: 0..n-1 then the last index '
              'repeated (torchreid sample_method="evenly").',
    'dense': 'test: every frame, as consecutive non-overlapping clips of T; the last clip is loop-padded by cycling '
             'its own frames (COSAM / Video-Person-ReID sample="dense").',
    'interleaved': 'test: every frame; the index list is loop-padded to a multiple of T by appending its last `lack` '
                   'entries and re-sorted, then clip j = {j, j+m, j+2m, ..} with m = padded length / T (SINet '
                   '--all_frames, VideoDatasetInfer).',
    'all': 'test: one clip holding every frame, T = n (STMP, STA).',
}


def _check(num_frames: int, mode: str, seq_len: int, allowed: tuple[str, ...], kind: str) -> None:
    if mode not in allowed:
        hint = ' (that is a test mode; use test_clip_indices)' if mode in TEST_MODES else (
            ' (that is a train mode; use sample_train_indices)' if mode in TRAIN_MODES else '')
        raise ValueError(f'Unknown {kind} sampling mode {mode!r}{hint}; expected one of {allowed}.')
    if int(num_frames) < 1:
        raise ValueError(f'A tracklet needs at least one frame to be sampled, got num_frames={num_frames}.')
    if int(seq_len) < 1:
        raise ValueError(f'seq_len must be >= 1, got {seq_len}.')


def _pad_with_last(num_frames: int, seq_len: int) -> np.ndarray:
    """0..n-1, then the last index repeated up to ``seq_len`` (SINet's ``while len < size: append(last)``)."""
    idx = np.arange(num_frames)
    if num_frames < seq_len:
        idx = np.concatenate([idx, np.full(seq_len - num_frames, num_frames - 1)])
    return idx


def _cycle(indices: np.ndarray, seq_len: int) -> np.ndarray:
    """Loop-pad by cycling the given indices: [a, b, c] -> [a, b, c, a, b, ...] (COSAM's append-while-iterating)."""
    return np.resize(indices, seq_len) if len(indices) < seq_len else indices


def _chunk_starts(num_frames: int, seq_len: int) -> tuple[np.ndarray, int]:
    """Starts of T equal chunks of a (last-frame padded) tracklet, and the padded length."""
    padded = max(num_frames, seq_len)
    block = padded // seq_len
    return np.arange(seq_len) * block, padded


def sample_train_indices(num_frames: int, mode: str, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the frame indices of one training clip.

    Args:
        num_frames: Number of frames ``n`` in the tracklet.
        mode: One of :data:`TRAIN_MODES` (see :data:`SAMPLING_MODES`).
        seq_len: Clip length ``T``.
        rng: Source of randomness; the result is a pure function of its state.

    Returns:
        int64 array of shape ``(seq_len,)`` with values in ``[0, num_frames)``.
    """
    _check(num_frames, mode, seq_len, TRAIN_MODES, 'train')
    n, t = int(num_frames), int(seq_len)
    if mode == 'random':
        idx = np.sort(rng.choice(n, size=t, replace=n < t))
    elif mode == 'restricted':
        starts, padded = _chunk_starts(n, t)
        # chunks 0..T-2 have `block` frames; the last runs to the end of the (padded) tracklet
        lengths = np.diff(np.append(starts, padded))
        idx = starts + (rng.random(t) * lengths).astype(np.int64)
        idx = np.minimum(idx, n - 1)  # padded positions all repeat the last frame
    else:  # consecutive
        # COSAM draws begin in [0, n - T - 1] (randint is inclusive), so the last window start n - T is never chosen
        begin = int(rng.integers(0, max(0, n - t - 1), endpoint=True))
        idx = _cycle(np.arange(begin, min(begin + t, n)), t)
    return idx.astype(np.int64)


def test_clip_indices(num_frames: int, mode: str, seq_len: int) -> np.ndarray:
    """Deterministic test-time clips of a tracklet.

    Args:
        num_frames: Number of frames ``n`` in the tracklet.
        mode: One of :data:`TEST_MODES` (see :data:`SAMPLING_MODES`).
        seq_len: Clip length ``T`` (ignored by ``'all'``).

    Returns:
        int64 array of shape ``(num_clips, T_clip)``; ``T_clip == seq_len`` except for ``'all'`` (``T_clip == n``).
    """
    _check(num_frames, mode, seq_len, TEST_MODES, 'test')
    n, t = int(num_frames), int(seq_len)
    if mode == 'restricted_begin':
        starts, _ = _chunk_starts(n, t)
        clips = np.minimum(starts, n - 1)[None]
    elif mode == 'evenly':
        if n >= t:
            n_even = n - n % t
            clips = np.arange(0, n_even, n_even // t)[None]
        else:
            clips = _pad_with_last(n, t)[None]
    elif mode == 'dense':
        # COSAM loops `while n - cur > T`, so an exact multiple ends with a full clip and the remainder (1..T frames)
        # forms the last clip, cycled from its own start
        num_full = (n - 1) // t
        full = np.arange(num_full * t).reshape(num_full, t)
        last = _cycle(np.arange(num_full * t, n), t)[None]
        clips = np.concatenate([full, last])
    elif mode == 'interleaved':
        idx = list(range(n))
        target = math.ceil(n / t) * t
        while len(idx) != target:
            lack = target - len(idx)
            idx.extend(idx[-lack:] if len(idx) > lack else list(idx))
        idx = np.sort(np.asarray(idx))
        clips = idx.reshape(t, len(idx) // t).T  # SINet reshapes (C, T, m) -> clip j takes every m-th frame from j
    else:  # all
        clips = np.arange(n)[None]
    return np.ascontiguousarray(clips, dtype=np.int64)


test_clip_indices.__test__ = False  # not a pytest test, even when a test module imports it by name
