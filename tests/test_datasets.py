"""Dataset parsers: real metadata files (MARS, LS-VID, PRID-2011) and tiny on-disk fixtures of every layout.

The real files are vendored in ``tests/data/datasets-metadata`` (provenance and sha256 in its ``PROVENANCE.md``;
``$REIDZOO_METADATA`` points elsewhere); the fixtures imitate each release's on-disk layout, with its pitfalls (CRLF
name lists, uint16 query indices, junk and distractor folders, unpadded frame numbers, ...).
"""
import contextlib
import io
import json
import os
import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

import reidzoo.data
from reidzoo.data import (
    DatasetError, DatasetFormatError, DatasetNotFoundError, Tracklet, VideoReIDDataset, build_dataset, list_datasets,
)
from reidzoo.data.datasets import Mars, load_prid2011_splits

# small public metadata files vendored with the tests (see tests/data/datasets-metadata/PROVENANCE.md)
VENDORED_METADATA = Path(__file__).resolve().parent / 'data' / 'datasets-metadata'
METADATA = Path(os.environ.get('REIDZOO_METADATA') or VENDORED_METADATA)
needs_metadata = pytest.mark.skipif(not METADATA.is_dir(), reason=f'real metadata files not found in {METADATA}')


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', (4, 8), (120, 30, 200)).save(buf, format=fmt)  # 8x4 (h x w)
    return buf.getvalue()


JPEG, PNG = _image_bytes('JPEG'), _image_bytes('PNG')


def _write(path: Path, data: bytes = JPEG) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.contextmanager
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        yield


# ---------------------------------------------------------------------------------------------------------------------
# Real metadata

def _mars_names(rows: np.ndarray) -> list[str]:
    """Frame basenames consistent with a real tracks_*_info matrix (T numbered per pid in row order, as in MARS)."""
    names, tracks = [], defaultdict(int)
    for start, end, pid, cam in rows.tolist():
        assert start == len(names) + 1  # the real rows are contiguous
        folder = '00-1' if pid == -1 else f'{pid:04d}'
        tracks[pid] += 1
        t = tracks[pid]
        names += [f'{folder}C{cam}T{t:04d}F{f:03d}.jpg' for f in range(1, end - start + 2)]
    return names


def test_vendored_metadata_checksums():
    """The vendored files are byte-identical to the published ones listed (with sha256) in PROVENANCE.md."""
    import hashlib
    import re
    listed = re.findall(r'^([0-9a-f]{64})  (\S+)$', (VENDORED_METADATA / 'PROVENANCE.md').read_text(), re.M)
    files = sorted(str(p.relative_to(VENDORED_METADATA)) for p in VENDORED_METADATA.rglob('*')
                   if p.is_file() and p.name != 'PROVENANCE.md')
    assert sorted(name for _, name in listed) == files  # every vendored file is listed, and only those
    for sha, name in listed:
        assert hashlib.sha256((VENDORED_METADATA / name).read_bytes()).hexdigest() == sha, name
    assert sum((VENDORED_METADATA / name).stat().st_size for _, name in listed) < 2_000_000  # keep the clone small


@pytest.fixture(scope='module')
def real_mars(tmp_path_factory):
    root = tmp_path_factory.mktemp('realmars')
    info = root / 'MARS' / 'info'
    info.mkdir(parents=True)
    for f in ('tracks_train_info.mat', 'tracks_test_info.mat', 'query_IDX.mat'):
        shutil.copy(METADATA / 'mars_info' / f, info / f)
    for split, key in (('train', 'track_train_info'), ('test', 'track_test_info')):
        rows = scipy.io.loadmat(info / f'tracks_{split}_info.mat')[key]
        with open(info / f'{split}_name.txt', 'w', newline='') as f:
            f.write(''.join(n + '\r\n' for n in _mars_names(rows)))  # MATLAB's '%s\r\n'
        (root / 'MARS' / f'bbox_{split}').mkdir()  # no images: check_frames=False trusts the metadata
    return root


@needs_metadata
def test_mars_real_metadata(real_mars):
    assert scipy.io.loadmat(real_mars / 'MARS/info/query_IDX.mat')['query_IDX'].dtype == np.uint16
    with _no_warnings():  # every official count must match
        ds = build_dataset('mars', real_mars, check_frames=False)
    assert ds.root == str(real_mars / 'MARS')
    assert (len(ds.train), len(ds.query), len(ds.gallery), len(ds.junk)) == (8298, 1980, 9330, 870)
    assert ds.num_train_pids == 625 and ds.num_cams == 6
    assert sorted({t.pid for t in ds.train}) == list(range(625))
    q_pids, g_pids = {t.pid for t in ds.query}, {t.pid for t in ds.gallery}
    assert len(q_pids) == 626 and len(g_pids) == 621 and 0 in g_pids and -1 not in g_pids and 0 not in q_pids
    assert len(q_pids - g_pids) == 14  # 14 query identities have no gallery tracklet in MARS
    assert {t.pid for t in ds.junk} == {-1}
    assert sum(len(t.frames) for t in ds.train) == 509914
    assert sum(len(t.frames) for t in ds.query) == 114493
    assert sum(len(t.frames) for t in ds.gallery) == 543216
    assert {t.camid for t in ds.query} == set(range(6))
    frame = ds.junk[0].frames[0]
    assert frame == os.path.join(str(real_mars), 'MARS', 'bbox_test', '00-1', '00-1C1T0001F001.jpg')
    assert not any('\r' in t.frames[-1] for t in ds.gallery)
    # query keeps query_IDX order (ascending in the real file) and is the exact rows it names
    rows = scipy.io.loadmat(real_mars / 'MARS/info/tracks_test_info.mat')['track_test_info']
    idx = scipy.io.loadmat(real_mars / 'MARS/info/query_IDX.mat')['query_IDX'].astype(np.int64).ravel() - 1
    assert [t.pid for t in ds.query] == rows[idx, 2].tolist()
    assert [t.camid for t in ds.query] == (rows[idx, 3] - 1).tolist()
    assert [len(t.frames) for t in ds.query] == (rows[idx, 1] - rows[idx, 0] + 1).tolist()
    assert 'gallery' in ds.summary() and '9330' in ds.summary() and '870' in ds.summary()


@needs_metadata
def test_lsvid_real_info_test(tmp_path):
    root = tmp_path / 'LS-VID'
    (root / 'test' / 'data').mkdir(parents=True)
    shutil.copy(METADATA / 'lsvid_test_data' / 'info_test.mat', root / 'test' / 'data' / 'info_test.mat')
    with h5py.File(root / 'test/data/info_test.mat', 'r') as f:  # v7.3 behind a MATLAB userblock
        info, q = f['info_test'][()].T.astype(int), f['query'][0].astype(int) - 1
    assert info.shape == (11333, 4)
    # One (empty) frame per tracklet: the list file only gives prefixes, so frames must exist on disk.
    lines = {'test': [(pid, cam) for _, _, pid, cam in info.tolist()],
             'train': [(1000 + i % 842, 1 + i % 15) for i in range(2831)]}
    for split, entries in lines.items():
        rows = []
        (root / f'tracklet_{split}' / 'all').mkdir(parents=True)
        for k, (pid, cam) in enumerate(entries):
            prefix = f'tracklet_{split}/all/{pid:04d}_{k:05d}_{cam:02d}'  # one folder: fewer file-system calls
            rows.append(f'{prefix} {pid}')
            open(root / f'{prefix}_0001.jpg', 'wb').close()
        (root / 'list_sequence').mkdir(exist_ok=True)
        (root / 'list_sequence' / f'list_seq_{split}.txt').write_text('\n'.join(rows) + '\n')

    with pytest.warns(UserWarning) as record:
        ds = build_dataset('lsvid', tmp_path)
    messages = ' '.join(str(w.message) for w in record)
    assert '11333 test tracklets' in messages  # 1 frame on disk instead of the .mat ranges
    assert 'query frames: 3504 (official 691980)' in messages  # the same, seen by the official-count check
    assert 'tracklets' not in messages.replace('test tracklets', '')  # ids and tracklet counts all match
    assert (len(ds.query), len(ds.gallery), len(ds.train), ds.num_cams) == (3504, 7829, 2831, 15)
    assert ds.num_train_pids == 842 and sorted({t.pid for t in ds.train}) == list(range(842))
    assert len({t.pid for t in ds.query}) == 2730
    # query kept in the file's unsorted order; gallery = the other rows in row order
    assert not np.all(np.diff(q) > 0)
    assert [t.pid for t in ds.query] == info[q, 2].tolist()
    assert [t.camid for t in ds.query] == (info[q, 3] - 1).tolist()
    gallery_rows = np.setdiff1d(np.arange(len(info)), q)
    assert [t.pid for t in ds.gallery] == info[gallery_rows, 2].tolist()
    assert [t.frames[0].split('_')[-3] for t in ds.gallery[:50]] == [f'{k:05d}' for k in gallery_rows[:50]]


@needs_metadata
def test_prid2011_real_splits(tmp_path):
    path = METADATA / 'prid2011' / 'splits_prid2011.json'
    splits = load_prid2011_splits(str(path))
    assert len(splits) == 10
    persons = set(splits[0]['train']) | set(splits[0]['test'])
    assert len(persons) == 178
    for split in splits:
        assert len(split['train']) == 89 and len(split['test']) == 89
        assert not set(split['train']) & set(split['test'])
        assert set(split['train']) | set(split['test']) == persons
    # The real JSON drives the parser: 178 persons x 2 cameras, one frame each.
    for cam in ('cam_a', 'cam_b'):
        for person in persons:
            _write(tmp_path / 'prid2011' / 'prid_2011' / 'multi_shot' / cam / person / '0001.png', PNG)
    with _no_warnings():
        ds = build_dataset('prid2011', tmp_path, split_id=9, split_file=str(path))
    assert (len(ds.train), len(ds.query), len(ds.gallery), ds.num_train_pids, ds.num_cams) == (178, 89, 89, 89, 2)
    test_names = sorted(splits[9]['test'])
    assert [os.path.basename(os.path.dirname(t.frames[0])) for t in ds.query] == test_names
    assert [t.pid for t in ds.query] == list(range(89)) == [t.pid for t in ds.gallery]


# ---------------------------------------------------------------------------------------------------------------------
# MARS fixtures

MARS_TRAIN = [('0003', 1, 2), ('0001', 1, 3), ('0001', 2, 2), ('0003', 4, 2)]  # (folder, camera, frames)
MARS_TEST = [('0002', 1, 2), ('0002', 1, 3), ('0002', 3, 2), ('0000', 2, 2), ('00-1', 1, 2), ('0004', 1, 2),
             ('0004', 6, 3), ('0000', 5, 1)]
MARS_QUERY = [('0002', 1), ('0002', 3), ('0004', 6)]  # (folder, camera): first tracklet of that group


def make_mars(base: Path, query_idx=None, with_images: bool = True) -> Path:
    """bbox_{train,test} folders, CRLF name files and the three .mat files of MARS."""
    info = base / 'info'
    info.mkdir(parents=True)
    row_of = {}
    for split, spec in (('train', MARS_TRAIN), ('test', MARS_TEST)):
        # T numbers are allocated per pid in camera order; names then sorted folder by folder, file by file.
        names = []
        for folder in sorted({f for f, _, _ in spec}):
            tracks = sorted((c, n) for f, c, n in spec if f == folder)
            for t, (cam, n) in enumerate(tracks, 1):
                names += [f'{folder}C{cam}T{t:04d}F{i:03d}.jpg' for i in range(1, n + 1)]
        names.sort(key=lambda n: (n[:4], n))
        assert names[0].startswith('00-1') or split == 'train'  # '-' sorts before '0'
        rows = []
        for i, name in enumerate(names):
            if i == 0 or name[:11] != names[i - 1][:11]:
                pid = -1 if name[:4] == '00-1' else int(name[:4])
                rows.append([i + 1, i + 1, pid, int(name[5])])
                row_of.setdefault((name[:4], int(name[5])), len(rows))
            rows[-1][1] = i + 1
            if with_images:
                _write(base / f'bbox_{split}' / name[:4] / name)
        (base / f'bbox_{split}').mkdir(exist_ok=True)
        with open(info / f'{split}_name.txt', 'w', newline='') as f:
            f.write(''.join(n + '\r\n' for n in names))
        scipy.io.savemat(info / f'tracks_{split}_info.mat', {f'track_{split}_info': np.array(rows, dtype=np.int32)})
    if query_idx is None:
        query_idx = [row_of[k] for k in MARS_QUERY]
    scipy.io.savemat(info / 'query_IDX.mat', {'query_IDX': np.array([query_idx], dtype=np.uint16)})
    return base


@pytest.mark.parametrize('variant', ['', 'mars', 'MARS'])
def test_mars_fixture(tmp_path, variant):
    make_mars(tmp_path / variant if variant else tmp_path)
    assert scipy.io.loadmat(tmp_path / variant / 'info' / 'query_IDX.mat')['query_IDX'].dtype == np.uint16
    assert b'\r\n' in (tmp_path / variant / 'info' / 'test_name.txt').read_bytes()
    ds = build_dataset('mars', tmp_path, check_frames=True)
    assert isinstance(ds, VideoReIDDataset) and ds.name == 'mars' and ds.default_protocol == 'mars_query_in_gallery'
    assert all(isinstance(t, Tracklet) for t in ds.train + ds.query + ds.gallery + ds.junk)
    # train: sorted relabelling 1 -> 0, 3 -> 1; rows in folder order
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 0, 3), (0, 1, 2), (1, 0, 2), (1, 3, 2)]
    assert ds.num_train_pids == 2 and ds.num_cams == 6
    # query: raw pids, query_IDX order, camids 0-based
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.query] == [(2, 0, 2), (2, 2, 2), (4, 5, 3)]
    # gallery: distractors (pid 0) kept, junk (00-1) moved to .junk, queries removed
    assert sorted((t.pid, t.camid, len(t.frames)) for t in ds.gallery) == [(0, 1, 2), (0, 4, 1), (2, 0, 3), (4, 0, 2)]
    assert [(t.pid, t.camid) for t in ds.junk] == [(-1, 0)]
    assert ds.junk[0].frames == tuple(
        os.path.join(ds.root, 'bbox_test', '00-1', f'00-1C1T0001F00{i}.jpg') for i in (1, 2))
    assert all(os.path.isfile(p) for t in ds.gallery for p in t.frames)
    assert ds.query[2].frames[-1].endswith(os.path.join('0004', '0004C6T0002F003.jpg'))


def test_mars_bad_inputs(tmp_path):
    base = make_mars(tmp_path / 'a', with_images=False)
    with pytest.raises(DatasetNotFoundError, match='bbox_train'):
        build_dataset('mars', base, check_frames=True)  # the metadata names frames that are not there
    ds = build_dataset('mars', base)  # trusted without check_frames
    assert len(ds.query) == 3

    # 0-based indices written as uint16 (0 -> -1 after the shift): a clear range error, not an IndexError / wrap
    base = make_mars(tmp_path / 'b', query_idx=[0, 1], with_images=False)
    with pytest.raises(DatasetFormatError, match=r'query_IDX.*1-based'):
        build_dataset('mars', base)

    base = make_mars(tmp_path / 'c', with_images=False)
    os.remove(base / 'info' / 'query_IDX.mat')
    with pytest.raises(DatasetNotFoundError, match='query_IDX.mat') as err:
        build_dataset('mars', base)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DatasetError)

    base = make_mars(tmp_path / 'd', with_images=False)
    scipy.io.savemat(base / 'info' / 'tracks_train_info.mat', {'track_train_info': np.ones((4, 3), np.int32)})
    with pytest.raises(DatasetFormatError, match=r'tracks_train_info\.mat.*shape \(N, 4\).*\(4, 3\)') as err:
        build_dataset('mars', base)
    assert isinstance(err.value, ValueError)

    base = make_mars(tmp_path / 'e', with_images=False)
    scipy.io.savemat(base / 'info' / 'tracks_test_info.mat', {'wrong_name': np.ones((4, 4), np.int32)})
    with pytest.raises(DatasetFormatError, match="no variable 'track_test_info'"):
        build_dataset('mars', base)

    # a name file that does not match the ranges (e.g. LF-stripped lines lost, or another ordering)
    base = make_mars(tmp_path / 'f', with_images=False)
    lines = (base / 'info' / 'train_name.txt').read_text().splitlines()
    (base / 'info' / 'train_name.txt').write_text('\n'.join(sorted(lines, reverse=True)))
    with pytest.raises(DatasetFormatError, match='train_name.txt line 1'):
        build_dataset('mars', base)

    with pytest.raises(DatasetNotFoundError, match='MARS-evaluation') as err:
        build_dataset('mars', tmp_path / 'nothing')
    assert 'never downloads' in str(err.value)


def test_mars_official_count_warning(tmp_path, monkeypatch):
    make_mars(tmp_path)
    with _no_warnings():
        build_dataset('mars', tmp_path)  # a tiny fixture is not compared with the real release
    # A copy with the official number of train tracklets but a different number of ids looks like a damaged release.
    monkeypatch.setattr(Mars, 'official_counts', {'train': (3, 4, None), 'query': (2, 3, None)})
    with pytest.warns(UserWarning, match=r'train ids: 2 \(official 3\)'):
        build_dataset('mars', tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID fixtures

def make_duke(base: Path) -> Path:
    d = base / 'DukeMTMC-VideoReID'
    # new format, camera 1
    for f in (1, 2, 3):
        _write(d / 'train/0005/0001' / f'0005_C1_F{f:04d}_X{100 + 12 * f:05d}.jpg')
    # old format (camera at char 5), camera 2
    for f in (1, 2):
        _write(d / 'train/0005/0002' / f'0005C2F{f:04d}X{500 + 12 * f:05d}.jpg')
    # starts at F0002 (torchreid's F%04d lookup would drop F0004); written in reverse order
    for f in (4, 3, 2):
        _write(d / 'train/0001/0007' / f'0001_C8_F{f:04d}_X{900 + 12 * f:05d}.jpg')
    for split in ('query', 'gallery'):
        for f in (1, 2):
            _write(d / split / '0002/0010' / f'0002_C3_F{f:04d}_X{20 + f:05d}.jpg')
    for f in (1, 2, 3):
        _write(d / 'gallery/0002/0011' / f'0002_C4_F{f:04d}_X{40 + f:05d}.jpg')
    # a distractor identity with D frames, only in the gallery
    for f in (1, 2):
        _write(d / 'gallery/0999/0012' / f'0999_C5_F{f:04d}_D{70 + f:05d}.jpg')
    return base


@pytest.mark.parametrize('variant', ['', 'dukemtmc-vidreid'])
def test_dukev_fixture(tmp_path, variant):
    make_duke(tmp_path / variant if variant else tmp_path)
    ds = build_dataset('dukev', tmp_path, check_frames=True)
    assert ds.root == str(tmp_path / variant / 'DukeMTMC-VideoReID') and ds.default_protocol == 'dukev_standard'
    # sorted relabelling: pid 1 -> 0, pid 5 -> 1; tracklet folders in numeric order
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 7, 3), (1, 0, 3), (1, 1, 2)]
    assert [os.path.basename(p)[8:13] for p in ds.train[0].frames] == ['F0002', 'F0003', 'F0004']
    assert os.path.basename(ds.train[2].frames[0]) == '0005C2F0001X00512.jpg'
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 2)]
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery] == [(2, 2, 2), (2, 3, 3), (999, 4, 2)]
    assert '_D00071' in ds.gallery[2].frames[0]  # distractor frames kept
    assert ds.num_cams == 8 and ds.num_train_pids == 2 and ds.junk == []
    # the duplicated query tracklet is in the gallery, as on disk
    assert [os.path.basename(p) for p in ds.query[0].frames] == [os.path.basename(p) for p in ds.gallery[0].frames]


def test_dukev_bad_inputs(tmp_path):
    make_duke(tmp_path)
    empty = tmp_path / 'DukeMTMC-VideoReID' / 'gallery' / '0003' / '0020'
    empty.mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=str(empty)):
        build_dataset('dukev', tmp_path)
    empty.rmdir()
    _write(tmp_path / 'DukeMTMC-VideoReID/gallery/0003/0020/frame_1.jpg')
    with pytest.raises(DatasetFormatError, match='frame_1.jpg'):
        build_dataset('dukev', tmp_path)
    with pytest.raises(DatasetNotFoundError, match='withdrawn'):
        build_dataset('dukev', tmp_path / 'nothing')


# ---------------------------------------------------------------------------------------------------------------------
# LS-VID fixtures

LSVID_TRAIN = [(7, 2, 3), (3, 15, 2), (7, 5, 2)]  # (pid, camera, frames)
LSVID_TEST = [(0, 1, 2), (0, 4, 3), (1, 2, 2), (1, 9, 2), (2, 3, 1)]
LSVID_QUERY = [4, 1, 3]  # 1-based, unsorted


def make_lsvid(base: Path, hdf5: bool = True, info_dir: bool = False) -> Path:
    lists = base / ('info/list_sequence' if info_dir else 'list_sequence')
    lists.mkdir(parents=True)
    rows, start = [], 1
    for split, spec in (('train', LSVID_TRAIN), ('test', LSVID_TEST)):
        lines = []
        for k, (pid, cam, n) in enumerate(spec):
            prefix = f'tracklet_{split}/{pid:04d}_a/{pid:04d}_{k:04d}_{cam:02d}'
            lines.append(f'{prefix} {pid}')
            for f in reversed(range(n)):  # frames 9, 10, 11: numeric order needed if unpadded
                _write(base / f'{prefix}_{9 + f}.jpg')
            if split == 'test':
                rows.append([start, start + n - 1, pid, cam])
                start += n
        (lists / f'list_seq_{split}.txt').write_text('\r\n'.join(lines) + '\r\n')
    mat = base / ('info/data' if info_dir else 'test/data') / 'info_test.mat'
    mat.parent.mkdir(parents=True)
    if hdf5:  # MATLAB v7.3: h5py sees the transposed arrays
        with h5py.File(mat, 'w') as f:
            f['info_test'] = np.array(rows, dtype=np.float64).T
            f['query'] = np.array([LSVID_QUERY], dtype=np.float64)
    else:  # v5, like info_val.mat
        scipy.io.savemat(mat, {'info_test': np.array(rows, np.int32), 'query': np.array([LSVID_QUERY], np.uint16).T})
    return base


@pytest.mark.parametrize('hdf5,info_dir,variant', [(True, False, 'LS-VID'), (False, True, ''), (True, True, 'lsvid')])
def test_lsvid_fixture(tmp_path, hdf5, info_dir, variant):
    make_lsvid(tmp_path / variant if variant else tmp_path, hdf5=hdf5, info_dir=info_dir)
    assert h5py.is_hdf5(next(tmp_path.rglob('info_test.mat'))) == hdf5
    with _no_warnings():
        ds = build_dataset('lsvid', tmp_path, check_frames=True)
    assert ds.default_protocol == 'lsvid_official'
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(1, 1, 3), (0, 14, 2), (1, 4, 2)]
    assert [os.path.basename(p) for p in ds.train[0].frames] == ['0007_0000_02_9.jpg', '0007_0000_02_10.jpg',
                                                                 '0007_0000_02_11.jpg']
    # query in the .mat's unsorted order, raw 0-based pids; gallery = the other rows
    assert [(t.pid, t.camid) for t in ds.query] == [(1, 8), (0, 0), (1, 1)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(0, 3), (2, 2)]
    assert ds.num_cams == 15 and ds.num_train_pids == 2


def test_lsvid_bad_inputs(tmp_path):
    base = make_lsvid(tmp_path / 'a')
    frame = next((base / 'tracklet_test').rglob('0002_0004_03_9.jpg'))
    frame.rename(frame.with_name('0002_0004_03_x_9.jpg'))
    with pytest.raises(DatasetFormatError, match=r'exactly 4'):
        build_dataset('lsvid', base)

    base = make_lsvid(tmp_path / 'b')
    with open(base / 'list_sequence' / 'list_seq_test.txt', 'a') as f:
        f.write('tracklet_test/0000_a/0000_0000_01 0\n')
    with pytest.raises(DatasetFormatError, match='info_test has 5 rows'):
        build_dataset('lsvid', base)

    base = make_lsvid(tmp_path / 'c')
    with h5py.File(base / 'test/data/info_test.mat', 'a') as f:
        del f['info_test']
        f['info_test'] = np.ones((3, 5))
    with pytest.raises(DatasetFormatError, match=r'info_test\.mat.*\(N, 4\).*\(5, 3\)'):
        build_dataset('lsvid', base)

    base = make_lsvid(tmp_path / 'd')
    os.remove(base / 'list_sequence' / 'list_seq_train.txt')
    with pytest.raises(DatasetNotFoundError, match='list_seq_train.txt'):
        build_dataset('lsvid', base)

    base = make_lsvid(tmp_path / 'e')
    shutil.rmtree(base / 'tracklet_train' / '0003_a')
    with pytest.raises(DatasetNotFoundError, match='0003_a'):
        build_dataset('lsvid', base)

    with pytest.raises(DatasetNotFoundError, match='agreement'):
        build_dataset('lsvid', tmp_path / 'nothing')


# ---------------------------------------------------------------------------------------------------------------------
# iLIDS-VID fixtures

def make_ilids(base: Path, persons: list[int], ls_set: np.ndarray, split_dir: str = 'train-test people splits',
               frames=(317, 1000, 999)) -> Path:
    for cam in (1, 2):
        for p in persons:
            for f in frames:
                name = f'cam{cam}/person{p:03d}/cam{cam}_person{p:03d}_{f:05d}.png'
                _write(base / 'i-LIDS-VID/sequences' / name, PNG)
    (base / split_dir).mkdir(parents=True)
    scipy.io.savemat(base / split_dir / 'train_test_splits_ilidsvid.mat', {'ls_set': ls_set.astype(np.float64)})
    return base


ILIDS_PERSONS = [1, 2, 5, 10, 11, 319]


def _ilids_splits(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([rng.permutation(n) + 1 for _ in range(10)])


@pytest.mark.parametrize('variant,split_dir', [
    ('', 'train-test people splits'), ('ilids-vid', 'train_test_people_split')])
def test_ilidsvid_fixture(tmp_path, variant, split_dir):
    ls_set = _ilids_splits(len(ILIDS_PERSONS))
    make_ilids(tmp_path / variant if variant else tmp_path, ILIDS_PERSONS, ls_set, split_dir)
    for split_id in (0, 9):
        ds = build_dataset('ilidsvid', tmp_path, split_id=split_id, check_frames=True)
        names = [f'person{p:03d}' for p in ILIDS_PERSONS]  # already sorted
        test = sorted(names[i - 1] for i in ls_set[split_id, :3])
        train = sorted(names[i - 1] for i in ls_set[split_id, 3:])
        folder = lambda t: os.path.basename(os.path.dirname(t.frames[0]))  # noqa: E731
        assert [folder(t) for t in ds.query] == test == [folder(t) for t in ds.gallery]
        assert [t.pid for t in ds.query] == [0, 1, 2] == [t.pid for t in ds.gallery]
        assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
        assert [(folder(t), t.pid, t.camid) for t in ds.train] == [
            (n, i, c) for i, n in enumerate(train) for c in (0, 1)]
        assert [os.path.basename(p)[-9:-4] for p in ds.query[0].frames] == ['00317', '00999', '01000']
        assert 'cam2' in ds.gallery[0].frames[0] and ds.default_protocol == 'ilidsvid_10split'


def test_ilidsvid_full_size_split(tmp_path):
    """300 persons and a (10, 300) ls_set, as torchreid asserts: 150 test, 150 train, no count warning."""
    persons = sorted(np.random.default_rng(1).choice(np.arange(1, 320), 300, replace=False).tolist())
    ls_set = _ilids_splits(300)
    make_ilids(tmp_path, persons, ls_set, frames=(5,))
    with _no_warnings():
        ds = build_dataset('ilidsvid', tmp_path, split_id=4)
    assert (len(ds.train), len(ds.query), len(ds.gallery), ds.num_train_pids, ds.num_cams) == (300, 150, 150, 150, 2)
    query_folders = [os.path.basename(os.path.dirname(t.frames[0])) for t in ds.query]
    assert query_folders == sorted(f'person{persons[i - 1]:03d}' for i in ls_set[4, :150])


def test_ilidsvid_bad_inputs(tmp_path):
    base = make_ilids(tmp_path / 'a', ILIDS_PERSONS, _ilids_splits(6)[:9])
    with pytest.raises(DatasetFormatError, match=r'train_test_splits_ilidsvid\.mat.*\(10, 6\).*\(9, 6\)'):
        build_dataset('ilidsvid', base)

    base = make_ilids(tmp_path / 'b', ILIDS_PERSONS, _ilids_splits(6))
    shutil.rmtree(base / 'train-test people splits')
    with pytest.raises(DatasetNotFoundError, match='train-test people splits'):
        build_dataset('ilidsvid', base)

    base = make_ilids(tmp_path / 'c', ILIDS_PERSONS, _ilids_splits(6))
    empty = base / 'i-LIDS-VID/sequences/cam2/person005'
    shutil.rmtree(empty)
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match=f'{empty} holds no frames'):
        build_dataset('ilidsvid', base)  # every person is in the train or the test half of each split

    bad = _ilids_splits(6)
    bad[2, 0] = bad[2, 1]
    base = make_ilids(tmp_path / 'd', ILIDS_PERSONS, bad)
    with pytest.raises(DatasetFormatError, match='row 2 must be a permutation'):
        build_dataset('ilidsvid', base, split_id=2)
    with pytest.raises(ValueError, match='split_id'):
        build_dataset('ilidsvid', base, split_id=10)


# ---------------------------------------------------------------------------------------------------------------------
# PRID-2011 fixtures

PRID_SPLITS = [{'train': ['person_0003', 'person_0001'], 'test': ['person_0004', 'person_0002']},
               {'train': ['person_0002', 'person_0004'], 'test': ['person_0001', 'person_0003']}]


def make_prid(base: Path, nested: bool = True) -> Path:
    shot = base / 'prid_2011' / 'multi_shot' if nested else base / 'multi_shot'
    for cam in ('cam_a', 'cam_b'):
        for p in (1, 2, 3, 4):
            for f in (100, 9, 10):
                _write(shot / cam / f'person_{p:04d}' / f'{f:04d}.png', PNG)
    _write(shot / 'cam_b' / 'person_0300' / '0001.png', PNG)  # cam_b-only person, never in a split
    (base / 'splits_prid2011.json').write_text(json.dumps(PRID_SPLITS))
    return base


@pytest.mark.parametrize('variant,nested', [('prid2011', True), ('', False)])
def test_prid2011_fixture(tmp_path, variant, nested):
    make_prid(tmp_path / variant if variant else tmp_path, nested)
    ds = build_dataset('prid2011', tmp_path, split_id=1, check_frames=True)
    folder = lambda t: os.path.basename(os.path.dirname(t.frames[0]))  # noqa: E731
    assert [(folder(t), t.pid, t.camid) for t in ds.train] == [
        ('person_0002', 0, 0), ('person_0002', 0, 1), ('person_0004', 1, 0), ('person_0004', 1, 1)]
    assert [(folder(t), t.pid) for t in ds.query] == [('person_0001', 0), ('person_0003', 1)]
    assert [(folder(t), t.pid) for t in ds.gallery] == [('person_0001', 0), ('person_0003', 1)]
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    assert 'cam_a' in ds.query[0].frames[0] and 'cam_b' in ds.gallery[0].frames[0]
    assert [os.path.basename(p) for p in ds.query[0].frames] == ['0009.png', '0010.png', '0100.png']


def test_prid2011_bad_inputs(tmp_path):
    base = make_prid(tmp_path / 'a')
    os.remove(base / 'splits_prid2011.json')
    with pytest.raises(DatasetNotFoundError, match='splits_prid2011.json'):
        build_dataset('prid2011', base)
    (base / 'splits_prid2011.json').write_text(json.dumps({'train': []}))
    with pytest.raises(DatasetFormatError, match='splits_prid2011.json'):
        build_dataset('prid2011', base)
    (base / 'splits_prid2011.json').write_text(json.dumps(PRID_SPLITS + [{'train': ['person_0009'], 'test': []}]))
    with pytest.raises(DatasetFormatError, match='entry 2'):
        build_dataset('prid2011', base)
    (base / 'splits_prid2011.json').write_text(json.dumps([{'train': ['person_0001'], 'test': ['person_0007']}]))
    with pytest.raises(DatasetNotFoundError, match='person_0007'):
        build_dataset('prid2011', base)
    with pytest.raises(ValueError, match='split_id'):
        build_dataset('prid2011', base, split_id=1)


# ---------------------------------------------------------------------------------------------------------------------
# Registry, summary, lazy exports

def test_registry(tmp_path):
    assert list_datasets() == ['dukev', 'ilidsvid', 'lsvid', 'mars', 'prid2011', 'synthvid']
    with pytest.raises(ValueError, match='Unknown dataset'):
        build_dataset('market1501', tmp_path)
    from reidzoo.data.dataset import register_dataset

    class Wrong(VideoReIDDataset):  # a known dataset must keep the spec's default protocol
        name, default_protocol = 'mars_copy', 'no_such_protocol'
    with pytest.raises(ValueError, match='not one of'):
        register_dataset(Wrong)
    Wrong.name, Wrong.default_protocol = 'mars', 'mars_official'
    with pytest.raises(ValueError, match='already registered'):
        register_dataset(Wrong)


def test_default_protocols_come_from_the_spec():
    from reidzoo.data.dataset import _DATASETS
    from reidzoo.spec.datasets import DATASETS
    assert sorted(_DATASETS) == sorted(DATASETS)
    assert {n: c.default_protocol for n, c in _DATASETS.items()} == {n: d.default_protocol for n, d in DATASETS.items()}


def test_summary(tmp_path, capsys):
    make_mars(tmp_path)
    ds = build_dataset('mars', tmp_path)
    ds.show_summary()
    out = capsys.readouterr().out
    assert out.strip() == ds.summary()
    rows = {line.split('|')[0].strip(): [int(x) for x in line.split('|')[1:]]
            for line in out.splitlines() if line.count('|') == 4 and 'subset' not in line}
    assert rows == {'train': [2, 4, 3, 9], 'query': [2, 3, 3, 7], 'gallery': [3, 4, 3, 8], 'junk': [1, 1, 1, 2]}
    assert 'mars_query_in_gallery' in out


def test_lazy_reexports():
    assert reidzoo.data.Tracklet is Tracklet
    with pytest.raises(AttributeError):
        reidzoo.data.no_such_name  # noqa: B018
    # whatever the loading modules export is reachable from reidzoo.data without editing its __init__
    for module in ('sampling', 'samplers', 'transforms', 'video_dataset'):
        try:
            mod = __import__(f'reidzoo.data.{module}', fromlist=['__all__'])
        except ModuleNotFoundError:
            continue
        for name in getattr(mod, '__all__', []):
            assert getattr(reidzoo.data, name) is getattr(mod, name)
