"""Training checkpoints that survive a kill at any moment and resume bit-for-bit.

A checkpoint holds everything the next step depends on: model, optimiser, LR schedule, AMP scaler, sampler, the
random states (Python, NumPy, torch CPU and CUDA, per rank) and the position (global step, epoch, batch within the
epoch). The data pipeline needs no state of its own: every clip is a pure function of ``(seed, epoch, index)`` and the
data-loader worker seeds are derived from ``(seed, epoch, rank)``, so the position is enough to rebuild it.

Files are written to a temporary name in the same directory, flushed and fsync'ed, then renamed over the old file
(``os.replace`` is atomic on POSIX and Windows), so a reader sees either the previous or the new checkpoint, never a
torn one.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from .._atomic import atomic_write as _atomic_write

__all__ = ['atomic_write', 'save_checkpoint', 'load_checkpoint', 'capture_rng_state', 'restore_rng_state',
           'CHECKPOINT_NAME']

CHECKPOINT_NAME = 'checkpoint.pt'
FORMAT_VERSION = 1


def atomic_write(path: Union[str, Path], write: Callable[[Any], None], mode: str = 'wb') -> Path:
    """Write ``path`` through ``write(file_object)`` atomically (:func:`reidzoo._atomic.atomic_write`)."""
    def write_file(tmp: Path) -> None:
        with open(tmp, mode) as f:
            write(f)
    return _atomic_write(path, write_file)


def capture_rng_state() -> dict[str, Any]:
    """The global random states of this process (Python, NumPy, torch CPU, every CUDA device)."""
    state = {
        'python': random.getstate(),
        'numpy': np.random.get_state(),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    random.setstate(_as_python_state(state['python']))
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_python_state(state: Any) -> tuple:
    """``random.setstate`` needs tuples; a round trip through some serialisers turns them into lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


def save_checkpoint(path: Union[str, Path], state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a training state dict (see :class:`reidzoo.train.trainer.Trainer`)."""
    state = dict(state, format_version=FORMAT_VERSION)
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Union[str, Path], map_location: Optional[Union[str, torch.device]] = 'cpu') -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    The file holds NumPy and Python RNG states, so it is unpickled with ``weights_only=False``: only load
    checkpoints your own runs wrote. Weights for sharing go through ``reidzoo export`` (safetensors).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'No training checkpoint at {path}; start the run without --resume.')
    state = torch.load(path, map_location=map_location, weights_only=False)
    found = state.get('format_version') if isinstance(state, dict) else None
    if found != FORMAT_VERSION:
        raise ValueError(f'{path} is not a reidzoo training checkpoint (format {FORMAT_VERSION}); got a '
                         f'{type(state).__name__} with format {found}. Weights files load with reidzoo.create_model('
                         f'..., checkpoint_path=...).')
    return state
