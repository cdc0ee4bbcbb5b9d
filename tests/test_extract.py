"""Tracklet embedding: each model's own test sampling, clip batching, sharding and the extract CLI."""
import json
import shutil

import numpy as np
import pytest
import torch

import reidzoo
from reidzoo.data import build_dataset
from reidzoo.data.sampling import test_clip_indices
from reidzoo.data.transforms import build_clip_transform
from reidzoo.data.io import load_frame
from reidzoo.eval.extract import extract, extract_features, list_frames


@pytest.fixture(scope='module')
def tiny_synthvid(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth') / 'mars'
    return build_dataset('synthvid', str(root), layout='mars', num_ids=8, seed=3, frame_size=(32, 16),
                         lengths=(3, 11, 6))


@pytest.fixture(scope='module')
def tiny_model():
    torch.manual_seed(0)
    return reidzoo.create_model('tp_resnet50', backbone='test_resnet').eval()


def _reference_embedding(model, frames, sampling, seq_len):
    """Plain reference: embed each test clip alone, then average."""
    transform = build_clip_transform(model.pretrained_cfg, train=False)
    clips = test_clip_indices(len(frames), sampling, seq_len)
    embs = [model(transform([load_frame(frames[i]) for i in clip])[None]) for clip in clips]
    return torch.cat(embs).mean(0)


@pytest.mark.parametrize('sampling', ['dense', 'interleaved', 'all'])
def test_tracklet_embedding_is_mean_of_clip_embeddings(tiny_synthvid, tiny_model, sampling):
    tracklets = tiny_synthvid.query[:5]
    feats = extract_features(tiny_model, tracklets, test_sampling=sampling, seq_len=4, batch_size=3, progress=False)
    assert feats.shape == (5, tiny_model.num_features)
    with torch.no_grad():
        for i, t in enumerate(tracklets):
            ref = _reference_embedding(tiny_model, t.frames, sampling, 4)
            torch.testing.assert_close(feats[i], ref, rtol=1e-4, atol=1e-5)


def test_sharded_extraction_covers_every_tracklet_once(tiny_synthvid, tiny_model):
    tracklets = tiny_synthvid.gallery[:7]
    full = extract_features(tiny_model, tracklets, progress=False)
    shards = [extract_features(tiny_model, tracklets, progress=False, rank=r, world_size=3) for r in range(3)]
    merged = torch.empty_like(full)
    for r, part in enumerate(shards):
        merged[r::3] = part
    torch.testing.assert_close(merged, full)


def _one_folder_per_tracklet(tracklets, root):
    """Copy each tracklet's frames into a folder of its own (MARS keeps an identity's tracklets in one folder)."""
    import shutil
    from pathlib import Path
    dirs = []
    for i, t in enumerate(tracklets):
        folder = Path(root) / f'track_{i}'
        folder.mkdir(parents=True)
        for frame in t.frames:
            shutil.copy(frame, folder)
        dirs.append(str(folder))
    return dirs


def test_extract_cli_writes_names_and_embeddings(tiny_synthvid, tmp_path, capsys):
    from safetensors import safe_open
    from reidzoo.cli import main
    dirs = _one_folder_per_tracklet(tiny_synthvid.query[:3], tmp_path / 'tracks')
    out = tmp_path / 'emb.safetensors'
    assert main(['extract', 'tp_resnet50', *dirs, '--out', str(out), '--no-pretrained',
                 '--model-kwargs', json.dumps({'backbone': 'test_resnet'})]) == 0
    with safe_open(str(out), 'pt') as f:
        emb = f.get_tensor('embeddings')
        meta = json.loads(f.metadata()['reidzoo'])
    assert emb.shape[0] == len(dirs) and meta['tracklets'] == dirs
    assert meta['test_sampling'] == 'dense'


def test_extract_cli_refuses_an_identity_folder_mixing_cameras(tiny_synthvid, tmp_path, capsys):
    from pathlib import Path
    from reidzoo.cli import main
    identity = next(str(Path(t.frames[0]).parent) for t in tiny_synthvid.query
                    if sum(str(Path(u.frames[0]).parent) == str(Path(t.frames[0]).parent)
                           for u in tiny_synthvid.query + tiny_synthvid.gallery) > 1)
    assert main(['extract', 'tp_resnet50', identity, '--out', str(tmp_path / 'e.npy'), '--no-pretrained',
                 '--model-kwargs', json.dumps({'backbone': 'test_resnet'})]) == 1
    err = capsys.readouterr().err
    assert 'reidzoo extract: error:' in err and 'tracklets by their names' in err and len(err.strip().splitlines()) == 1


def test_extract_cli_with_onnx_equals_the_torch_model(tiny_synthvid, tiny_model, tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    from reidzoo.cli import main
    from reidzoo.deploy import export_onnx
    onnx_file = export_onnx(tiny_model, tmp_path / 'm.onnx')
    dirs = _one_folder_per_tracklet(tiny_synthvid.query[:2], tmp_path / 'tracks')
    assert main(['extract', '--onnx', str(onnx_file), *dirs, '--out', str(tmp_path / 'e.npy')]) == 0
    ours = np.load(tmp_path / 'e.npy')
    ref = extract_features(tiny_model, [list_frames(d) for d in dirs], progress=False).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_extract_npy_output_and_numeric_frame_order(tmp_path, tiny_model):
    from PIL import Image
    folder = tmp_path / 'track'
    folder.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((32, 16, 3), 20 * i, np.uint8)).save(folder / f'f{i}.jpg')
    assert [p.split('/')[-1] for p in list_frames(folder)] == ['f1.jpg', 'f2.jpg', 'f10.jpg']
    out = extract(tiny_model, [folder], tmp_path / 'emb.npy', progress=False)
    assert np.load(out).shape == (1, tiny_model.num_features)
    assert json.loads((tmp_path / 'emb.json').read_text())['tracklets'] == [str(folder)]


def test_empty_tracklet_folder_is_a_clear_error(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='holds no frames'):
        list_frames(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        list_frames(tmp_path / 'nope')
    (tmp_path / 'frame.jpg').write_bytes(b'')
    with pytest.raises(NotADirectoryError, match='is a file'):  # not "folder does not exist"
        list_frames(tmp_path / 'frame.jpg')


def test_a_cfg_without_test_sampling_records_the_sampling_it_used(tiny_synthvid, tmp_path):
    """One default for test sampling (the spec's): the file's metadata names the sampling the embedding used."""
    from safetensors import safe_open
    from reidzoo.spec.model_cfg import DEFAULT_TEST_SAMPLING
    torch.manual_seed(0)
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet').eval()
    del model.pretrained_cfg['test_sampling']
    one = tmp_path / 'one'
    one.mkdir()
    for f in tiny_synthvid.query[0].frames:  # a folder holding exactly one tracklet's frames
        shutil.copy(f, one)
    out = extract(model, [one], tmp_path / 'emb.safetensors')
    with safe_open(str(out), 'pt') as f:
        meta = json.loads(f.metadata()['reidzoo'])
    assert meta['test_sampling'] == DEFAULT_TEST_SAMPLING
    expected = extract_features(model, [list_frames(one)], test_sampling=DEFAULT_TEST_SAMPLING, progress=False)
    with safe_open(str(out), 'pt') as f:
        torch.testing.assert_close(f.get_tensor('embeddings'), expected)
