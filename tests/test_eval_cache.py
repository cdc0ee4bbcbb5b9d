"""The feature cache: keyed by content (frames) and by the weights actually loaded; safe under concurrent writers;
self-healing after a killed or truncated write."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import reidzoo
from reidzoo.data import build_dataset
from reidzoo.eval.cache import FeatureCache, cache_namespace, tracklet_key, weights_id
from reidzoo.eval.pipeline import embed_tracklets, evaluate


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp('cache') / 'synthvid'
    return build_dataset('synthvid', str(root), layout='mars', num_ids=6, seed=11, frame_size=(32, 16),
                         lengths=(3, 6, 4))


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    return reidzoo.create_model('tp_resnet50', backbone='test_resnet').eval()


def _rewrite_frame(path, value):
    """Re-export a frame under the same name with other pixels (and, to be safe, a later mtime)."""
    size = Image.open(path).size
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def test_reexported_frames_are_embedded_again(synth, tiny_model, tmp_path):
    tracklets = synth.query[:3]
    cache = FeatureCache(tmp_path, cache_namespace(tiny_model))
    before, n = embed_tracklets(tiny_model, tracklets, cache, progress=False)
    assert n == 3
    _rewrite_frame(tracklets[1].frames[0], 250)  # same file name, new content
    reused = FeatureCache(tmp_path, cache_namespace(tiny_model))
    after, n = embed_tracklets(tiny_model, tracklets, reused, progress=False)
    assert n == 1  # only the changed tracklet
    fresh, _ = embed_tracklets(tiny_model, tracklets, None, progress=False)
    torch.testing.assert_close(after, fresh)  # equals a fresh-cache run
    assert not torch.allclose(after[1], before[1])
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])


def test_changed_weights_get_another_namespace_even_with_the_same_recorded_sha(tiny_model):
    tiny_model.pretrained_cfg['sha256'] = 'ab' * 32  # what a config.json records; not what is in memory
    first_id, first_ns = weights_id(tiny_model), cache_namespace(tiny_model)
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)  # e.g. a replaced model.safetensors, or fine-tuning
    assert weights_id(tiny_model) != first_id and cache_namespace(tiny_model) != first_ns
    assert cache_namespace(tiny_model, test_sampling='all') != cache_namespace(tiny_model)


def test_local_dir_with_replaced_weights_is_embedded_again(synth, tmp_path):
    from reidzoo.hub import save_pretrained
    torch.manual_seed(1)
    a = reidzoo.create_model('tp_resnet50', backbone='test_resnet').eval()
    torch.manual_seed(2)
    b = reidzoo.create_model('tp_resnet50', backbone='test_resnet').eval()
    folder = save_pretrained(a, tmp_path / 'model')
    cache_dir = tmp_path / 'cache'
    ra = evaluate(reidzoo.create_model(f'local-dir:{folder}', pretrained=True), synth, cache=cache_dir,
                  progress=False)
    save_pretrained(b, tmp_path / 'model')  # re-exported over the same folder
    rb = evaluate(reidzoo.create_model(f'local-dir:{folder}', pretrained=True), synth, cache=cache_dir,
                  progress=False)
    fresh = evaluate(b, synth, progress=False)
    assert rb.mAP == pytest.approx(fresh.mAP) and ra.as_dict() != rb.as_dict()
    assert len(list(cache_dir.glob('*.safetensors'))) == 2


_WRITER = textwrap.dedent('''
    import sys, time, torch
    from reidzoo.eval.cache import FeatureCache
    cache_dir, who, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while time.time() < start_at:
        time.sleep(0.005)
    cache = FeatureCache(cache_dir, 'shared')
    for i in range(24):
        cache.add([f'{who}-{i}'], torch.full((1, 4), float(i)))
''')


def test_two_processes_on_one_cache_keep_every_row(tmp_path, subprocess_env):
    import time
    start_at = str(time.time() + 3.0)  # both start writing at the same moment
    procs = [subprocess.Popen([sys.executable, '-c', _WRITER, str(tmp_path), who, start_at], env=subprocess_env(),
                              stderr=subprocess.PIPE, text=True) for who in ('a', 'b')]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    cache = FeatureCache(tmp_path, 'shared')
    keys = [f'{w}-{i}' for w in 'ab' for i in range(24)]
    assert len(cache) == 48 and not cache.missing(keys)
    assert cache.get(['b-7'])[0].tolist() == [7.0] * 4
    assert not list(tmp_path.glob('.*.tmp'))


def test_leftover_temp_file_and_truncated_cache_are_recovered(tmp_path):
    cache = FeatureCache(tmp_path, 'ns')
    cache.add(['x', 'y'], torch.ones(2, 3))
    leftover = tmp_path / '.ns.safetensors.123abc.tmp'  # a writer killed mid-write leaves this
    leftover.write_bytes(b'half a file')
    data = cache.path.read_bytes()
    cache.path.write_bytes(data[:len(data) // 2])  # a truncated cache file (disk full, copied while written)
    with pytest.warns(UserWarning, match=r'ns\.safetensors is unreadable'):
        rebuilt = FeatureCache(tmp_path, 'ns')
    assert len(rebuilt) == 0 and not leftover.exists()
    rebuilt.add(['x'], torch.zeros(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert FeatureCache(tmp_path, 'ns').get(['x']).tolist() == [[0.0, 0.0, 0.0]]


def test_tracklet_key_names_a_missing_frame(tmp_path):
    frame = tmp_path / 'f1.jpg'
    frame.write_bytes(b'x')
    assert tracklet_key([str(frame)]) != tracklet_key([str(frame), str(frame)])
    with pytest.raises(FileNotFoundError, match='f2.jpg'):
        tracklet_key([str(frame), str(tmp_path / 'f2.jpg')])


def test_weights_id_of_a_model_without_state_dict_hashes_its_weights_file(tmp_path):
    import hashlib

    class Embedder:  # like reidzoo.deploy.OnnxEmbedder: the graph file holds the weights
        def __init__(self, path):
            self.path = path

    graph = tmp_path / 'm.onnx'
    graph.write_bytes(b'weights v1')
    assert weights_id(Embedder(graph)) == hashlib.sha256(b'weights v1').hexdigest()
    graph.write_bytes(b'weights v2')
    assert weights_id(Embedder(graph)) == hashlib.sha256(b'weights v2').hexdigest()
    with pytest.raises(TypeError, match='cache=None'):
        weights_id(object())
