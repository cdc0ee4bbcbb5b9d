"""Frame sources for ``reidzoo match``: a video decoded by PyAV (any FFmpeg-readable file) or a folder of frames.

Both stream: a video is decoded once, frame by frame, and never held in memory; a frame folder is read one file at a
time. Frames come out as ``(H, W, 3)`` uint8 RGB arrays with their 1-based frame number (the MOT convention).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
from PIL import Image

from ..data.dataset import DatasetError, list_frames
from ..data.io import FrameLoadError, load_frame

__all__ = ['VideoDecodeError', 'FrameSource', 'VideoSource', 'FolderSource', 'open_source', 'crop_box', 'clip_box']

PathLike = Union[str, os.PathLike]
FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


class VideoDecodeError(OSError):
    """A video (or frame folder) cannot be opened or decoded; the message names the file."""


class FrameSource:
    """A camera's frames: ``width``, ``height``, ``path`` and :meth:`frames`."""
    path: str
    width: int
    height: int

    @property
    def stem(self) -> str:
        """Name used for the output tracks file (``<stem>.txt``)."""
        return Path(self.path).stem if not os.path.isdir(self.path) else Path(self.path).name

    def frames(self, last: Optional[int] = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_number, rgb)`` from frame 1, stopping after ``last`` if given."""
        raise NotImplementedError

    def count_hint(self) -> Optional[int]:
        """Number of frames if the container says so (may be missing or approximate), else ``None``."""
        return None


class VideoSource(FrameSource):
    """A video file decoded by PyAV, streamed frame by frame (FFmpeg's own threads decode ahead)."""

    def __init__(self, path: PathLike):
        import av
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f'Video {self.path} does not exist.')
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise VideoDecodeError(f'{self.path} has no video stream.')
                stream = container.streams.video[0]
                self.width, self.height = int(stream.codec_context.width), int(stream.codec_context.height)
                self._frames = int(stream.frames or 0)
        except VideoDecodeError:
            raise
        except (av.FFmpegError, ValueError, OSError) as e:
            raise VideoDecodeError(
                f'Cannot open video {self.path}: {e}. The file is corrupt, truncated or not a video; re-copy or '
                're-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4).') from e
        if self.width <= 0 or self.height <= 0:
            raise VideoDecodeError(f'Video {self.path} reports a frame size of {self.width}x{self.height}; it is '
                                   'corrupt or truncated.')

    def count_hint(self) -> Optional[int]:
        return self._frames or None

    def frames(self, last: Optional[int] = None) -> Iterator[tuple[int, np.ndarray]]:
        import av
        index = 0
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = 'AUTO'  # frame-level threading: decoding keeps both cores busy
                for frame in container.decode(stream):
                    index += 1
                    yield index, frame.to_ndarray(format='rgb24')
                    if last is not None and index >= last:
                        return
        except av.FFmpegError as e:
            raise VideoDecodeError(
                f'Decoding {self.path} failed after frame {index}: {e}. The file is corrupt or truncated; re-copy or '
                're-encode it.') from e


class FolderSource(FrameSource):
    """A folder of frame images, in natural order (``f9.jpg`` before ``f10.jpg``); frame 1 is the first file."""

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        try:
            self.files = list_frames(self.path, FRAME_SUFFIXES)
        except DatasetError as e:
            raise VideoDecodeError(str(e)) from e
        with Image.open(self.files[0]) as img:
            self.width, self.height = img.size

    def count_hint(self) -> Optional[int]:
        return len(self.files)

    def frames(self, last: Optional[int] = None) -> Iterator[tuple[int, np.ndarray]]:
        for index, file in enumerate(self.files[:last] if last is not None else self.files, start=1):
            try:
                img = load_frame(file)
            except FrameLoadError as e:
                raise VideoDecodeError(str(e)) from e
            if img.size != (self.width, self.height):
                raise VideoDecodeError(f'Frame {file} is {img.size[0]}x{img.size[1]}, but {self.files[0]} is '
                                       f'{self.width}x{self.height}; all frames of a camera must have one size.')
            yield index, np.asarray(img)


def open_source(path: PathLike) -> FrameSource:
    """A :class:`FolderSource` for a folder, else a :class:`VideoSource`."""
    return FolderSource(path) if os.path.isdir(path) else VideoSource(path)


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int, float]:
    """Integer box ``(x0, y0, x1, y1)`` clipped to the frame, and the fraction of the box area cut off (1.0 when
    the box lies wholly outside)."""
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return 0, 0, 0, 0, 1.0
    return x0, y0, x1, y1, float(1 - (x1 - x0) * (y1 - y0) / max(w * h, 1e-9))


def crop_box(frame: np.ndarray, box: tuple[int, int, int, int], size: Optional[tuple[int, int]],
             upscale: bool = True) -> Image.Image:
    """Crop ``box = (x0, y0, x1, y1)`` from an RGB frame and resize it to ``size = (H, W)`` (bilinear; ``None``
    keeps the crop's size). With ``upscale=False`` a crop no larger than ``size`` in both sides is kept as it is:
    the model's transform resizes every frame it reads anyway, so enlarging here would only cost time and disk."""
    x0, y0, x1, y1 = box
    img = Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1]))
    if size is None or img.size == (size[1], size[0]):
        return img
    if not upscale and img.size[0] <= size[1] and img.size[1] <= size[0]:
        return img
    return img.resize((size[1], size[0]), Image.BILINEAR)
