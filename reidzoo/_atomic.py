"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Union

__all__ = ['atomic_write', 'atomic_write_text', 'current_umask', 'fsync_dir', 'replace_dir']


def current_umask() -> int:
    """The process umask (read without changing it), for files and folders made with 0600/0700 temp APIs."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Union[str, Path]) -> None:
    """Make a rename inside ``path`` durable (not possible on every OS / filesystem: then a no-op)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Union[str, Path], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_path)`` on a hidden temp file next to ``path``, fsync it, rename it over ``path``, and fsync
    the folder so the rename survives a crash.

    The temp file is removed if ``write`` raises. Permissions follow the umask (``mkstemp`` would leave 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding='utf-8'))


def replace_dir(tmp: Union[str, Path], dest: Union[str, Path]) -> Path:
    """Publish the finished folder ``tmp`` (a sibling of ``dest``) as ``dest``, replacing an existing ``dest``.

    An old ``dest`` is renamed aside first and deleted only after the new one is in place, so a crash leaves either
    folder whole (plus, at worst, a hidden ``.<name>.old-*`` sibling), never a mix of the two.
    """
    tmp, dest = Path(tmp), Path(dest)
    old = None
    if dest.exists():
        old = dest.parent / f'.{dest.name}.old-{uuid.uuid4().hex[:8]}'
        os.replace(dest, old)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest
