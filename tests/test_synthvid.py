"""SynthVID: determinism, the exact on-disk layouts (parsed end to end by the real parsers), the registered dataset
and its record, caching, atomicity, CLI and the colour-histogram reference."""
import hashlib
import json
import os

import h5py
import numpy as np
import pytest
import scipy.io

from reidzoo.data import build_dataset, list_datasets
from reidzoo.data import synthvid
from reidzoo.data.dataset import DatasetError, DatasetNotFoundError, VideoReIDDataset
from reidzoo.data.synthvid import LAYOUTS, MARKER, SynthVID, build_synthvid, generate, layouts, read_record

TINY = dict(num_ids=8, frame_size=(32, 16), lengths=(2, 6, 3))


def _tree_digest(root):
    """sha256 of every file (path + bytes), except the marker's timing."""
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode())
            if name == MARKER:
                meta = json.load(open(path))
                meta.pop('seconds')
                h.update(json.dumps(meta, sort_keys=True).encode())
            else:
                h.update(open(path, 'rb').read())
    return h.hexdigest()


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    """Every layout, generated once at tiny size (iLIDS-VID needs its 300 persons)."""
    base = tmp_path_factory.mktemp('synthvid')
    out = {}
    for layout in LAYOUTS:
        kw = dict(TINY, num_ids=300, lengths=(2, 3, 2)) if layout == 'ilidsvid' else TINY
        out[layout] = generate(base / layout, layout=layout, seed=0, **kw)
    return out


def _meta(root):
    return json.load(open(os.path.join(root, MARKER)))


def test_deterministic_by_seed(generated, tmp_path):
    again = generate(tmp_path / 'again', layout='mars', seed=0, **TINY)
    assert _tree_digest(again) == _tree_digest(generated['mars'])
    other = generate(tmp_path / 'other', layout='mars', seed=1, **TINY)
    assert _tree_digest(other) != _tree_digest(generated['mars'])


def test_mars_layout(generated):
    root = generated['mars']
    info = os.path.join(root, 'info')
    raw = open(os.path.join(info, 'test_name.txt'), 'rb').read()
    assert raw.endswith(b'\r\n') and raw.count(b'\r\n') == raw.count(b'\n')
    names = raw.decode().split('\r\n')[:-1]
    assert names == sorted(names)  # folder order, then file order
    assert all(len(n) == 19 and n[4] == 'C' and n[6] == 'T' and n[11] == 'F' for n in names)
    assert {'00-1', '0000'} <= set(os.listdir(os.path.join(root, 'bbox_test')))
    test_info = scipy.io.loadmat(os.path.join(info, 'tracks_test_info.mat'))['track_test_info']
    query = scipy.io.loadmat(os.path.join(info, 'query_IDX.mat'))['query_IDX']
    assert test_info.dtype == np.int32 and test_info.shape[1] == 4
    assert query.dtype == np.uint16 and query.shape[0] == 1 and (np.diff(query[0].astype(int)) > 0).all()
    # contiguous 1-based inclusive ranges over the name list; pid -1 rows first, then 0, then even pids
    assert test_info[0, 0] == 1 and test_info[-1, 1] == len(names)
    assert (test_info[1:, 0] == test_info[:-1, 1] + 1).all()
    assert test_info[0, 2] == -1 and set(test_info[:, 3]) <= set(range(1, 7))
    assert all(p % 2 == 0 for p in test_info[:, 2] if p > 0)
    for start, end, pid, cam in test_info:
        frames = names[start - 1:end]
        assert {f[:4] for f in frames} == {'00-1' if pid == -1 else f'{pid:04d}'} and {f[5] for f in frames} == {
            str(cam)}
    train_info = scipy.io.loadmat(os.path.join(info, 'tracks_train_info.mat'))['track_train_info']
    assert all(p % 2 == 1 for p in train_info[:, 2])
    # end to end through the MARS parser
    ds = build_dataset('mars', root)
    counts = _meta(root)['counts']
    assert len(ds.train) == counts['train_tracklets'] == len(train_info)
    assert len(ds.query) == counts['query_tracklets'] == query.size
    assert len(ds.junk) == counts['junk_tracklets']
    assert len(ds.query) + len(ds.gallery) + len(ds.junk) == counts['test_tracklets'] == len(test_info)
    assert ds.num_train_pids == 4 and ds.num_cams == 6
    assert any(t.pid == 0 for t in ds.gallery)  # distractors stay in the gallery
    assert sum(len(t.frames) for s in (ds.train, ds.query, ds.gallery, ds.junk) for t in s) == counts['frames']
    assert all(os.path.isfile(f) for t in ds.query for f in t.frames)


def test_dukev_layout(generated):
    root = os.path.join(generated['dukev'], 'DukeMTMC-VideoReID')
    assert sorted(os.listdir(root)) == ['gallery', 'query', 'train']
    query_dirs = [os.path.join(p, t) for p in os.listdir(os.path.join(root, 'query'))
                  for t in os.listdir(os.path.join(root, 'query', p))]
    for rel in query_dirs:  # every query tracklet is also in the gallery, byte for byte
        q, g = os.path.join(root, 'query', rel), os.path.join(root, 'gallery', rel)
        assert sorted(os.listdir(q)) == sorted(os.listdir(g))
        assert all(open(os.path.join(q, f), 'rb').read() == open(os.path.join(g, f), 'rb').read()
                   for f in os.listdir(q))
    frames = [f for _, _, fs in os.walk(os.path.join(root, 'gallery')) for f in fs]
    assert any('_D' in f for f in frames) and any('_X' in f for f in frames)
    name = frames[0].split('_')
    assert len(name) == 4 and name[1][0] == 'C' and name[2][0] == 'F' and len(name[2]) == 5
    ds = build_dataset('dukev', generated['dukev'])
    counts = _meta(generated['dukev'])['counts']
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (counts['train'], counts['query'], counts['gallery'])
    assert len(ds.query) == 4 and ds.num_train_pids == 4
    assert len({t.pid for t in ds.gallery}) == 4 + counts['distractor_ids']
    for t in ds.train + ds.gallery:  # frames sorted by the F index and contiguous from F0001
        idx = [int(os.path.basename(f).split('_')[2][1:]) for f in t.frames]
        assert idx == list(range(1, len(idx) + 1))


def test_lsvid_layout(generated):
    root = generated['lsvid']
    mat = os.path.join(root, 'test', 'data', 'info_test.mat')
    assert open(mat, 'rb').read(10) == b'MATLAB 7.3'
    with h5py.File(mat, 'r') as f:
        info, query = f['info_test'][()], f['query'][()]
    lines = open(os.path.join(root, 'list_sequence', 'list_seq_test.txt')).read().splitlines()
    assert info.shape == (4, len(lines)) and info.dtype == np.float64
    assert query.shape[0] == 1 and query.min() >= 1 and query.max() <= len(lines)
    assert info[0, 0] == 1 and (info[0, 1:] == info[1, :-1] + 1).all()
    assert (np.diff(info[2]) >= 0).all() and info[2].min() == 0  # sorted by 0-based pid
    for line, pid, cam in zip(lines, info[2], info[3]):
        prefix, label = line.split(' ')
        assert int(label) == pid
        tokens = os.path.basename(prefix).split('_')
        assert len(tokens) == 3 and int(tokens[2]) == cam
    first = sorted(os.listdir(os.path.join(root, os.path.dirname(lines[0].split(' ')[0]))))[0]
    assert len(first[:-4].split('_')) == 4
    ds = build_dataset('lsvid', root)
    counts = _meta(root)['counts']
    assert len(ds.train) == counts['train_tracklets'] and len(ds.query) == counts['query_tracklets']
    assert len(ds.query) + len(ds.gallery) == counts['test_tracklets']


def test_ilidsvid_layout(generated):
    root = generated['ilidsvid']
    split_file = os.path.join(root, 'train-test people splits', 'train_test_splits_ilidsvid.mat')
    ls_set = scipy.io.loadmat(split_file)['ls_set']
    assert ls_set.shape == (10, 300) and ls_set.dtype == np.float64
    assert all(sorted(row) == list(range(1, 301)) for row in ls_set.astype(int).tolist())
    cam1 = sorted(os.listdir(os.path.join(root, 'i-LIDS-VID', 'sequences', 'cam1')))
    assert cam1 == sorted(os.listdir(os.path.join(root, 'i-LIDS-VID', 'sequences', 'cam2'))) and len(cam1) == 300
    frame = sorted(os.listdir(os.path.join(root, 'i-LIDS-VID', 'sequences', 'cam1', cam1[0])))[0]
    assert frame.startswith(f'cam1_{cam1[0]}_') and frame.endswith('.png') and len(frame.split('_')[2]) == 9
    ds = build_dataset('ilidsvid', root, split_id=3)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (300, 150, 150)
    test_names = {cam1[i - 1] for i in ls_set[3, :150].astype(int)}
    assert {os.path.basename(os.path.dirname(t.frames[0])) for t in ds.query} == test_names


def test_prid2011_layout(generated):
    root = generated['prid2011']
    splits = json.load(open(os.path.join(root, 'splits_prid2011.json')))
    assert len(splits) == 10
    used = set(splits[0]['train']) | set(splits[0]['test'])
    for s in splits:
        assert not set(s['train']) & set(s['test']) and set(s['train']) | set(s['test']) == used
        assert s['train'] == sorted(s['train']) and len(s['train']) == len(s['test'])
    cams = [os.path.join(root, 'prid_2011', 'multi_shot', c) for c in ('cam_a', 'cam_b')]
    assert len(os.listdir(cams[1])) > len(os.listdir(cams[0])) > len(used)
    assert sorted(os.listdir(os.path.join(cams[0], 'person_0001')))[0] == '0001.png'
    ds = build_dataset('prid2011', root)
    n = len(splits[0]['test'])
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (2 * n, n, n)
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}


def test_build_synthvid_caches_and_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv('REIDZOO_CACHE', str(tmp_path / 'cache'))
    cache = tmp_path / 'cache' / 'synthvid'

    # a generation killed half-way leaves nothing in the cache
    calls = {'n': 0}
    real_write = layouts._Builder.write

    def failing_write(self, frames, paths):
        calls['n'] += 1
        if calls['n'] == 5:
            raise KeyboardInterrupt('killed')
        return real_write(self, frames, paths)

    monkeypatch.setattr(layouts._Builder, 'write', failing_write)
    with pytest.raises(KeyboardInterrupt):
        build_synthvid(layout='prid2011', **TINY)
    assert not cache.exists() or os.listdir(cache) == []
    monkeypatch.setattr(layouts._Builder, 'write', real_write)

    # a temp folder left by a process that died without cleaning up is removed on the next use
    target = 'prid2011-' + layouts._params_hash(layouts._params('prid2011', 8, 0, (32, 16), (2, 6, 3)))
    stale = cache / f'.{target}.tmp-999999999-x'
    stale.mkdir(parents=True)
    unrelated = cache / '.other.tmp-999999999-x'
    unrelated.mkdir()
    ds = build_synthvid(layout='prid2011', **TINY)
    assert ds.name == 'synthvid' and ds.layout == 'prid2011' and ds.default_protocol == 'synthvid_standard'
    assert sorted(os.listdir(cache)) == ['.other.tmp-999999999-x', target]
    unrelated.rmdir()
    entries = os.listdir(cache)
    # the second call reuses the cache without generating
    monkeypatch.setattr(synthvid.dataset, 'generate', lambda *a, **k: pytest.fail('regenerated a cached dataset'))
    again = build_dataset('synthvid', None, layout='prid2011', **TINY)
    assert [t.frames for t in again.query] == [t.frames for t in ds.query]
    with pytest.raises(ValueError, match='not the requested'):
        build_synthvid(os.path.join(cache, entries[0]), layout='prid2011', **dict(TINY, num_ids=10))


def test_generate_refuses_non_empty_folder(tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError):
        generate(tmp_path / 'x', layout='mars', **TINY)
    with pytest.raises(ValueError, match='300 persons'):
        generate(tmp_path / 'y', layout='ilidsvid', **TINY)
    with pytest.raises(ValueError, match='layout'):
        generate(tmp_path / 'z', layout='market', **TINY)


def test_cli(tmp_path, capsys):
    from reidzoo.cli import main
    out = tmp_path / 'cli'
    assert main(['synth', '--layout', 'dukev', '--out', str(out), '--num-ids', '6', '--seed', '3',
                 '--frame-size', '32', '16', '--lengths', '2', '4', '3']) == 0
    assert 'DukeMTMC-VideoReID' in os.listdir(out) and str(out) in capsys.readouterr().out
    assert _meta(out)['params']['seed'] == 3


def test_colour_histogram_baseline(generated):
    from reidzoo.cli.synth import colour_histogram_baseline
    from reidzoo.data.synthvid import colour_histogram_features
    ds = build_dataset('synthvid', generated['mars'])
    r = colour_histogram_baseline(ds)
    assert r.protocol == 'synthvid_standard' and r.num_valid_queries > 0
    d = r.as_dict()
    assert 0 <= d['rank1'] <= d['rank5'] <= d['rank10'] <= 1 and 0 < d['mAP'] <= 1
    # the Euclidean distance of the features is sqrt(2) x the Hellinger distance of the mean histograms
    f = colour_histogram_features(ds.query[:2])
    h = f ** 2
    assert np.allclose(h.sum(1), 1)
    hellinger = np.sqrt(0.5 * ((np.sqrt(h[0]) - np.sqrt(h[1])) ** 2).sum())
    assert np.isclose(np.linalg.norm(f[0] - f[1]), np.sqrt(2) * hellinger)
    # the same ranking as the reference: rank-5 is cmc[4] of the protocol's own evaluation, not a re-sliced copy
    assert d['rank5'] == r.cmc[4]


def test_synthvid_is_a_registered_dataset(generated):
    """build_dataset has no special case: SynthVID is a VideoReIDDataset subclass in the registry."""
    import ast
    import inspect
    import textwrap
    from reidzoo.data import dataset as dataset_module
    assert 'synthvid' in list_datasets() and issubclass(SynthVID, VideoReIDDataset)
    assert dataset_module._DATASETS['synthvid'] is SynthVID
    code = ast.parse(textwrap.dedent(inspect.getsource(dataset_module.build_dataset))).body[0].body[1:]  # no docstring
    assert 'synthvid' not in ''.join(ast.unparse(node) for node in code).lower()
    ds = build_dataset('synthvid', generated['dukev'])  # no generation arguments: read from the folder's record
    assert type(ds) is SynthVID and ds.name == 'synthvid' and ds.default_protocol == 'synthvid_standard'
    assert ds.layout == 'dukev' and ds.record.seed == 0 and ds.record.frame_size == (32, 16)
    parsed = build_dataset('dukev', generated['dukev'])
    assert ds.query == parsed.query and ds.gallery == parsed.gallery and ds.train == parsed.train
    assert 'SynthVID dukev layout, 8 ids, seed 0, 32x16 frames' in ds.summary()
    # nothing is patched onto the layout parser's dataset
    assert not hasattr(parsed, 'layout') and parsed.name == 'dukev'
    # split datasets pass their split on to the layout's parser
    ilids = build_dataset('synthvid', generated['ilidsvid'], split_id=3)
    assert [t.frames for t in ilids.query] == [t.frames for t in build_dataset('ilidsvid', generated['ilidsvid'],
                                                                               split_id=3).query]


def test_read_record(generated, tmp_path):
    rec = read_record(generated['mars'])
    assert (rec.layout, rec.num_ids, rec.seed, rec.frame_size, rec.lengths) == ('mars', 8, 0, (32, 16), (2, 6, 3.))
    assert rec.counts['frames'] > 0 and rec.root == os.path.abspath(generated['mars'])
    assert rec.params() == {'layout': 'mars', 'num_ids': 8, 'seed': 0, 'frame_size': [32, 16], 'lengths': [2, 6, 3.]}
    with pytest.raises(DatasetNotFoundError, match='reidzoo synth'):
        read_record(tmp_path)
    (tmp_path / MARKER).write_text('{"params": {}}')
    with pytest.raises(DatasetError, match='not a valid SynthVID record'):
        read_record(tmp_path)


def test_existing_folder_arguments(generated, tmp_path):
    root = generated['mars']
    assert build_dataset('synthvid', root, layout='mars', seed=0).record.num_ids == 8  # agreeing arguments are fine
    with pytest.raises(ValueError, match='not the requested'):
        build_dataset('synthvid', root, seed=1)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'file.txt').write_text('not synthvid')
    with pytest.raises(DatasetError, match='not a SynthVID folder'):
        build_dataset('synthvid', tmp_path / 'other')
    new = build_dataset('synthvid', tmp_path / 'new', layout='prid2011', **TINY)  # a new folder is generated
    assert new.layout == 'prid2011' and read_record(tmp_path / 'new').num_ids == 8


def test_cli_refuses_existing_folder_in_one_line(generated, capsys):
    from reidzoo.cli import main
    assert main(['synth', '--layout', 'mars', '--out', str(generated['mars'])]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and err.startswith('reidzoo synth: error: ') and 'Traceback' not in err
    assert 'already exists' in err and 'SynthVID mars layout, 8 ids, seed 0' in err

