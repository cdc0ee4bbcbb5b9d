"""MOTChallenge text tracks: the per-camera output format every multi-object tracker writes.

One detection per line, comma separated, frames 1-based (MOT16/17/20, ByteTrack, BoT-SORT, boxmot, ultralytics)::

    <frame>,<id>,<bb_left>,<bb_top>,<bb_width>,<bb_height>,<conf>,<x>,<y>,<z>

Only the first six columns are required; any further columns are kept verbatim and written back unchanged by
:func:`write_mot`, which replaces only the id column. Errors name the file and the 1-based line.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

from .._atomic import atomic_write_text

__all__ = ['TracksFormatError', 'Detection', 'read_mot', 'format_mot', 'write_mot', 'group_by_track']

PathLike = Union[str, os.PathLike]


class TracksFormatError(ValueError):
    """A tracks file is empty or has a line that is not MOT text; the message names the file and line."""


@dataclass(frozen=True)
class Detection:
    """One row of a MOT tracks file (box in pixels, top-left origin, as written by the tracker)."""
    frame: int  # 1-based
    track_id: int
    x: float
    y: float
    w: float
    h: float
    conf: float = 1.0
    extra: tuple[str, ...] = field(default=())  # columns after bb_height (conf, x, y, z, ...) as written
    line: int = 0  # 1-based line in the source file, for messages


def _parse_line(text: str, path: str, lineno: int) -> Detection:
    cols = [c.strip() for c in text.split(',')]
    where = f'{path}, line {lineno}'
    if len(cols) < 6:
        raise TracksFormatError(
            f'{where}: expected at least 6 comma-separated columns (frame,id,x,y,w,h[,conf,...]), got {len(cols)}: '
            f'{text.strip()!r}')
    try:
        values = [float(c) for c in cols[:6]]
    except ValueError:
        raise TracksFormatError(f'{where}: columns 1-6 (frame,id,x,y,w,h) must be numbers, got {text.strip()!r}') \
            from None
    frame, track_id, x, y, w, h = values
    if not all(math.isfinite(v) for v in values):
        raise TracksFormatError(f'{where}: columns 1-6 must be finite numbers, got {text.strip()!r}')
    if frame != int(frame) or frame < 1:
        raise TracksFormatError(f'{where}: frame must be an integer >= 1 (MOT frames are 1-based), got {cols[0]!r}')
    if track_id != int(track_id):
        raise TracksFormatError(f'{where}: track id must be an integer, got {cols[1]!r}')
    if w <= 0 or h <= 0:
        raise TracksFormatError(f'{where}: box width and height must be > 0, got w={cols[4]} h={cols[5]}')
    conf = 1.0
    if len(cols) > 6 and cols[6]:
        try:
            conf = float(cols[6])
        except ValueError:
            raise TracksFormatError(f'{where}: column 7 (conf) must be a number, got {cols[6]!r}') from None
    return Detection(int(frame), int(track_id), x, y, w, h, conf, tuple(cols[6:]), lineno)


def read_mot(path: PathLike) -> list[Detection]:
    """Read a MOT tracks file; blank lines are skipped.

    Raises:
        FileNotFoundError: the file does not exist.
        TracksFormatError: the file holds no detection, a line is malformed, or one track has two boxes in one frame
            (names the file and line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Tracks file {path} does not exist.')
    rows: list[Detection] = []
    seen: dict[tuple[int, int], int] = {}
    with open(path, encoding='utf-8', errors='replace') as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            det = _parse_line(text, path, lineno)
            key = (det.frame, det.track_id)
            if key in seen:
                raise TracksFormatError(
                    f'{path}, line {lineno}: track {det.track_id} already has a box in frame {det.frame} '
                    f'(line {seen[key]}); a track has at most one box per frame.')
            seen[key] = lineno
            rows.append(det)
    if not rows:
        raise TracksFormatError(
            f'Tracks file {path} is empty (no detections). Check that the tracker finished; if that camera really saw '
            'no one, leave the camera out of --videos/--tracks.')
    return rows


def group_by_track(rows: Iterable[Detection]) -> dict[int, list[Detection]]:
    """Detections of each track id, sorted by frame."""
    tracks: dict[int, list[Detection]] = {}
    for det in rows:
        tracks.setdefault(det.track_id, []).append(det)
    return {tid: sorted(dets, key=lambda d: d.frame) for tid, dets in sorted(tracks.items())}


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f'{v:.2f}'


def format_mot(rows: Iterable[Detection], id_map: dict[int, int] | None = None) -> str:
    """MOT text of ``rows`` sorted by (frame, id); ``id_map`` replaces track ids (rows whose id it lacks are left
    out)."""
    lines = []
    out = []
    for det in rows:
        tid = det.track_id if id_map is None else id_map.get(det.track_id)
        if tid is None:
            continue
        out.append((det.frame, tid, det))
    for frame, tid, det in sorted(out, key=lambda r: (r[0], r[1])):
        extra = det.extra if det.extra else ('1', '-1', '-1', '-1')
        lines.append(','.join([str(frame), str(tid), _num(det.x), _num(det.y), _num(det.w), _num(det.h), *extra]))
    return '\n'.join(lines) + ('\n' if lines else '')


def write_mot(path: PathLike, rows: Iterable[Detection], id_map: dict[int, int] | None = None) -> Path:
    """Write rows as MOT text, atomically (see :func:`format_mot`)."""
    return atomic_write_text(path, format_mot(rows, id_map))
