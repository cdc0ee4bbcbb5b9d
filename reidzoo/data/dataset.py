"""Video re-ID dataset base class, tracklet type, errors and the dataset registry.

Every parser (``reidzoo/data/datasets/*.py``) turns one on-disk release into three lists of :class:`Tracklet`:
``train`` (pids relabelled ``0..N-1`` in sorted order), ``query`` and ``gallery`` (raw pids; iLIDS-VID and PRID-2011
relabel within the test split), plus ``junk`` (MARS pid -1 test tracklets, which the official protocol needs).
Camera ids are 0-based and frames are sorted numerically. Each parser's module docstring describes its release's
layout and official counts; the structure follows torchreid's ``torchreid/data/datasets/video`` classes. Which
datasets exist and which protocol scores each is stated once, in :mod:`reidzoo.spec.datasets`.

Nothing is ever downloaded: several releases carry licence conditions (DukeMTMC was retracted by its authors,
LS-VID needs a signed agreement), so a missing dataset raises :class:`DatasetNotFoundError` saying where to get it.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any, Iterable, NamedTuple, Optional, Sequence, TypeVar

from ..spec.datasets import DATASETS, PROTOCOLS

__all__ = [
    'Tracklet', 'VideoReIDDataset', 'DatasetError', 'DatasetNotFoundError', 'DatasetFormatError',
    'build_dataset', 'list_datasets', 'register_dataset',
]



class Tracklet(NamedTuple):
    """One video track of one person seen by one camera."""
    frames: tuple[str, ...]  # frame paths, in temporal order
    pid: int
    camid: int  # 0-based


class DatasetError(Exception):
    """A dataset is missing or its files do not have the expected layout."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder or one of its files is missing."""


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file exists but its content is not what the layout specifies."""


_NUMBER = re.compile(r'(\d+)')


def natural_key(name: str) -> tuple:
    """Sort key that orders the digit runs of a name numerically (``f9.png`` before ``f10.png``)."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_NUMBER.split(name)))


def sorted_frames(paths: Iterable[str]) -> tuple[str, ...]:
    """Frame paths sorted numerically by basename (frame numbers need not be zero-padded or start at 1)."""
    return tuple(sorted(paths, key=lambda p: natural_key(os.path.basename(p))))


def list_frames(folder: str, extensions: Sequence[str]) -> tuple[str, ...]:
    """All frames of a one-tracklet folder, sorted numerically; raises if the folder is missing or has none."""
    if not os.path.isdir(folder):
        raise DatasetNotFoundError(f'Tracklet folder {folder} does not exist.')
    frames = [
        entry.path for entry in os.scandir(folder)
        if entry.name.lower().endswith(tuple(extensions)) and entry.is_file()]
    if not frames:
        raise DatasetFormatError(
            f'Tracklet folder {folder} holds no frames (expected files ending in {", ".join(extensions)}).')
    return sorted_frames(frames)


def relabel(tracklets: Iterable[Tracklet]) -> list[Tracklet]:
    """Map pids to ``0..N-1`` in sorted pid order (torchreid uses set order, which is not deterministic)."""
    tracklets = list(tracklets)
    label = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [t._replace(pid=label[t.pid]) for t in tracklets]


def load_mat(path: str) -> dict[str, Any]:
    """Variables of a MATLAB file, v5 (scipy) or v7.3/HDF5 (h5py, arrays transposed back to MATLAB's shape)."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f'Missing MATLAB file {path}.')
    import h5py
    if h5py.is_hdf5(path):
        import numpy as np
        try:
            with h5py.File(path, 'r') as f:
                # h5py sees MATLAB's column-major arrays transposed.
                return {k: np.asarray(v[()]).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
        except OSError as e:
            raise DatasetFormatError(f'Cannot read MATLAB v7.3 (HDF5) file {path}: {e}') from e
    import scipy.io
    try:
        return scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DatasetFormatError(f'Cannot read MATLAB file {path}: {e}') from e


def mat_array(mat: dict[str, Any], key: str, path: str, ncols: Optional[int] = None, vector: bool = False):
    """An integer-valued int64 array from a loaded .mat, with its shape checked.

    Args:
        mat: output of :func:`load_mat`.
        key: variable name.
        path: file path, for messages.
        ncols: required number of columns of a 2-D matrix.
        vector: expect a vector (1, N) or (N, 1); returned flattened.
    """
    import numpy as np
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise DatasetFormatError(f'{path} has no variable {key!r} (found {found}).')
    arr = np.asarray(mat[key])
    if vector:
        if arr.ndim > 2 or (arr.ndim == 2 and 1 not in arr.shape):
            raise DatasetFormatError(f'{path}: {key!r} should be a vector (1, N) or (N, 1), got shape {arr.shape}.')
        arr = arr.reshape(-1)
    elif arr.ndim != 2 or (ncols is not None and arr.shape[1] != ncols):
        expected = f'(N, {ncols})' if ncols is not None else '(N, M)'
        raise DatasetFormatError(f'{path}: {key!r} should be a matrix of shape {expected}, got shape {arr.shape}.')
    if arr.size and not (np.issubdtype(arr.dtype, np.number) and np.all(np.round(arr) == arr)):
        raise DatasetFormatError(f'{path}: {key!r} should hold integers, got dtype {arr.dtype}.')
    # uint16 indices (MARS query_IDX) wrap around on subtraction: always widen first.
    return arr.astype(np.int64)


def read_lines(path: str) -> list[str]:
    """Non-empty lines of a text file with any line ending (MATLAB writes CRLF), stripped of whitespace."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f'Missing list file {path}.')
    with open(path, encoding='utf-8') as f:
        lines = [line.strip() for line in f.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if '' in lines:
        raise DatasetFormatError(f'{path}: line {lines.index("") + 1} is empty; every line must name one entry.')
    return lines


class VideoReIDDataset:
    """Base class of the video re-ID datasets: locates the root, loads the subsets, checks and summarises them.

    Subclasses set the class attributes and implement :meth:`load`. Attributes after construction:
    ``name``, ``root`` (the located dataset folder), ``train``, ``query``, ``gallery``, ``junk`` (lists of
    :class:`Tracklet`), ``num_train_pids``, ``num_cams`` (largest camid + 1 over all subsets) and
    ``default_protocol`` (the evaluation protocol name the harness uses unless told otherwise).
    """
    name: str = ''
    default_protocol: str = ''
    # Folders under the user's root that may hold the dataset ('' is the root itself), tried in order; the first
    # one containing any of ``markers`` is used.
    root_variants: tuple[str, ...] = ('',)
    markers: tuple[str, ...] = ()
    # Where to get the data, quoted when it is missing.
    source: str = ''
    # Official per-subset (ids, tracklets, frames or None); used to warn when a full copy differs.
    official_counts: dict[str, tuple[int, int, Optional[int]]] = {}

    def __init__(self, root: str | os.PathLike, check_frames: bool = False):
        """
        Args:
            root: folder holding the dataset (see ``root_variants`` for the accepted nestings).
            check_frames: verify that every frame file exists (one ``os.path.exists`` per frame); otherwise the
                frame lists come from the metadata and are trusted.
        """
        self.root = self.locate(root)
        train, query, gallery, junk = self.load()
        self.train: list[Tracklet] = train
        self.query: list[Tracklet] = query
        self.gallery: list[Tracklet] = gallery
        self.junk: list[Tracklet] = junk
        self.num_train_pids = len({t.pid for t in train})
        self.num_cams = 1 + max((t.camid for t in self._all_tracklets()), default=-1)
        if check_frames:
            self.check_frames()
        self.check_official_counts()

    def load(self) -> tuple[list[Tracklet], list[Tracklet], list[Tracklet], list[Tracklet]]:
        """Parse the files under ``self.root``; returns ``(train, query, gallery, junk)``."""
        raise NotImplementedError

    @classmethod
    def locate(cls, root: str | os.PathLike) -> str:
        """The first of ``root_variants`` under ``root`` that holds one of ``markers``."""
        root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        candidates = [os.path.join(root, v) if v else root for v in cls.root_variants]
        for candidate in candidates:
            if any(os.path.exists(os.path.join(candidate, m)) for m in cls.markers):
                return candidate
        raise DatasetNotFoundError(
            f'{cls.name} not found: none of {candidates} contains any of {list(cls.markers)}. {cls.source} '
            f'reidzoo never downloads datasets.')

    def _all_tracklets(self) -> Iterable[Tracklet]:
        for subset in (self.train, self.query, self.gallery, self.junk):
            yield from subset

    def check_frames(self) -> None:
        """Raise :class:`DatasetNotFoundError` naming the missing frame files, if any."""
        missing = [p for t in self._all_tracklets() for p in t.frames if not os.path.exists(p)]
        if missing:
            raise DatasetNotFoundError(
                f'{self.name}: {len(missing)} frame files listed by the metadata are missing under {self.root}, '
                f'e.g. {missing[:3]}. Re-extract the image archives.')

    def counts(self) -> dict[str, tuple[int, int, int, int]]:
        """Per subset: (# ids, # tracklets, # cameras, # frames); ``junk`` only when non-empty."""
        subsets = {'train': self.train, 'query': self.query, 'gallery': self.gallery}
        if self.junk:
            subsets['junk'] = self.junk
        return {
            name: (len({t.pid for t in ts}), len(ts), len({t.camid for t in ts}), sum(len(t.frames) for t in ts))
            for name, ts in subsets.items()}

    def check_official_counts(self) -> None:
        """Warn when a copy that looks complete differs from the official counts (a partial or altered copy).

        A copy is considered complete when some subset has exactly the official number of tracklets or the copy
        has at least half the official total, so small fixtures and subsets never warn.
        """
        if not self.official_counts:
            return
        counts = self.counts()
        official_total = sum(c[1] for c in self.official_counts.values())
        total = sum(counts.get(s, (0, 0))[1] for s in self.official_counts)
        exact = any(counts.get(s, (0, 0))[1] == c[1] for s, c in self.official_counts.items())
        if not exact and total < official_total / 2:
            return
        diffs = []
        for subset, (ids, tracklets, frames) in self.official_counts.items():
            got_ids, got_tracklets, _, got_frames = counts.get(subset, (0, 0, 0, 0))
            for what, want, got in (('ids', ids, got_ids), ('tracklets', tracklets, got_tracklets),
                                    ('frames', frames, got_frames)):
                if want is not None and want != got:
                    diffs.append(f'{subset} {what}: {got} (official {want})')
        if diffs:
            warnings.warn(
                f'{self.name} at {self.root} differs from the official release: {"; ".join(diffs)}. '
                f'Results on this copy are not comparable with published numbers.', stacklevel=3)

    def summary(self) -> str:
        """A torchreid-style table of ids / tracklets / cameras / frames per subset."""
        rows = self.counts()
        lengths = [len(t.frames) for t in self._all_tracklets()]
        line = '  ' + '-' * 58
        out = [
            f'=> Loaded {self.name} from {self.root} (default protocol: {self.default_protocol})', line,
            f'  {"subset":<8} | {"# ids":>6} | {"# tracklets":>11} | {"# cameras":>9} | {"# frames":>9}', line]
        out += [f'  {name:<8} | {i:>6} | {n:>11} | {c:>9} | {f:>9}' for name, (i, n, c, f) in rows.items()]
        out.append(line)
        if lengths:
            mean = sum(lengths) / len(lengths)
            out.append(f'  frames per tracklet: {min(lengths)} ~ {max(lengths)}, average {mean:.1f}')
            out.append(line)
        return '\n'.join(out)

    def show_summary(self) -> None:
        """Print :meth:`summary`."""
        print(self.summary())

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(root={self.root!r}, train={len(self.train)}, query={len(self.query)}, '
                f'gallery={len(self.gallery)}, junk={len(self.junk)}, num_train_pids={self.num_train_pids}, '
                f'num_cams={self.num_cams})')


_DATASETS: dict[str, type[VideoReIDDataset]] = {}
_T = TypeVar('_T', bound=type)


def register_dataset(cls: _T) -> _T:
    """Class decorator adding a :class:`VideoReIDDataset` subclass to the registry under ``cls.name``.

    A dataset the spec layer knows (:data:`reidzoo.spec.datasets.DATASETS`) must keep the spec's default protocol;
    a new one may use any protocol of :data:`reidzoo.spec.datasets.PROTOCOLS`.
    """
    if not cls.name or cls.name in _DATASETS:
        raise ValueError(f'Dataset name {cls.name!r} is empty or already registered.')
    if cls.default_protocol not in PROTOCOLS:
        raise ValueError(f'{cls.__name__}.default_protocol {cls.default_protocol!r} is not one of {list(PROTOCOLS)}.')
    spec = DATASETS.get(cls.name)
    if spec is not None and cls.default_protocol != spec.default_protocol:
        raise ValueError(f'{cls.__name__}.default_protocol is {cls.default_protocol!r} but reidzoo.spec.datasets '
                         f'says {cls.name!r} defaults to {spec.default_protocol!r}; change one of them.')
    _DATASETS[cls.name] = cls
    return cls


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset` (the package ``reidzoo.data`` registers its parsers on import)."""
    return sorted(_DATASETS)


def build_dataset(name: str, root: str | os.PathLike, **kwargs: Any) -> VideoReIDDataset:
    """Parse a dataset release.

    Args:
        name: one of :func:`list_datasets` (``'mars'``, ``'dukev'``, ``'lsvid'``, ``'ilidsvid'``, ``'prid2011'``,
            ``'synthvid'``).
        root: folder holding the dataset; for ``'synthvid'`` a generated folder (its parameters are read from it), a
            new folder to generate into, or ``None`` for the cache.
        **kwargs: parser options, e.g. ``check_frames=True``, ``split_id=3`` (iLIDS-VID, PRID-2011),
            ``split_file=...`` (iLIDS-VID, PRID-2011), ``layout='mars'``, ``seed=0`` (synthvid, when generating).

    Returns:
        The dataset, with ``train`` / ``query`` / ``gallery`` / ``junk`` lists of :class:`Tracklet`.
    """
    if name not in _DATASETS:
        raise ValueError(f'Unknown dataset {name!r}; available: {list_datasets()}.')
    return _DATASETS[name](root, **kwargs)
