"""Frame loading with errors that name the offending file.

Reference loaders (SINet, torchreid) silently return a shorter clip when a frame is missing, or let Pillow decode a
truncated JPEG into a grey-bottomed image when ``ImageFile.LOAD_TRUNCATED_IMAGES`` was switched on somewhere in the
process. Both corrupt embeddings without a trace, so :func:`load_frame` refuses instead and says which file to fix.
"""
from __future__ import annotations

import os
from typing import Sequence, Union

from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = ['FrameLoadError', 'load_frame', 'load_frames']

PathLike = Union[str, os.PathLike]


class FrameLoadError(OSError):
    """A frame could not be read: missing, empty, truncated or not an image. The message names the path."""


def load_frame(path: PathLike) -> Image.Image:
    """Read one frame as an RGB ``PIL.Image``, fully decoded.

    Raises:
        FrameLoadError: naming ``path`` if the file is missing, empty, truncated or unreadable.
    """
    path = os.fspath(path)
    truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
    # another library may have switched this process-wide flag on; a truncated frame would then decode silently as a
    # partly grey image, so force it off while decoding and restore the caller's value afterwards
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with open(path, 'rb') as f:
            with Image.open(f) as img:
                img.load()  # decode now, inside the try, so truncation is reported here and not in a transform
                return img.convert('RGB')
    except FileNotFoundError as e:
        raise FrameLoadError(f'Frame not found: {path}. Check the dataset root and that extraction finished.') from e
    except UnidentifiedImageError as e:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        what = 'is empty' if size == 0 else 'is not a readable image'
        raise FrameLoadError(f'Frame {path} {what} ({size} bytes); re-extract or re-download it.') from e
    except (OSError, SyntaxError, ValueError) as e:
        raise FrameLoadError(f'Frame {path} is truncated or corrupt ({e}); re-extract or re-download it.') from e
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok


def load_frames(paths: Sequence[PathLike]) -> list[Image.Image]:
    """Read several frames; raises :class:`FrameLoadError` on the first bad one, and ``ValueError`` if empty."""
    if len(paths) == 0:
        raise ValueError('Got an empty list of frame paths: the tracklet folder holds no frames.')
    return [load_frame(p) for p in paths]
