"""Tracks + video -> re-ID tracklets: quality filters, then one streaming decode that crops the chosen boxes.

Filters (defaults in :class:`TrackletFilter`) work on the boxes alone, before decoding, so that only frames that
will be embedded are cropped: boxes lying wholly outside the frame are dropped (with a warning), boxes cut by the
frame border by more than ``max_cut`` of their area or shorter than ``min_height`` pixels are not used for
appearance, and a track left with fewer than ``min_length`` usable boxes is dropped (false positives and fragments
too short to describe a person). Up to ``max_frames`` usable boxes per track, evenly spaced in time, are cropped,
resized to the model's input size and written as PNG files, one folder per tracklet, so the result is ordinary
:class:`reidzoo.data.Tracklet` objects (frames = file paths) that every model and the extraction code take unchanged.
"""
from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.dataset import Tracklet
from .tracks import Detection, group_by_track
from .video import FrameSource, clip_box, crop_box

__all__ = ['TrackletFilter', 'TrackletInfo', 'FramesPastEndError', 'MatchWarning', 'build_tracklets']


class FramesPastEndError(ValueError):
    """A tracks file refers to frames the video does not have (wrong video for these tracks?)."""


class MatchWarning(UserWarning):
    """Something was skipped (boxes outside the frame, a camera without usable tracklets); matching goes on."""


@dataclass(frozen=True)
class TrackletFilter:
    """Quality filters applied to each track before cropping.

    Attributes:
        min_length: fewest usable boxes a track needs to become a tracklet.
        min_height: smallest usable box height in pixels (after clipping to the frame).
        max_cut: largest fraction of a box's area that may lie outside the frame for the box to be used.
        max_frames: most boxes cropped per tracklet, evenly spaced (bounds disk use and embedding time).
        max_overlap: boxes more covered than this by another track's box of the same frame (someone in front) are
            left out of the appearance when at least ``min_length`` boxes remain without them.
    """
    min_length: int = 8
    min_height: int = 32
    max_cut: float = 0.2
    max_frames: int = 32
    max_overlap: float = 0.3


@dataclass
class TrackletInfo:
    """A tracklet of one camera with where it came from: the tracker's id, time span and the boxes used."""
    tracklet: Tracklet  # frames = crop files; pid = the tracker's local id; camid = camera index (0-based)
    camera: str  # the camera's name (video stem)
    track_id: int
    first_frame: int
    last_frame: int
    num_boxes: int
    crop_frames: list[int] = field(default_factory=list)  # frame number of each crop in tracklet.frames
    thumbnail: str = ''  # a display-size crop of the middle chosen box


def _covered(item: tuple[int, tuple[int, int, int, int]], others: Sequence[tuple], tid: int) -> float:
    """Largest fraction of a box's area that another track's box of the same frame covers."""
    _, (x0, y0, x1, y1) = item
    area = max((x1 - x0) * (y1 - y0), 1)
    worst = 0.0
    for other, a0, b0, a1, b1 in others:
        if other != tid:
            iw, ih = min(x1, a1) - max(x0, a0), min(y1, b1) - max(y0, b0)
            if iw > 0 and ih > 0:
                worst = max(worst, iw * ih / area)
    return worst


def _even(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def build_tracklets(
        source: FrameSource,
        rows: Sequence[Detection],
        camid: int,
        crop_dir: os.PathLike | str,
        *,
        tracks_path: str = '',
        filters: TrackletFilter = TrackletFilter(),
        crop_size: Optional[tuple[int, int]] = None,
        thumb_size: tuple[int, int] = (96, 48),
        crop_format: str = '.bmp',
        progress: bool = True,
) -> tuple[list[TrackletInfo], dict[int, str]]:
    """Filter one camera's tracks, decode its video once and crop the chosen boxes.

    Args:
        source: the camera's frames.
        rows: its MOT detections.
        camid: camera index stored in the tracklets.
        crop_dir: crops go to ``crop_dir/<track id>/<frame><crop_format>``.
        tracks_path: the tracks file, for messages.
        filters: quality filters.
        crop_size: ``(H, W)`` larger crops are shrunk to (the model's input size); smaller ones are kept as they are
            (the model's transform resizes them when it reads them); ``None`` keeps every box size.
        thumb_size: ``(H, W)`` of the one display thumbnail per tracklet (``crop_dir/<track id>/thumbnail.jpg``),
            cut from the original frame so that it stays sharp whatever the model's input size.
        crop_format: file type of the crops: ``'.bmp'`` (default: lossless and the quickest to write and read) or
            ``'.png'`` (lossless, smaller) or ``'.jpg'``.
        progress: tqdm bar over the decoded frames.

    Returns:
        The tracklets (in track id order) and, for each dropped track id, why it was dropped.

    Raises:
        FramesPastEndError: a box refers to a frame after the last one of the video (names track, frame and line).
    """
    from tqdm.auto import tqdm
    where = tracks_path or 'tracks'
    tracks = group_by_track(rows)
    chosen: dict[int, dict[int, tuple[int, int, int, int]]] = {}  # frame -> track -> box
    kept: dict[int, tuple[list[int], int]] = {}
    dropped: dict[int, str] = {}
    outside: dict[int, int] = {}
    thumbs: dict[int, dict[int, tuple[int, int, int, int]]] = {}
    by_frame: dict[int, list[tuple[int, float, float, float, float]]] = {}
    for det in rows:
        by_frame.setdefault(det.frame, []).append((det.track_id, det.x, det.y, det.x + det.w, det.y + det.h))
    for tid, dets in tracks.items():
        usable = []
        for det in dets:
            x0, y0, x1, y1, cut = clip_box(det.x, det.y, det.w, det.h, source.width, source.height)
            if cut >= 1.0:
                outside[tid] = outside.get(tid, 0) + 1
                continue
            if cut <= filters.max_cut and y1 - y0 >= filters.min_height:
                usable.append((det.frame, (x0, y0, x1, y1)))
        if len(usable) < filters.min_length:
            dropped[tid] = (f'{len(usable)} usable boxes (< min_length {filters.min_length}; boxes lower than '
                            f'{filters.min_height} px or cut by the border by more than {filters.max_cut:.0%} do not '
                            'count)')
            continue
        # prefer boxes no other box covers much of (another person in front mixes two appearances in one crop),
        # as long as enough of them remain
        clean = [u for u in usable if _covered(u, by_frame.get(u[0], ()), tid) <= filters.max_overlap]
        source_boxes = clean if len(clean) >= filters.min_length else usable
        pick = [source_boxes[i] for i in _even(len(source_boxes), filters.max_frames)]
        for frame, box in pick:
            chosen.setdefault(frame, {})[tid] = box
        kept[tid] = ([f for f, _ in pick], len(dets))
        thumbs.setdefault(pick[len(pick) // 2][0], {})[tid] = pick[len(pick) // 2][1]
    if outside:
        detail = ', '.join(f'track {t}: {n}' for t, n in sorted(outside.items())[:10])
        warnings.warn(f'{where}: {sum(outside.values())} boxes lie wholly outside the {source.width}x{source.height} '
                      f'frame and were ignored ({detail}{", ..." if len(outside) > 10 else ""}).', MatchWarning,
                      stacklevel=2)

    last_needed = max(d.frame for d in rows)
    crop_dir = Path(crop_dir)
    for tid in kept:
        (crop_dir / str(tid)).mkdir(parents=True, exist_ok=True)
    decoded = 0
    hint = source.count_hint()
    bar = tqdm(total=min(last_needed, hint) if hint else last_needed, desc=f'decode {source.stem}', unit='frame',
               disable=not progress, leave=False)
    # crops are encoded and written by two threads (Pillow and file I/O release the GIL) while FFmpeg decodes on:
    # written inline, the file writes alone cost several times the decoding. At most 256 crops wait (memory bound).
    save_kw = {'compress_level': 1} if crop_format == '.png' else {'quality': 95} if crop_format == '.jpg' else {}
    pool = ThreadPoolExecutor(max_workers=2)
    pending: deque = deque()

    def submit(image, path, **kw) -> None:
        pending.append(pool.submit(image.save, path, **kw))
        while len(pending) > 256 or (pending and pending[0].done()):
            pending.popleft().result()  # re-raises a failed write here

    try:
        for index, frame in source.frames(last=last_needed):
            decoded = index
            bar.update(1)
            for tid, box in chosen.get(index, {}).items():
                submit(crop_box(frame, box, crop_size, upscale=False),
                       crop_dir / str(tid) / f'{index:06d}{crop_format}', **save_kw)
            for tid, box in thumbs.get(index, {}).items():
                submit(crop_box(frame, box, thumb_size), crop_dir / str(tid) / 'thumbnail.jpg', quality=90)
        while pending:
            pending.popleft().result()
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    if decoded < last_needed:
        late = min((d for d in rows if d.frame > decoded), key=lambda d: d.line)
        raise FramesPastEndError(
            f'{where}, line {late.line}: track {late.track_id} has a box in frame {late.frame}, but {source.path} has '
            f'only {decoded} frames. Are the videos and tracks files given in the same order?')

    infos = []
    for tid, (frames, num_boxes) in kept.items():
        dets = tracks[tid]
        paths = tuple(str(crop_dir / str(tid) / f'{f:06d}{crop_format}') for f in frames)
        infos.append(TrackletInfo(Tracklet(paths, tid, camid), source.stem, tid, dets[0].frame, dets[-1].frame,
                                  num_boxes, list(frames), str(crop_dir / str(tid) / 'thumbnail.jpg')))
    return infos, dropped
