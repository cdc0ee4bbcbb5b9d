"""On-disk cache of tracklet embeddings, safe to reuse and safe to share.

The cache must never serve an embedding that a fresh run would not compute, so both halves of its key describe what
is actually used, not what a config says:

* **weights**: :func:`weights_id` hashes the tensors of the model's ``state_dict`` as loaded (a replaced
  ``model.safetensors`` in a ``local-dir:`` folder, or a fine-tuned model in memory, gets a new id), together with the
  model's structure and every setting that changes an embedding (:func:`cache_namespace`: preprocessing, clip length,
  test sampling, dtype, autocast);
* **tracklets**: :func:`tracklet_key` hashes each frame's path, size and modification time in nanoseconds (what
  ``make`` and ninja use), so frames re-exported under the same names are embedded again.

One namespace (model + settings) is one safetensors file ``<namespace>.safetensors`` holding ``features (N, D)``
and the row keys in its metadata. Several processes may share a cache folder: every write holds a file lock
(``filelock``), re-reads the file and merges its rows with the new ones before an atomic replace, so no writer's rows
are lost. Leftover temp files of a killed writer are removed under the lock; an unreadable (e.g. truncated) cache
file is named in a warning, discarded and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import save_file

from .._atomic import atomic_write
from ..hub import sha256_file

__all__ = ['FeatureCache', 'weights_id', 'tracklet_key', 'cache_namespace']

_LOCK_TIMEOUT = 600.0  # seconds; a writer holds the lock only while it rewrites one file
# pretrained_cfg keys that change what a tracklet's embedding is (preprocessing and test-time sampling)
_EMBEDDING_CFG_KEYS = ('architecture', 'input_size', 'num_frames', 'mean', 'std', 'interpolation', 'crop_pct',
                       'crop_mode', 'test_sampling')


def weights_id(model: Any) -> str:
    """sha256 of the weights the model holds now: every ``state_dict`` entry's name, dtype, shape and bytes.

    The sha256 recorded in a config names the file that was meant to be loaded, not what is in memory (the file may
    have been replaced, the model fine-tuned or cast); hashing the tensors costs about 0.3 s per 100 MB. A model
    without a ``state_dict`` gives ``weights_sha256``, or the weights file as ``path`` (an ONNX Runtime wrapper),
    whose bytes are hashed.
    """
    if not hasattr(model, 'state_dict'):
        sha = getattr(model, 'weights_sha256', None)
        path = getattr(model, 'path', None)  # e.g. OnnxEmbedder: the graph file holds the weights
        if not sha and path is not None and os.path.isfile(path):
            sha = sha256_file(path)
        if not sha:
            raise TypeError(f'{type(model).__name__} has neither state_dict(), weights_sha256 nor a weights file '
                            '`path`: the feature cache cannot tell its weights apart; pass cache=None')
        return str(sha)
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(f'{name}|{value.dtype}|{tuple(value.shape)}\n'.encode())
        if value.numel():
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_namespace(model: Any, **extract_kwargs: Any) -> str:
    """Name of the cache file for ``model`` embedding with ``extract_kwargs`` (those of ``extract_features``).

    Hashes :func:`weights_id`, the module structure (``repr``), the preprocessing and sampling entries of the
    pretrained cfg, and the extraction overrides that change results (``test_sampling``, ``seq_len``, ``amp``).
    """
    cfg = getattr(model, 'pretrained_cfg', {}) or {}
    settings = {k: cfg.get(k) for k in _EMBEDDING_CFG_KEYS}
    settings.update({k: extract_kwargs.get(k) for k in ('test_sampling', 'seq_len', 'amp')})
    settings['structure'] = hashlib.sha256(repr(model).encode()).hexdigest()
    settings['dtype'] = str(getattr(model, 'dtype', None) or next(iter(_params(model)), torch.empty(0)).dtype)
    h = hashlib.sha256(weights_id(model).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    arch = ''.join(c if c.isalnum() or c in '_-' else '_' for c in str(cfg.get('architecture') or 'model'))
    return f'{arch}-{h.hexdigest()[:32]}'


def _params(model: Any) -> list:
    return list(model.parameters()) if hasattr(model, 'parameters') else []


def tracklet_key(frames: Sequence[Union[str, os.PathLike]]) -> str:
    """Identity of a tracklet's content: each frame's path, size and ``mtime_ns`` (any change makes a new key).

    Raises:
        FileNotFoundError: naming the first frame that does not exist.
    """
    h = hashlib.sha256()
    for frame in frames:
        try:
            st = os.stat(frame)
        except FileNotFoundError:
            raise FileNotFoundError(f'frame {os.fspath(frame)} does not exist (was the dataset moved?)') from None
        h.update(f'{os.fspath(frame)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()


class FeatureCache:
    """Embeddings of one model + settings, keyed by :func:`tracklet_key`, in one safetensors file.

    Rows live in memory once read; :meth:`add` with ``persist=True`` merges them into the file under a lock.

    Args:
        cache_dir: folder of the cache (created on the first write).
        namespace: file stem, usually :func:`cache_namespace`.
    """

    def __init__(self, cache_dir: Union[str, Path], namespace: str):
        self.path = Path(cache_dir) / f'{namespace}.safetensors'
        self._keys: dict[str, int] = {}
        self._feats: Optional[torch.Tensor] = None
        if self.path.exists():
            with self._lock():
                keys, feats = self._read()
            self._merge(keys, feats)

    def __len__(self) -> int:
        return len(self._keys)

    def _lock(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + '.lock', timeout=_LOCK_TIMEOUT)

    def _read(self) -> tuple[list[str], Optional[torch.Tensor]]:
        """The file's rows (call with the lock held); an unreadable file is reported, removed, and reads as empty."""
        for tmp in self.path.parent.glob(f'.{self.path.name}.*.tmp'):
            tmp.unlink(missing_ok=True)  # writers hold the lock while a temp file exists: this one's writer died
        if not self.path.exists():
            return [], None
        try:
            with safe_open(str(self.path), 'pt') as f:
                keys = json.loads(f.metadata()['keys'])
                feats = f.get_tensor('features')
            if feats.dim() != 2 or len(feats) != len(keys):
                raise ValueError(f'{len(keys)} keys for features of shape {tuple(feats.shape)}')
        except Exception as e:  # truncated, not safetensors, wrong metadata: all mean "rebuild"
            warnings.warn(f'feature cache file {self.path} is unreadable ({type(e).__name__}: {e}); discarding it, '
                          'the embeddings will be computed again')
            self.path.unlink(missing_ok=True)
            return [], None
        return keys, feats

    def _merge(self, keys: Sequence[str], feats: Optional[torch.Tensor]) -> None:
        new = [i for i, k in enumerate(keys) if k not in self._keys]
        if not new or feats is None:
            return
        rows = feats[torch.as_tensor(new, dtype=torch.long)].float()
        if self._feats is not None and rows.shape[1] != self._feats.shape[1]:
            raise ValueError(f'feature cache {self.path} holds {rows.shape[1]}-d rows, this model gives '
                             f'{self._feats.shape[1]}-d ones for the same key; delete the file')
        start = len(self._keys)
        self._feats = rows if self._feats is None else torch.cat([self._feats, rows])
        self._keys.update({keys[i]: start + j for j, i in enumerate(new)})

    def missing(self, keys: Sequence[str]) -> list[int]:
        """Positions in ``keys`` that have no cached row."""
        return [i for i, k in enumerate(keys) if k not in self._keys]

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        """``(len(keys), D)`` cached rows; every key must be present (see :meth:`missing`)."""
        if not len(keys):
            return torch.zeros(0, 0 if self._feats is None else self._feats.shape[1])
        return self._feats[torch.as_tensor([self._keys[k] for k in keys], dtype=torch.long)]

    def add(self, keys: Sequence[str], feats: torch.Tensor, persist: bool = True) -> None:
        """Add rows; with ``persist`` merge them into the file (rows other processes wrote meanwhile are kept).

        ``persist=False`` keeps them in memory only (ranks other than 0 under ``torchrun``).
        """
        if len(keys) != len(feats):
            raise ValueError(f'{len(keys)} keys for {len(feats)} feature rows')
        if not len(keys):
            return
        self._merge(list(keys), feats.detach().cpu())
        if not persist:
            return
        with self._lock():
            disk_keys, disk_feats = self._read()
            self._merge(disk_keys, disk_feats)
            keys_now = list(self._keys)  # insertion order = row order
            atomic_write(self.path, lambda tmp: save_file({'features': self._feats.contiguous()}, str(tmp),
                                                          metadata={'keys': json.dumps(keys_now)}))
