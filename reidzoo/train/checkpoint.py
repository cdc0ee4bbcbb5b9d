"""Training checkpoints that survive a kill at any moment, resume bit-for-bit and never run code when loaded.

A checkpoint holds everything the next step depends on: model, optimiser, LR schedule, AMP scaler, sampler, the
random states (Python, NumPy, torch CPU and CUDA, per rank) and the position (global step, epoch, batch within the
epoch). The data pipeline needs no state of its own: every clip is a pure function of ``(seed, epoch, index)`` and the
data-loader worker seeds are derived from ``(seed, epoch, rank)``, so the position is enough to rebuild it.

Safe to load. Every value is a tensor or a plain Python value (the NumPy and Python random states are stored as
integer tensors, not as pickled NumPy objects), so :func:`load_checkpoint` reads the file with
``torch.load(weights_only=True)``: a crafted ``checkpoint.pt`` cannot run code. Checkpoints of format 1 (reidzoo
before this change) pickled NumPy's state and load only with the explicit opt-in ``trust_pickle=True``
(``--trust-pickle``), for files your own runs wrote.

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
from ..convert import load_torch_file

__all__ = ['atomic_write', 'save_checkpoint', 'load_checkpoint', 'capture_rng_state', 'restore_rng_state',
           'CHECKPOINT_NAME', 'FORMAT_VERSION']

CHECKPOINT_NAME = 'checkpoint.pt'
# 2: tensors and plain Python values only (loads with weights_only=True); 1: pickled NumPy RNG state
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)


def atomic_write(path: Union[str, Path], write: Callable[[Any], None], mode: str = 'wb') -> Path:
    """Write ``path`` through ``write(file_object)`` atomically (:func:`reidzoo._atomic.atomic_write`)."""
    def write_file(tmp: Path) -> None:
        with open(tmp, mode) as f:
            write(f)
    return _atomic_write(path, write_file)


def capture_rng_state() -> dict[str, Any]:
    """The global random states of this process (Python, NumPy, torch CPU, every CUDA device) as tensors and plain
    values, so that ``torch.load(weights_only=True)`` reads them back."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    if np_state['bit_generator'] != 'MT19937':  # np.random's legacy global generator is always MT19937
        raise RuntimeError(f'Unexpected NumPy global generator {np_state["bit_generator"]!r}.')
    state = {
        # MT19937 words are < 2**32: int64 holds them exactly
        'python': {'version': version, 'internal': torch.tensor(internal, dtype=torch.int64), 'gauss': gauss},
        'numpy': {'key': torch.from_numpy(np_state['state']['key'].astype(np.int64)),
                  'pos': int(np_state['state']['pos']), 'has_gauss': int(np_state['has_gauss']),
                  'gauss': float(np_state['gauss'])},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state` (also reads the pickled states of format-1 checkpoints)."""
    py = state['python']
    if isinstance(py, dict):
        random.setstate((py['version'], tuple(int(x) for x in py['internal'].tolist()), py['gauss']))
    else:  # format 1: random.getstate() as pickled
        version, internal, gauss = py
        random.setstate((version, tuple(internal), gauss))
    npy = state['numpy']
    if isinstance(npy, dict):
        np.random.set_state(('MT19937', npy['key'].numpy().astype(np.uint32), npy['pos'], npy['has_gauss'],
                             npy['gauss']))
    else:  # format 1: np.random.get_state() as pickled
        np.random.set_state(npy)
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _plain(value: Any, where: str) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and tensors; anything that
    ``torch.load(weights_only=True)`` would refuse raises here, naming its key, instead of writing a file that
    cannot be read back without an unrestricted unpickle."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses it but pickles as a NumPy object
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype, torch.device)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _plain(v, f'{where}.{k}') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f'{where}[{i}]') for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f'Checkpoint entry {where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint '
                    f'holds only tensors and plain Python values (so it loads with weights_only=True). Store it as '
                    f'a tensor, number, string, list or dict.')


def save_checkpoint(path: Union[str, Path], state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a training state dict (see :class:`reidzoo.train.trainer.Trainer`).

    Raises:
        TypeError: an entry is neither a tensor nor a plain Python value (it would need pickle to load).
    """
    state = _plain(dict(state, format_version=FORMAT_VERSION), 'state')
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Union[str, Path], map_location: Optional[Union[str, torch.device]] = 'cpu',
                    trust_pickle: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint file.
        map_location: where tensors go.
        trust_pickle: unpickle without restrictions. Only for checkpoints your own runs wrote with reidzoo's
            format 1 (which pickled NumPy's random state): an unrestricted unpickle runs any code the file holds.

    Raises:
        FileNotFoundError: no file at ``path``.
        pickle.UnpicklingError: the file holds objects other than tensors and plain values (a format-1 checkpoint,
            or a crafted file); nothing in it was run.
        ValueError: the file is not a reidzoo training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'No training checkpoint at {path}; start the run without --resume.')
    state = load_torch_file(
        path, trust_pickle=trust_pickle, what='reidzoo training checkpoint',
        trust_hint='and it is a checkpoint your own run wrote with an older reidzoo (format 1 pickled NumPy\'s '
                   'random state), pass --trust-pickle (trust_pickle=True)')
    found = state.get('format_version') if isinstance(state, dict) else None
    if found not in _READABLE_FORMATS:
        raise ValueError(f'{path} is not a reidzoo training checkpoint (format {FORMAT_VERSION}); got a '
                         f'{type(state).__name__} with format {found}. Weights files load with reidzoo.create_model('
                         f'..., checkpoint_path=...).')
    if map_location is not None and str(map_location) != 'cpu':
        state = _to(state, torch.device(map_location))
    return state


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value
