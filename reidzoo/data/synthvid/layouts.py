"""SynthVID's layout writers: :func:`generate` writes the rendered tracklets in the exact on-disk layout of a real
benchmark, and :func:`read_record` reads back what a generated folder holds.

Layouts: MARS (``bbox_{train,test}`` folders, CRLF name lists, MATLAB v5 ``.mat`` tables, ``00-1`` junk and ``0000``
distractor folders, uint16 query indices), DukeMTMC-VideoReID (``D`` distractor frames, gallery copies of the
queries), LS-VID (list files and the HDF5 / MATLAB v7.3 ``info_test.mat``), iLIDS-VID (``ls_set`` split matrix) and
PRID-2011 (``splits_prid2011.json``). The regular parser of each dataset reads the result, so every part of the
pipeline can be exercised without the real data. The folder's record, ``synthvid.json``, is written last: its
presence means the folder is complete, and it holds the generation parameters, so a folder can be parsed again
without repeating them (``build_dataset('synthvid', root)``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from ..._atomic import fsync_dir
from ..dataset import DatasetFormatError, DatasetNotFoundError
from .render import Camera, Identity, render_tracklet

__all__ = ['GENERATOR_VERSION', 'MARKER', 'LAYOUTS', 'SynthVIDRecord', 'atomic_folder', 'generate', 'read_record']

GENERATOR_VERSION = 1
MARKER = 'synthvid.json'  # written last: its presence means the folder is complete

# --------------------------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _Track:
    ident: Optional[int]  # global identity index (None: background only)
    cam: int  # 1-based camera number
    num_frames: int
    kind: str = 'person'


class _Builder:
    """Shared state of one generation: seeds, frame size, camera backgrounds, tracklet counter and statistics."""

    def __init__(self, root: str, seed: int, size: tuple[int, int], lengths: tuple[int, int, float]):
        self.root, self.seed, self.size = root, seed, size
        self.min_len, self.max_len, self.mean_len = lengths
        self.plan_rng = np.random.default_rng([seed, 4])
        self._cameras: dict[int, tuple[Camera, np.ndarray]] = {}
        self._idents: dict[int, Identity] = {}
        self.serial = 0
        self.num_frames_written = 0

    def length(self, short_prob: float = 0.) -> int:
        """A tracklet length: log-normal around the mean, some very short ones (padding cases) if asked."""
        if short_prob and self.plan_rng.random() < short_prob:
            return int(self.plan_rng.integers(self.min_len, max(self.min_len, 3) + 1))
        n = self.plan_rng.lognormal(np.log(self.mean_len), 0.5)
        return int(np.clip(round(n), self.min_len, self.max_len))

    def render(self, track: _Track) -> np.ndarray:
        if track.cam not in self._cameras:
            cam = Camera.sample(self.seed, track.cam)
            self._cameras[track.cam] = (cam, cam.background(self.size))
        cam, bg = self._cameras[track.cam]
        ident = None
        if track.ident is not None:
            if track.ident not in self._idents:
                self._idents[track.ident] = Identity.sample(self.seed, track.ident)
            ident = self._idents[track.ident]
        rng = np.random.default_rng([self.seed, 1, self.serial])
        self.serial += 1
        return render_tracklet(ident, cam, track.num_frames, rng, self.size, bg, track.kind)

    def write(self, frames: np.ndarray, paths: Sequence[str]) -> None:
        for frame, path in zip(frames, paths):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            image = Image.fromarray(frame)
            if path.endswith('.png'):
                image.save(path, compress_level=1)
            else:
                image.save(path, quality=90)
        self.num_frames_written += len(paths)


def _cams_for(rng: np.random.Generator, num_cams: int, low: int, high: int) -> list[int]:
    k = int(rng.integers(low, min(high, num_cams) + 1))
    return sorted((rng.choice(num_cams, k, replace=False) + 1).tolist())


def _tracks_of_identity(b: _Builder, ident: int, cams: list[int], max_per_cam: int, short_prob: float) -> list[_Track]:
    tracks = []
    for cam in cams:
        for _ in range(int(b.plan_rng.integers(1, max_per_cam + 1))):
            tracks.append(_Track(ident, cam, b.length(short_prob)))
    return tracks


def _write_mars(b: _Builder, num_ids: int) -> dict[str, Any]:
    """MARS: bbox_{train,test}/<PPPP>/<PPPP>C<c>T<tttt>F<fff>.jpg, info/ name lists (CRLF) and .mat tables."""
    rng = b.plan_rng
    num_train = num_ids // 2
    # train pids odd, test pids even, as in MARS; test adds pid 0 distractors and pid -1 junk
    groups: dict[str, list[tuple[int, list[_Track]]]] = {'train': [], 'test': []}
    for k in range(num_ids):
        is_train = k < num_train
        pid = 2 * k + 1 if is_train else 2 * (k - num_train) + 2
        single = not is_train and rng.random() < 0.06  # a few test ids seen by one camera (no positive)
        cams = _cams_for(rng, 6, 1, 1) if single else _cams_for(rng, 6, 2, 4)
        groups['train' if is_train else 'test'].append((pid, _tracks_of_identity(b, k, cams, 3, 0.08)))
    num_test = num_ids - num_train
    distractors = [_Track(num_ids + i, int(rng.integers(1, 7)), b.length(0.2), 'partial')
                   for i in range(max(2, num_test // 2))]
    junk = [_Track(None, int(rng.integers(1, 7)), b.length(0.3), 'junk') for _ in range(max(2, num_test // 6))]
    groups['test'] += [(0, sorted(distractors, key=lambda t: t.cam)), (-1, sorted(junk, key=lambda t: t.cam))]

    info = os.path.join(b.root, 'info')
    os.makedirs(info)
    rows_of: dict[str, np.ndarray] = {}
    query_rows = []
    for split, entries in groups.items():
        names, rows = [], []
        # folders in sorted name order: '00-1' < '0000' < '0002' < ...; T numbered per pid in camera order
        for pid, tracks in sorted(entries, key=lambda e: '00-1' if e[0] == -1 else f'{e[0]:04d}'):
            folder = '00-1' if pid == -1 else f'{pid:04d}'
            tracks = sorted(tracks, key=lambda t: t.cam)
            by_cam: dict[int, list[int]] = {}
            for tnum, track in enumerate(tracks, start=1):
                frame_names = [f'{folder}C{track.cam}T{tnum:04d}F{f:03d}.jpg' for f in range(1, track.num_frames + 1)]
                b.write(b.render(track), [os.path.join(b.root, f'bbox_{split}', folder, nm) for nm in frame_names])
                rows.append([len(names) + 1, len(names) + len(frame_names), pid, track.cam])
                names += frame_names
                by_cam.setdefault(track.cam, []).append(len(rows))  # 1-based row
            if split == 'test' and pid > 0 and len(by_cam) >= 2:
                query_rows += [int(rng.choice(r)) for _, r in sorted(by_cam.items())]
        with open(os.path.join(info, f'{split}_name.txt'), 'w', newline='') as f:
            f.write(''.join(f'{nm}\r\n' for nm in names))  # MATLAB's '%s\r\n'
        rows_of[split] = np.asarray(rows, dtype=np.int32)
        _savemat(os.path.join(info, f'tracks_{split}_info.mat'), {f'track_{split}_info': rows_of[split]})
    query = np.asarray(sorted(query_rows), dtype=np.uint16)[None]
    _savemat(os.path.join(info, 'query_IDX.mat'), {'query_IDX': query})
    return {'train_tracklets': len(rows_of['train']), 'test_tracklets': len(rows_of['test']),
            'query_tracklets': int(query.size), 'distractor_tracklets': len(distractors), 'junk_tracklets': len(junk)}


def _write_dukev(b: _Builder, num_ids: int) -> dict[str, Any]:
    """Duke-V: DukeMTMC-VideoReID/{train,query,gallery}/<PPPP>/<TTTT>/<PPPP>_C<c>_F<ffff>_X<n>.jpg."""
    rng = b.plan_rng
    num_train = num_ids // 2
    num_distractors = max(1, (num_ids - num_train) // 2)
    pids = sorted((rng.choice(9999, num_ids + num_distractors, replace=False) + 1).tolist())
    order = rng.permutation(len(pids))  # which pid numbers are train, test and distractor ids
    base = os.path.join(b.root, 'DukeMTMC-VideoReID')
    counts = {'train': 0, 'query': 0, 'gallery': 0}

    def put(split: str, pid: int, tnum: int, track: _Track, frames: np.ndarray, marker: str, start: int) -> None:
        folder = os.path.join(base, split, f'{pid:04d}', f'{tnum:04d}')
        # F is the 1-based frame index in the tracklet; X/D the frame number in the camera video (every 12th frame)
        b.write(frames, [os.path.join(folder, f'{pid:04d}_C{track.cam}_F{f + 1:04d}_{marker}{start + 12 * f}.jpg')
                         for f in range(track.num_frames)])
        counts[split] += 1

    for rank, k in enumerate(order):
        pid = pids[k]
        if rank < num_ids:
            tracks = _tracks_of_identity(b, rank, _cams_for(rng, 8, 2, 4), 2, 0.05)
            tracks = [tracks[i] for i in rng.permutation(len(tracks))]
            split = 'train' if rank < num_train else 'test'
            query = int(rng.integers(len(tracks)))
            for tnum, track in enumerate(tracks, start=1):
                frames, start = b.render(track), int(rng.integers(10000, 200000))
                if split == 'train':
                    put('train', pid, tnum, track, frames, 'X', start)
                    continue
                put('gallery', pid, tnum, track, frames, 'X', start)  # the gallery holds every test tracklet
                if tnum - 1 == query:
                    put('query', pid, tnum, track, frames, 'X', start)
        else:  # a gallery-only distractor identity, frames marked D
            for tnum, track in enumerate(_tracks_of_identity(b, rank, _cams_for(rng, 8, 1, 2), 1, 0.), start=1):
                put('gallery', pid, tnum, track, b.render(track), 'D', int(rng.integers(10000, 200000)))
    counts['distractor_ids'] = num_distractors
    return counts


def _write_lsvid(b: _Builder, num_ids: int) -> dict[str, Any]:
    """LS-VID: list_sequence/list_seq_{train,test}.txt, tracklet_{train,test}/..., test/data/info_test.mat (HDF5)."""
    rng = b.plan_rng
    num_train = num_ids // 2
    lists = os.path.join(b.root, 'list_sequence')
    os.makedirs(lists)
    counts: dict[str, Any] = {}
    info_rows, query_rows = [], []
    for split, ids in (('train', range(num_train)), ('test', range(num_train, num_ids))):
        lines, frame_total = [], 0
        for label, k in enumerate(ids):  # pids are 0-based labels within each split
            single = split == 'test' and rng.random() < 0.04
            cams = _cams_for(rng, 15, 1, 1) if single else _cams_for(rng, 15, 2, 4)
            tracks = _tracks_of_identity(b, k, cams, 2, 0.)
            tracks = [tracks[i] for i in rng.permutation(len(tracks))]  # within a pid, cameras are not sorted
            if split == 'test':
                query_cams = rng.permutation(cams)[:1 + int(len(cams) > 1 and rng.random() < 0.3)]
            for serial, track in enumerate(tracks, start=1):
                prefix = f'tracklet_{split}/{label:04d}_1/{label:04d}_{serial:04d}_{track.cam:02d}'
                b.write(b.render(track), [os.path.join(b.root, f'{prefix}_{f:04d}.jpg')
                                          for f in range(1, track.num_frames + 1)])
                lines.append(f'{prefix} {label}')
                if split == 'test':
                    info_rows.append([frame_total + 1, frame_total + track.num_frames, label, track.cam])
                    if track.cam in query_cams:
                        query_cams = query_cams[query_cams != track.cam]  # one query per (pid, camera)
                        query_rows.append(len(info_rows))
                frame_total += track.num_frames
        with open(os.path.join(lists, f'list_seq_{split}.txt'), 'w') as f:
            f.write(''.join(f'{line}\n' for line in lines))
        counts[f'{split}_tracklets'] = len(lines)
    query = np.asarray(query_rows, np.float64)[rng.permutation(len(query_rows))]  # the real query list is unsorted
    _write_mat73(os.path.join(b.root, 'test', 'data', 'info_test.mat'),
                 {'info_test': np.asarray(info_rows, np.float64).T, 'query': query[None]})
    counts['query_tracklets'] = len(query_rows)
    return counts


def _savemat(path: str, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v5 file (scipy), with a fixed header text: scipy stamps the creation time, which breaks determinism."""
    import scipy.io
    scipy.io.savemat(path, arrays)
    text = b'MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970'
    with open(path, 'r+b') as f:
        f.write(text.ljust(116, b' '))


def _write_mat73(path: str, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 with the 128-byte MATLAB header in a 512-byte user block (h5py shapes as given)."""
    import h5py
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, 'w', userblock_size=512) as f:
        for name, arr in arrays.items():
            f.create_dataset(name, data=arr).attrs['MATLAB_class'] = np.bytes_(b'double')
    text = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 HDF5 schema 1.00 .'
    header = text.ljust(116, b' ') + b'\x00' * 8 + b'\x00\x02' + b'IM'
    with open(path, 'r+b') as f:
        f.write(header)


def _write_ilidsvid(b: _Builder, num_ids: int) -> dict[str, Any]:
    """iLIDS-VID: i-LIDS-VID/sequences/cam{1,2}/personNNN/..., 'train-test people splits/...mat' ls_set (10, 300)."""
    if num_ids != 300:
        raise ValueError(f'The iLIDS-VID layout has exactly 300 persons (ls_set is (10, 300)); got num_ids={num_ids}. '
                         'Use small frames and short tracklets to keep it fast.')
    rng = b.plan_rng
    persons = sorted((rng.choice(319, 300, replace=False) + 1).tolist())  # ids up to 319 with gaps
    base = os.path.join(b.root, 'i-LIDS-VID')
    for k, person in enumerate(persons):
        for cam in (1, 2):
            track = _Track(k, cam, b.length())
            frames = b.render(track)
            start = int(rng.integers(1, 90000))  # the original video frame number, not starting at 1
            name = f'cam{cam}_person{person:03d}'
            b.write(frames, [os.path.join(base, 'sequences', f'cam{cam}', f'person{person:03d}',
                                          f'{name}_{start + f:05d}.png') for f in range(track.num_frames)])
            b.write(frames[:1], [os.path.join(base, 'images', f'cam{cam}', f'person{person:03d}', f'{name}.png')])
    ls_set = np.stack([rng.permutation(300) + 1 for _ in range(10)]).astype(np.float64)
    split_dir = os.path.join(b.root, 'train-test people splits')
    os.makedirs(split_dir)
    _savemat(os.path.join(split_dir, 'train_test_splits_ilidsvid.mat'), {'ls_set': ls_set})
    return {'persons': 300, 'tracklets': 600}


def _write_prid2011(b: _Builder, num_ids: int) -> dict[str, Any]:
    """PRID-2011: prid_2011/multi_shot/cam_{a,b}/person_NNNN/NNNN.png and splits_prid2011.json (10 splits)."""
    rng = b.plan_rng
    # persons 1..num_ids appear in both cameras; higher numbers are different people in each camera
    extra = {'a': max(1, num_ids // 5), 'b': max(2, num_ids // 2)}
    # about 11% of the shared persons are left out of the splits (as 22 of 200 are), with an even remainder
    num_excluded = max(1, round(num_ids * 0.11))
    num_excluded += (num_ids - num_excluded) % 2
    excluded = set((rng.choice(num_ids, num_excluded, replace=False) + 1).tolist())
    base = os.path.join(b.root, 'prid_2011')
    next_ident = num_ids
    for cam in ('a', 'b'):
        for person in range(1, num_ids + extra[cam] + 1):
            if person <= num_ids:
                ident = person - 1
            else:
                ident, next_ident = next_ident, next_ident + 1
            track = _Track(ident, 1 if cam == 'a' else 2, b.length())
            frames = b.render(track)
            folder = f'cam_{cam}/person_{person:04d}'
            b.write(frames, [os.path.join(base, 'multi_shot', folder, f'{f:04d}.png')
                             for f in range(1, track.num_frames + 1)])
            b.write(frames[:1], [os.path.join(base, 'single_shot', f'{folder}.png')])
    used = [p for p in range(1, num_ids + 1) if p not in excluded]
    splits = []
    for _ in range(10):
        perm = rng.permutation(used).tolist()
        half = len(used) // 2
        splits.append({'test': [f'person_{p:04d}' for p in sorted(perm[:half])],
                       'train': [f'person_{p:04d}' for p in sorted(perm[half:])]})
    with open(os.path.join(b.root, 'splits_prid2011.json'), 'w') as f:
        json.dump(splits, f, indent=4)
    return {'shared_persons': num_ids, 'split_persons': len(used), 'cam_a_persons': num_ids + extra['a'],
            'cam_b_persons': num_ids + extra['b']}


# name -> (writer, default num_ids, default (min, max, mean) tracklet length)
LAYOUTS: dict[str, tuple[Any, int, tuple[int, int, float]]] = {
    'mars': (_write_mars, 100, (2, 120, 16.)),
    'dukev': (_write_dukev, 100, (2, 120, 16.)),
    'lsvid': (_write_lsvid, 100, (4, 120, 16.)),
    'ilidsvid': (_write_ilidsvid, 300, (4, 48, 12.)),
    'prid2011': (_write_prid2011, 100, (4, 60, 14.)),
}


def _params(layout: str, num_ids: Optional[int], seed: int, frame_size: Sequence[int],
            lengths: Optional[Sequence[float]]) -> dict[str, Any]:
    if layout not in LAYOUTS:
        raise ValueError(f'Unknown SynthVID layout {layout!r}; expected one of {sorted(LAYOUTS)}.')
    _, default_ids, default_lengths = LAYOUTS[layout]
    num_ids = default_ids if num_ids is None else int(num_ids)
    lengths = tuple(default_lengths if lengths is None else lengths)
    if len(lengths) != 3 or not 1 <= lengths[0] <= lengths[2] <= lengths[1]:
        raise ValueError(f'lengths must be (min, max, mean) with 1 <= min <= mean <= max, got {lengths}.')
    if num_ids < 4:
        raise ValueError(f'num_ids must be >= 4 (half train, half test), got {num_ids}.')
    if len(frame_size) != 2 or min(frame_size) < 8:
        raise ValueError(f'frame_size must be (H, W) with both >= 8, got {tuple(frame_size)}.')
    return {'layout': layout, 'num_ids': num_ids, 'seed': int(seed), 'frame_size': [int(s) for s in frame_size],
            'lengths': [int(lengths[0]), int(lengths[1]), float(lengths[2])], 'version': GENERATOR_VERSION}


def _params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def generate(
        root: str | os.PathLike,
        layout: str = 'mars',
        num_ids: Optional[int] = None,
        seed: int = 0,
        frame_size: Sequence[int] = (64, 32),
        lengths: Optional[Sequence[float]] = None,
) -> str:
    """Write a SynthVID dataset in the on-disk layout of ``layout``, atomically.

    The data is generated in a temporary sibling folder that is renamed to ``root`` only when complete, so an
    interrupted generation never leaves a half-written ``root``.

    Args:
        root: Output folder; must not exist or be empty. The layout's own top folders go inside it
            (``build_dataset(layout, root)`` parses it).
        layout: ``'mars'``, ``'dukev'``, ``'lsvid'``, ``'ilidsvid'`` or ``'prid2011'``.
        num_ids: Labelled identities, half train and half test (iLIDS-VID: exactly 300; PRID: persons seen by both
            cameras). Default: 100 (iLIDS-VID 300).
        seed: Everything (appearance, cameras, motion, splits) is a function of the seed and the parameters.
        frame_size: Frame ``(H, W)``.
        lengths: Tracklet length ``(min, max, mean)`` in frames; default per layout.

    Returns:
        ``root`` as an absolute path.
    """
    params = _params(layout, num_ids, seed, frame_size, lengths)
    with atomic_folder(root) as tmp:
        started = time.perf_counter()
        builder = _Builder(tmp, params['seed'], tuple(params['frame_size']), tuple(params['lengths']))
        counts = LAYOUTS[layout][0](builder, params['num_ids'])
        counts['frames'] = builder.num_frames_written
        meta = {'generator': 'reidzoo.data.synthvid', 'params': params, 'counts': counts,
                'seconds': round(time.perf_counter() - started, 2)}
        with open(os.path.join(tmp, MARKER), 'w') as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
    return os.path.abspath(os.fspath(root))


@contextmanager
def atomic_folder(root: str | os.PathLike) -> Iterator[str]:
    """Write a generated folder atomically: yields a temporary sibling folder, renamed to ``root`` on success.

    ``root`` must not exist or be an empty folder (a clear :class:`FileExistsError` otherwise, naming what it holds
    when it is a SynthVID folder). An exception (or Ctrl-C) inside the block removes the temporary folder, so a
    generation that did not finish never leaves a half-written ``root``; a killed process leaves only a
    ``.<name>.tmp-<pid>-*`` sibling, which :func:`_remove_stale_tmp` deletes later. The temporary folder's name
    carries the pid for that purpose. The caller writes its record file last, inside the block.
    """
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        held = ''
        if os.path.isfile(os.path.join(root, MARKER)):
            try:
                held = f' (it holds {read_record(root).describe()}: use it as it is, e.g. `reidzoo benchmark ' \
                       f'--dataset synthvid --root {root}`)'
            except DatasetFormatError:
                pass
        raise FileExistsError(f'{root} already exists and is not an empty folder{held}; choose a new --out folder.')
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(root)}.tmp-{os.getpid()}-', dir=parent)
    try:
        yield tmp
        if os.path.isdir(root):
            os.rmdir(root)  # empty (checked above)
        os.rename(tmp, root)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_tmp(root: str) -> None:
    """Delete temporary folders of ``root`` left by generations whose process was killed (the pid is in the name)."""
    parent, prefix = os.path.dirname(root), f'.{os.path.basename(root)}.tmp-'
    if not os.path.isdir(parent):
        return
    for entry in os.scandir(parent):
        if not (entry.is_dir() and entry.name.startswith(prefix)):
            continue
        try:
            os.kill(int(entry.name[len(prefix):].split('-')[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except (ValueError, OverflowError, PermissionError):
            pass


@dataclass(frozen=True)
class SynthVIDRecord:
    """What a generated SynthVID folder holds, read from its ``synthvid.json``.

    Attributes:
        root: the folder (absolute).
        layout: the real dataset whose on-disk layout it imitates (``'mars'``, ``'dukev'``, ...).
        num_ids, seed, frame_size, lengths: the generation parameters (see :func:`generate`).
        version: generator version that wrote it.
        counts: tracklet / frame counts written, per subset.
        seconds: generation time.
    """
    root: str
    layout: str
    num_ids: int
    seed: int
    frame_size: tuple[int, int]
    lengths: tuple[int, int, float]
    version: int
    counts: dict[str, Any]
    seconds: float

    def params(self) -> dict[str, Any]:
        """The keyword arguments of :func:`generate` that reproduce this folder (plus ``layout``)."""
        return {'layout': self.layout, 'num_ids': self.num_ids, 'seed': self.seed,
                'frame_size': list(self.frame_size), 'lengths': list(self.lengths)}

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``SynthVID mars layout, 48 ids, seed 0, 64x32 frames``."""
        h, w = self.frame_size
        return f'SynthVID {self.layout} layout, {self.num_ids} ids, seed {self.seed}, {h}x{w} frames'


def read_record(root: str | os.PathLike) -> SynthVIDRecord:
    """The record of a folder written by :func:`generate` (or ``reidzoo synth``).

    Raises:
        DatasetNotFoundError: the folder has no ``synthvid.json`` (not SynthVID, or a generation that did not finish).
        DatasetFormatError: the record is unreadable or lacks a parameter.
    """
    root = os.path.abspath(os.fspath(root))
    path = os.path.join(root, MARKER)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f'{root} is not a SynthVID folder: it has no {MARKER} (written last by `reidzoo synth --out DIR`, so a '
            f'folder without it is not SynthVID or its generation did not finish). Generate one with `reidzoo synth '
            f'--out {root}` (the folder must be new or empty), or pass root=None to use the cache.')
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
        p = meta['params']
        return SynthVIDRecord(
            root=root, layout=str(p['layout']), num_ids=int(p['num_ids']), seed=int(p['seed']),
            frame_size=(int(p['frame_size'][0]), int(p['frame_size'][1])),
            lengths=(int(p['lengths'][0]), int(p['lengths'][1]), float(p['lengths'][2])),
            version=int(p.get('version', GENERATOR_VERSION)), counts=dict(meta.get('counts', {})),
            seconds=float(meta.get('seconds', 0.0)))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DatasetFormatError(f'{path} is not a valid SynthVID record ({type(e).__name__}: {e}); regenerate the '
                                 f'folder with `reidzoo synth`.') from e
