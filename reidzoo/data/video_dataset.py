"""Torch datasets over tracklets: one random clip per tracklet for training, all test clips of a tracklet for testing.

Training randomness (temporal sampling and the clip's spatial augmentation) is a pure function of
``(seed, epoch, index)``, never of worker ids or of how many items were drawn before, so a run resumed mid-epoch on any
number of workers sees exactly the clips it would have seen without the interruption.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import load_frame
from .sampling import TEST_MODES, TRAIN_MODES, sample_train_indices, test_clip_indices

__all__ = ['VideoClipDataset', 'TrackletClipsDataset', 'collate_tracklet_clips']


def _frames_of(tracklet, index: int) -> Sequence[str]:
    frames = tracklet[0]
    if len(frames) == 0:
        raise ValueError(f'Tracklet {index} (pid {tracklet[1]}, camid {tracklet[2]}) has no frames; '
                         'its folder is empty or its frame range is wrong.')
    return frames


def _apply(transform: Optional[Callable], images: list, generator: Optional[torch.Generator]) -> torch.Tensor:
    if transform is None:
        raise ValueError('A transform is needed to turn frames into tensors; use reidzoo.data.build_clip_transform.')
    if _accepts_generator(transform):
        return transform(images, generator=generator)
    return transform(images)  # a plain callable(list[PIL.Image]); its randomness is then not seeded per item


def _accepts_generator(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return 'generator' in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def collate_tracklet_clips(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten the clips of several tracklets into one clip batch.

    Args:
        batch: Items of :class:`TrackletClipsDataset`.

    Returns:
        ``clips (sum num_clips, T, 3, H, W)`` and ``clip_to_tracklet (sum num_clips,)`` int64, the dataset index of the
        tracklet each clip belongs to (average clip embeddings per tracklet with it, e.g. ``index_add_``).
    """
    shapes = {tuple(clips.shape[1:]) for clips, _ in batch}
    if len(shapes) > 1:
        raise ValueError(f'Cannot batch clips of different shapes {sorted(shapes)} (T differs with test_sampling='
                         "'all'); use batch_size=1 for 'all', or a fixed-length sampling.")
    clips = torch.cat([c for c, _ in batch])
    owners = torch.cat([torch.full((len(c),), int(i), dtype=torch.int64) for c, i in batch])
    return clips, owners


class VideoClipDataset(Dataset):
    """Training dataset: item ``i`` is one clip sampled from tracklet ``i``.

    Args:
        tracklets: Sequence of ``Tracklet(frames, pid, camid)`` (or any ``(frames, pid, camid)`` tuples).
        seq_len: Frames per clip ``T``.
        sampling: A train mode of :mod:`reidzoo.data.sampling` (``'random'``, ``'restricted'``, ``'consecutive'``).
        transform: ``callable(list[PIL.Image], generator=torch.Generator) -> (T, 3, H, W)``, e.g.
            ``build_clip_transform(cfg, train=True)``.
        seed: Base seed; item randomness depends only on ``(seed, epoch, index)``.

    Returns (per item):
        ``(clip (T, 3, H, W) float32, pid, camid)``. An index ``i + j * len(dataset)`` (``j >= 1``, as yielded by
        :class:`~reidzoo.data.samplers.RandomIdentitySampler` for repeated draws) is tracklet ``i`` with an
        independent random clip.
    """

    def __init__(self, tracklets: Sequence, seq_len: int, sampling: str, transform: Optional[Callable], seed: int = 0):
        if sampling not in TRAIN_MODES:
            raise ValueError(f'Unknown train sampling {sampling!r}; expected one of {TRAIN_MODES}.')
        self.tracklets = list(tracklets)
        self.seq_len = int(seq_len)
        self.sampling = sampling
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random clips are drawn (call before each epoch, like DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.tracklets)

    def _draw(self, index: int) -> tuple[Sequence[str], np.ndarray, np.random.Generator]:
        index = int(index) + (len(self.tracklets) if index < 0 else 0)
        repeat, tracklet = divmod(index, len(self.tracklets))
        frames = _frames_of(self.tracklets[tracklet], tracklet)
        rng = np.random.default_rng([self.seed, self.epoch, tracklet, repeat])
        return frames, sample_train_indices(len(frames), self.sampling, self.seq_len, rng), rng

    def frame_indices(self, index: int) -> np.ndarray:
        """The frame indices item ``index`` uses in the current epoch."""
        return self._draw(index)[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        frames, indices, rng = self._draw(index)
        _, pid, camid = self.tracklets[int(index) % len(self.tracklets)][:3]
        generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        images = [load_frame(frames[i]) for i in indices]
        return _apply(self.transform, images, generator), int(pid), int(camid)


class TrackletClipsDataset(Dataset):
    """Test dataset: item ``i`` is every test clip of tracklet ``i``, ready for clip-level batching.

    Each distinct frame is read and transformed once, even when the sampling repeats it (padding).

    Args:
        tracklets: Sequence of ``(frames, pid, camid)``.
        test_sampling: A test mode of :mod:`reidzoo.data.sampling`.
        seq_len: Frames per clip ``T`` (ignored by ``'all'``).
        transform: Deterministic transform, e.g. ``build_clip_transform(cfg, train=False)``.

    Returns (per item):
        ``(clips (num_clips, T, 3, H, W) float32, index)``. Use :meth:`collate` as the DataLoader's ``collate_fn``.
    """

    def __init__(self, tracklets: Sequence, test_sampling: str, seq_len: int, transform: Optional[Callable]):
        if test_sampling not in TEST_MODES:
            raise ValueError(f'Unknown test sampling {test_sampling!r}; expected one of {TEST_MODES}.')
        self.tracklets = list(tracklets)
        self.test_sampling = test_sampling
        self.seq_len = int(seq_len)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tracklets)

    def clip_indices(self, index: int) -> np.ndarray:
        """``(num_clips, T)`` frame indices of tracklet ``index``."""
        return test_clip_indices(len(_frames_of(self.tracklets[index], index)), self.test_sampling, self.seq_len)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames = _frames_of(self.tracklets[index], index)
        clips = self.clip_indices(index)
        unique, inverse = np.unique(clips, return_inverse=True)
        images = _apply(self.transform, [load_frame(frames[i]) for i in unique], None)
        return images[torch.from_numpy(inverse.reshape(clips.shape))], index

    collate = staticmethod(collate_tracklet_clips)
