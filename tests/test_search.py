"""Gallery search: exact search against brute force, faiss recall, the on-disk format and its errors, the CLI."""
import json
import os

import numpy as np
import pytest
import torch

from reidzoo.eval import compute_distance
from reidzoo.search import GalleryIndex, IndexFormatError, ivf_defaults
from reidzoo.search import index as index_mod


def _brute_force(q, g, metric, k):
    dist = compute_distance(q, g, metric, dtype=torch.float64).numpy()
    order = np.argsort(dist, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(dist, order, 1), order


def _clustered(num_ids, per_id, dim, noise=0.6, num_queries=40, seed=0):
    """Identity centres + noise (like tracklet embeddings); queries are fresh draws of gallery identities."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim)).astype(np.float32)
    gallery = np.repeat(centres, per_id, 0) + noise * rng.standard_normal((num_ids * per_id, dim)).astype(np.float32)
    queries = centres[rng.integers(0, num_ids, num_queries)] + noise * rng.standard_normal(
        (num_queries, dim)).astype(np.float32)
    return gallery, queries


def _recall(found, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.tolist(), truth.tolist())])


# --- exact search --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('metric', ['cosine', 'euclidean', 'sqeuclidean'])
def test_exact_index_equals_brute_force(metric):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((500, 24)).astype(np.float32)
    q = rng.standard_normal((30, 24)).astype(np.float32)
    meta = [{'name': f't{i}'} for i in range(len(g))]
    dist, idx, rows = GalleryIndex.build(g, meta, metric=metric, kind='exact').search(q, 7)
    ref_d, ref_i = _brute_force(q, g, metric, 7)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)
    assert [r['name'] for r in rows[3]] == [f't{i}' for i in ref_i[3]]


def test_exact_search_merges_gallery_chunks(monkeypatch):
    """With a tiny chunk budget the gallery is scanned in many blocks; the running top-k must still be exact."""
    monkeypatch.setattr(index_mod, '_EXACT_CHUNK_ELEMENTS', 64)
    rng = np.random.default_rng(2)
    g = rng.standard_normal((9000, 8)).astype(np.float32)  # > the 4096-row minimum block: three gallery blocks
    q = rng.standard_normal((5, 8)).astype(np.float32)
    for metric in ('cosine', 'euclidean'):
        dist, idx, _ = GalleryIndex.build(g, metric=metric, kind='exact').search(q, 12)
        ref_d, ref_i = _brute_force(q, g, metric, 12)
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)


def test_k_larger_than_gallery_pads_with_minus_one():
    g = np.eye(3, 4, dtype=np.float32)
    dist, idx, rows = GalleryIndex.build(g, kind='exact').search(g[:1], 5)
    assert idx[0].tolist()[:3] == [0, 1, 2] and idx[0].tolist()[3:] == [-1, -1]
    assert np.isinf(dist[0, 3:]).all() and rows[0][3:] == [None, None]


# --- faiss ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kind', ['ivf', 'hnsw'])
@pytest.mark.parametrize('metric', ['cosine', 'sqeuclidean'])
def test_faiss_index_recall_on_clustered_gallery(kind, metric):
    pytest.importorskip('faiss')
    g, q = _clustered(num_ids=400, per_id=10, dim=32)
    index = GalleryIndex.build(g, metric=metric, kind=kind)
    dist, idx, _ = index.search(q, 10)
    ref_d, ref_i = _brute_force(q, g, metric, 10)
    assert _recall(idx, ref_i) >= 0.95
    # IVF-Flat and HNSW-Flat score the rows they visit exactly: returned distances are the true ones
    true_d = compute_distance(q, g, metric, dtype=torch.float64).numpy()
    np.testing.assert_allclose(dist, np.take_along_axis(true_d, idx, 1), rtol=1e-4, atol=1e-4)
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_estimate_recall_tracks_the_probe_budget():
    pytest.importorskip('faiss')
    g, _ = _clustered(num_ids=300, per_id=10, dim=32, noise=1.5)
    index = GalleryIndex.build(g, kind='ivf', nlist=64)
    low, high = index.estimate_recall(nprobe=1), index.estimate_recall(nprobe=64)
    assert high == 1.0 and low < 0.9  # probing every cell is exact; one cell of 64 misses neighbours
    assert GalleryIndex.build(g, kind='exact').estimate_recall() == 1.0


def test_auto_kind_follows_gallery_size(monkeypatch):
    pytest.importorskip('faiss')
    g, _ = _clustered(num_ids=100, per_id=10, dim=16)
    assert GalleryIndex.build(g).kind == 'exact'
    monkeypatch.setattr(index_mod, 'EXACT_MAX', 500)
    assert GalleryIndex.build(g).kind == 'hnsw'


def test_auto_without_faiss_falls_back_to_exact(monkeypatch):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'faiss' else real_find_spec(name, *a))
    monkeypatch.setattr(index_mod, 'EXACT_MAX', 10)
    with pytest.warns(UserWarning, match='faiss is not installed: using exact search'):
        index = GalleryIndex.build(np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32))
    assert index.kind == 'exact'


def test_hnsw_beam_grows_with_gallery():
    from reidzoo.search import hnsw_defaults
    assert [hnsw_defaults(n)['ef_search'] for n in (10_000, 300_000, 1_000_000)] == [32, 64, 128]


def test_ivf_defaults_scale_with_gallery():
    small, large = ivf_defaults(100_000), ivf_defaults(1_000_000)
    assert small['nlist'] == 1024 and large['nlist'] == 4096
    assert large['train_rows'] >= 39 * large['nlist']  # faiss's minimum for a meaningful k-means
    assert 1 <= large['nprobe'] <= large['nlist']


def test_add_equals_building_at_once():
    g, q = _clustered(num_ids=50, per_id=6, dim=16)
    whole = GalleryIndex.build(g, [{'i': i} for i in range(len(g))], kind='exact')
    grown = GalleryIndex.build(g[:100], [{'i': i} for i in range(100)], kind='exact')
    grown.add(g[100:], [{'i': i} for i in range(100, len(g))])
    a, b = whole.search(q, 5), grown.search(q, 5)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.metadata == b.metadata


def test_ivf_add_makes_new_rows_findable():
    pytest.importorskip('faiss')
    g, _ = _clustered(num_ids=200, per_id=10, dim=16)
    index = GalleryIndex.build(g, kind='ivf', nlist=32)
    index.add(g[:3] * 5, [{'name': 'new'}] * 3)  # cosine: scaled copies of rows 0-2 are their nearest neighbours
    _, idx, rows = index.search(g[:1], 2)
    assert len(index) == len(g) + 3 and set(idx[0].tolist()) == {0, len(g)}


# --- bad input -----------------------------------------------------------------------------------------------------
def test_non_finite_embedding_is_refused_with_its_row_named():
    g = np.ones((6, 4), np.float32)
    g[4, 2] = np.nan
    with pytest.raises(ValueError, match=r'row 4 \(cam2/t9\) is not finite'):
        GalleryIndex.build(g, [{'name': f'cam2/t{i + 5}'} for i in range(6)])
    index = GalleryIndex.build(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match='query embedding row 1'):
        index.search(np.array([[1, 1, 1, 1], [0, np.inf, 0, 0]], np.float32), 2)
    with pytest.raises(ValueError, match='added embedding row 0'):
        index.add(np.full((1, 4), np.nan, np.float32))


def test_wrong_dim_and_metadata_count_are_explained():
    index = GalleryIndex.build(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match='dim 5 but the index holds 4-d'):
        index.search(np.ones((1, 5), np.float32), 1)
    with pytest.raises(ValueError, match='3 embedding rows but 2 metadata rows'):
        GalleryIndex.build(np.ones((3, 4), np.float32), [{}, {}])


def test_query_model_must_be_the_gallery_model():
    from reidzoo.search.gallery import query_model_spec
    g = np.ones((2, 4), np.float32)
    recorded = {'name': 'tp_resnet50.synthvid', 'architecture': 'tp_resnet50', 'pretrained': True,
                'model_kwargs': {'backbone': 'test_resnet'}, 'test_sampling': 'dense'}
    index = GalleryIndex.build(g, model=recorded)
    assert query_model_spec(index) == {'name': 'tp_resnet50.synthvid', 'pretrained': True,
                                       'model_kwargs': {'backbone': 'test_resnet'}, 'test_sampling': 'dense'}
    with pytest.raises(ValueError, match='built with tp_resnet50.synthvid .* query model is sinet_resnet50'):
        query_model_spec(index, 'sinet_resnet50')
    with pytest.raises(ValueError, match='pass --model MODEL'):
        query_model_spec(GalleryIndex.build(g))


# --- on disk -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kind', ['exact', 'ivf', 'hnsw'])
def test_save_load_round_trip(tmp_path, kind):
    if kind != 'exact':
        pytest.importorskip('faiss')
    g, q = _clustered(num_ids=100, per_id=8, dim=16)
    meta = [{'name': f't{i}', 'camid': i % 3, 'pid': i // 8} for i in range(len(g))]
    index = GalleryIndex.build(g, meta, metric='euclidean', kind=kind, nlist=16, model={'name': 'x.y'})
    before = index.search(q, 6)
    index.save(tmp_path / 'ix')
    loaded = GalleryIndex.load(tmp_path / 'ix')
    after = loaded.search(q, 6)
    np.testing.assert_array_equal(before.indices, after.indices)
    np.testing.assert_allclose(before.distances, after.distances, rtol=1e-6)
    assert after.metadata == before.metadata and loaded.metadata == meta
    assert (loaded.metric, loaded.kind, loaded.params, loaded.model) == ('euclidean', kind, index.params,
                                                                          {'name': 'x.y'})
    manifest = json.loads((tmp_path / 'ix' / 'index.json').read_text())
    assert manifest['format_version'] == 1 and manifest['count'] == len(g) and manifest['dim'] == 16
    assert all(len(f['sha256']) == 64 for f in manifest['files'].values())
    # saving over an existing index replaces it and leaves no temp or old folders behind
    GalleryIndex.build(g[:10], meta[:10], kind='exact').save(tmp_path / 'ix')
    assert len(GalleryIndex.load(tmp_path / 'ix')) == 10
    assert sorted(os.listdir(tmp_path)) == ['ix']


def _saved(tmp_path, kind='exact'):
    g, _ = _clustered(num_ids=40, per_id=5, dim=8)
    return GalleryIndex.build(g, [{'name': str(i)} for i in range(len(g))], kind=kind, nlist=8).save(tmp_path / 'ix')


def test_corrupt_byte_is_caught_and_the_file_named(tmp_path):
    path = _saved(tmp_path)
    data = bytearray((path / 'embeddings.npy').read_bytes())
    data[-5] ^= 0xFF  # same size, different content: only the sha256 can tell
    (path / 'embeddings.npy').write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r'ix/embeddings\.npy does not match the sha256'):
        GalleryIndex.load(path)


def test_truncated_faiss_file_is_named(tmp_path):
    pytest.importorskip('faiss')
    path = _saved(tmp_path, 'ivf')
    with open(path / 'faiss.index', 'r+b') as f:
        f.truncate(100)
    with pytest.raises(IndexFormatError, match=r'faiss\.index is 100 bytes but index\.json records'):
        GalleryIndex.load(path, verify=False)


def test_missing_and_mangled_files_are_named(tmp_path):
    path = _saved(tmp_path)
    (path / 'metadata.jsonl').unlink()
    with pytest.raises(IndexFormatError, match=r'metadata\.jsonl is missing'):
        GalleryIndex.load(path)
    (path / 'index.json').write_text('{"format": "reidzoo-gallery-index", ')
    with pytest.raises(IndexFormatError, match=r'index\.json is not valid JSON'):
        GalleryIndex.load(path)
    with pytest.raises(IndexFormatError, match=r'index\.json not found'):
        GalleryIndex.load(tmp_path)


def test_metadata_row_count_mismatch_is_named(tmp_path):
    from reidzoo.hub import sha256_file
    path = _saved(tmp_path)
    lines = (path / 'metadata.jsonl').read_text().splitlines(keepends=True)
    (path / 'metadata.jsonl').write_text(''.join(lines[:-1]))
    with pytest.raises(IndexFormatError, match=r'metadata\.jsonl is \d+ bytes but index\.json records'):
        GalleryIndex.load(path, verify=False)
    # a manifest that agrees with the short file (a hand edit, a buggy writer) still fails on the row count
    manifest = json.loads((path / 'index.json').read_text())
    manifest['files']['metadata.jsonl'] = {'bytes': (path / 'metadata.jsonl').stat().st_size,
                                           'sha256': sha256_file(path / 'metadata.jsonl')}
    (path / 'index.json').write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=r'metadata\.jsonl has 199 rows but index\.json says 200'):
        GalleryIndex.load(path)


def test_failed_save_keeps_the_old_index(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    calls = []

    def failing_hash(p):
        calls.append(p)
        if len(calls) == 2:
            raise OSError('disk full')
        return real_hash(p)
    real_hash = index_mod.sha256_file
    monkeypatch.setattr(index_mod, 'sha256_file', failing_hash)
    with pytest.raises(OSError, match='disk full'):
        GalleryIndex.build(np.ones((3, 8), np.float32), kind='exact').save(path)
    monkeypatch.undo()
    assert len(GalleryIndex.load(path)) == 200
    assert sorted(os.listdir(tmp_path)) == ['ix']


def test_save_refuses_a_folder_that_is_not_an_index(tmp_path):
    (tmp_path / 'photos').mkdir()
    (tmp_path / 'photos' / 'keep.jpg').write_bytes(b'x')
    with pytest.raises(FileExistsError, match='is not a reidzoo gallery index'):
        GalleryIndex.build(np.ones((2, 3), np.float32)).save(tmp_path / 'photos')
    assert (tmp_path / 'photos' / 'keep.jpg').read_bytes() == b'x'


# --- command line --------------------------------------------------------------------------------------------------
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (230, 210, 30), (200, 40, 200), (20, 200, 200)]


@pytest.fixture(scope='module')
def tracklets_and_model(tmp_path_factory):
    """Six tiny one-colour tracklets (3 frames of 32x16 each) and a saved test_resnet model folder (64x32 input)."""
    from PIL import Image
    import reidzoo
    from reidzoo.hub import save_pretrained
    root = tmp_path_factory.mktemp('search_cli')
    dirs = []
    for i, colour in enumerate(COLOURS):
        folder = root / 'tracks' / f'c{i % 2}_t{i}'
        folder.mkdir(parents=True)
        for f in range(3):
            shade = np.clip(np.array(colour) + 8 * f, 0, 255).astype(np.uint8)
            Image.fromarray(np.broadcast_to(shade, (32, 16, 3)).copy()).save(folder / f'{f}.png')
        dirs.append(str(folder))
    torch.manual_seed(0)
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet')
    model.pretrained_cfg = {**model.pretrained_cfg, 'input_size': (3, 64, 32)}  # small frames keep the tests fast
    save_pretrained(model, root / 'model')
    return dirs, f'local-dir:{root / "model"}'


def test_cli_index_build_and_search_end_to_end(tracklets_and_model, tmp_path, capsys):
    from PIL import Image
    from reidzoo.cli import main
    dirs, model = tracklets_and_model
    ix = tmp_path / 'ix'
    assert main(['index', 'build', model, *dirs, '--out', str(ix), '--batch-size', '4']) == 0
    assert main(['index', 'info', str(ix)]) == 0
    assert "kind='exact'" in capsys.readouterr().out
    k = 3
    out, png = tmp_path / 'results.json', tmp_path / 'results.png'
    assert main(['search', str(ix), '--query', dirs[2], dirs[5], '-k', str(k), '--out', str(out),
                 '--thumbnails', str(png)]) == 0
    report = json.loads(out.read_text())
    assert report['metric'] == 'sqeuclidean' and report['model'] == model  # tp_resnet50's distance, recorded model
    for query, expected in zip(report['queries'], (dirs[2], dirs[5])):
        top = query['results'][0]
        assert top['name'] == expected and top['distance'] < 1e-3  # a gallery tracklet finds itself first
        assert len(query['results']) == k and top['thumbnail'].endswith('1.png')
    with Image.open(png) as img:
        sheet = np.asarray(img.convert('RGB'))
    cell_h, cell_w = 128, 64
    assert sheet.shape[1] == (1 + k) * cell_w + 8 and sheet.shape[0] > 2 * cell_h
    # the query cell and its rank-1 cell show the query's own middle frame (colour + 8)
    expected = np.array(COLOURS[2]) + 8
    np.testing.assert_allclose(sheet[cell_h // 2, cell_w // 2], expected, atol=2)
    np.testing.assert_allclose(sheet[cell_h // 2, cell_w + 8 + cell_w // 2], expected, atol=2)


def test_gallery_from_dataset_tracklets_keeps_pid_and_camid(tracklets_and_model):
    import reidzoo
    from reidzoo.data.dataset import Tracklet
    from reidzoo.eval.extract import list_frames
    from reidzoo.search.gallery import build_gallery_index, embed_tracklets
    dirs, model_name = tracklets_and_model
    model = reidzoo.create_model(model_name, pretrained=True)
    tracklets = [Tracklet(list_frames(d), pid=10 + i, camid=i % 2) for i, d in enumerate(dirs)]
    index = build_gallery_index(model, tracklets, name=model_name, progress=False)
    assert [(m['pid'], m['camid']) for m in index.metadata] == [(10 + i, i % 2) for i in range(len(dirs))]
    assert index.metadata[0]['name'] == tracklets[0].frames[0] and index.metadata[0]['path'] == dirs[0]
    assert index.metric == model.pretrained_cfg['distance'] and index.model['name'] == model_name
    q_emb, q_meta = embed_tracklets(model, dirs[3:4], progress=False)
    _, idx, rows = index.search(q_emb, 1)
    assert idx[0, 0] == 3 and rows[0][0]['pid'] == 13 and q_meta[0]['pid'] == -1


def test_cli_index_from_extract_embeddings(tracklets_and_model, tmp_path, capsys):
    pytest.importorskip('faiss')
    from reidzoo.cli import main
    dirs, model = tracklets_and_model
    emb = tmp_path / 'emb.safetensors'
    assert main(['extract', model, *dirs, '--out', str(emb)]) == 0
    assert main(['index', 'build', '--embeddings', str(emb), '--out', str(tmp_path / 'ix'), '--kind', 'hnsw']) == 0
    assert 'recall@10 against exact search' in capsys.readouterr().out
    index = GalleryIndex.load(tmp_path / 'ix')
    assert index.kind == 'hnsw' and index.metric == 'sqeuclidean' and [m['name'] for m in index.metadata] == dirs
    out = tmp_path / 'r.json'
    assert main(['search', str(tmp_path / 'ix'), '--model', model, '--query', dirs[4], '-k', '2',
                 '--out', str(out)]) == 0
    assert json.loads(out.read_text())['queries'][0]['results'][0]['name'] == dirs[4]


def test_cli_errors_are_one_actionable_line(tracklets_and_model, tmp_path, capsys):
    from reidzoo.cli import main
    dirs, _ = tracklets_and_model
    ix = tmp_path / 'random_ix'
    assert main(['index', 'build', 'tp_resnet50', *dirs[:2], '--out', str(ix), '--no-pretrained',
                 '--model-kwargs', '{"backbone": "test_resnet"}']) == 0
    capsys.readouterr()
    assert main(['search', str(ix), '--query', dirs[0]]) == 1
    assert 'built with random weights' in capsys.readouterr().err
    (ix / 'embeddings.npy').write_bytes(b'\x93NUMPY garbage')
    assert main(['search', str(ix), '--query', dirs[0]]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('reidzoo search: error:') and 'embeddings.npy is' in err and '\n' not in err
