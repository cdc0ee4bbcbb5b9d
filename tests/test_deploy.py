"""ONNX export verified with onnxruntime, the onnxruntime embedder, and ``reidzoo export-onnx``."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

import reidzoo  # noqa: E402
from reidzoo import deploy  # noqa: E402
from reidzoo.deploy import OnnxEmbedder, OnnxExportError, export_onnx  # noqa: E402
from reidzoo.models._base import VideoReIDModel  # noqa: E402

from test_model_contract import ARCHS, build, clips, rel  # noqa: E402


def _export_and_load(arch, tmp_path, **kwargs):
    model = build(arch, calibrated=True)
    path = export_onnx(model, tmp_path / f'{arch}.onnx', **kwargs)
    return model, OnnxEmbedder(path)


@pytest.mark.parametrize('arch', [a for a in ARCHS if not a.startswith('stmp')] +
                         [pytest.param('stmp_inception_v3', marks=pytest.mark.slow)])
def test_onnxruntime_equals_eager_at_two_batch_sizes(arch, tmp_path):
    model, embedder = _export_and_load(arch, tmp_path)
    for b in (1, 4):
        x = clips(model, b, seed=10 + b)
        with torch.no_grad():
            ref = model(x)
        out = embedder(x)
        assert out.shape == ref.shape == (b, model.num_features) and out.dtype == torch.float32
        # STMP's random Inception is ill-conditioned in float32 (PyTorch itself is ~5e-5 from float64 there)
        assert rel(out, ref) <= (1e-4 if arch.startswith('stmp') else deploy.DEFAULT_TOLERANCE), arch
    cfg = embedder.pretrained_cfg
    assert cfg['architecture'] == arch
    assert cfg['input_size'] == (3, *model.img_size) and cfg['num_frames'] == model.num_frames
    # STMP's graph takes exactly num_frames (its recurrence is unrolled): whole-tracklet sampling becomes dense clips
    assert cfg['test_sampling'] == ('dense' if arch.startswith('stmp') else model.pretrained_cfg['test_sampling'])
    for key in ('mean', 'std', 'distance', 'interpolation'):
        assert cfg[key] == (tuple(model.pretrained_cfg[key]) if isinstance(model.pretrained_cfg[key], (tuple, list))
                            else model.pretrained_cfg[key]), key
    assert embedder.num_features == model.num_features


def test_dynamic_frames_where_the_family_takes_any_length(tmp_path):
    model, embedder = _export_and_load('tp_resnet50', tmp_path)
    assert embedder.dynamic_frames
    x = clips(model, 2, t=7)
    with torch.no_grad():
        assert rel(embedder(x), model(x)) <= deploy.DEFAULT_TOLERANCE
    # a fixed-length family keeps its T and says so on another length
    model, embedder = _export_and_load('cosam_resnet50_tp', tmp_path)
    assert not embedder.dynamic_frames
    with pytest.raises(ValueError, match=r'exported for clips \(B, 4, 3, 64, 32\)'):
        embedder(clips(model, 1, t=5))


def test_export_is_atomic_when_verification_fails(tmp_path, monkeypatch):
    target = tmp_path / 'm.onnx'
    target.write_bytes(b'previous file')

    def disagree(*args, **kwargs):
        raise OnnxExportError('onnxruntime disagrees')
    monkeypatch.setattr(deploy, '_verify', disagree)
    with pytest.raises(OnnxExportError, match='disagrees'):
        export_onnx(build('tp_resnet50'), target)
    assert target.read_bytes() == b'previous file'  # never replaced by an unverified file
    assert [p.name for p in tmp_path.iterdir()] == ['m.onnx']  # no temp file left behind


class _DataDependent(VideoReIDModel):
    """A clip model whose control flow depends on the pixel values: no static graph exists."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.num_features, self.num_classes, self.classifier = 4, 0, nn.Identity()
        self.img_size, self.num_frames = (8, 8), 2
        self.pretrained_cfg = {'architecture': 'datadep_net', 'input_size': (3, 8, 8), 'num_frames': 2}

    def forward_features(self, x, intermediates=None):
        return x.mean(dim=(1, 3, 4))

    def forward_head(self, x, pre_logits=False):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def test_a_model_that_cannot_export_is_named_with_the_reason(tmp_path):
    with pytest.raises(OnnxExportError, match=r'datadep_net \(_DataDependent\) cannot be exported to ONNX: .+'):
        export_onnx(_DataDependent(), tmp_path / 'x.onnx')
    assert not (tmp_path / 'x.onnx').exists()


def test_embedder_refuses_a_file_without_reidzoo_metadata(tmp_path):
    path = tmp_path / 'plain.onnx'
    torch.onnx.export(nn.Linear(3, 2).eval(), (torch.zeros(1, 3),), path, dynamo=True, external_data=False)
    with pytest.raises(ValueError, match='no reidzoo cfg in its metadata'):
        OnnxEmbedder(path)


def test_embedder_works_with_extract_features(tmp_path):
    """The model surface extract_features uses (cfg, eval, to, parameters, train): embeddings equal the torch path."""
    from PIL import Image
    from reidzoo.eval.extract import extract_features
    model, embedder = _export_and_load('tp_resnet50', tmp_path)
    tracklets = []
    g = torch.Generator().manual_seed(0)
    for i, n in enumerate((3, 6)):
        folder = tmp_path / f'track{i}'
        folder.mkdir()
        for j in range(n):
            pixels = (torch.rand(40, 20, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f'{j:04d}.jpg')
        tracklets.append(sorted(str(p) for p in folder.iterdir()))
    ref = extract_features(model, tracklets, progress=False)
    out = extract_features(embedder, tracklets, progress=False)
    assert out.shape == ref.shape == (2, model.num_features)
    assert rel(out, ref) <= deploy.DEFAULT_TOLERANCE


def test_cli_export_onnx(tmp_path, capsys):
    from reidzoo.cli import main
    out = tmp_path / 'cli.onnx'
    kwargs = json.dumps({'backbone': 'test_resnet', 'img_size': [64, 32]})
    assert main(['export-onnx', 'ta_resnet50', '--model-kwargs', kwargs, '--out', str(out)]) == 0
    assert 'verified with onnxruntime' in capsys.readouterr().out
    embedder = OnnxEmbedder(out)
    assert embedder.pretrained_cfg['architecture'] == 'ta_resnet50'
    assert embedder.pretrained_cfg['input_size'] == (3, 64, 32)
    # named weights that do not exist: one clear error, nothing written
    assert main(['export-onnx', 'ta_resnet50.nosuchtag', '--out', str(tmp_path / 'y.onnx')]) == 1
    assert not (tmp_path / 'y.onnx').exists()
    assert 'reidzoo export-onnx: error:' in capsys.readouterr().err
