"""The builder: the cfg describes the model that was built, one cfg resolver, checkpoint_path= for every family,
weight-repo semantics (timm's), local-dir integrity, config.json checks and reproducible weight files."""
from __future__ import annotations

import json
import logging
from functools import lru_cache

import pytest
import torch
from safetensors.torch import save_file

import reidzoo
from reidzoo.hub import WeightsIntegrityError, save_pretrained, sha256_file
from reidzoo.models._builder import classifier_prefix
from reidzoo.spec.model_cfg import (
    DEFAULT_TEST_SAMPLING, CfgError, ModelCfg, check_config_json, merge_model_cfg, resolve_model_cfg,
)

# one small build of every family (tiny trunks, small frames)
FAMILIES = {
    'tp_resnet50': dict(backbone='test_resnet'),
    'ta_resnet50': dict(backbone='test_resnet', img_size=(64, 32)),
    'rnn_resnet50': dict(backbone='test_resnet'),
    'cosam_resnet50_tp': dict(backbone='resnet18', img_size=(64, 32)),
    'sinet_resnet50': dict(backbone='resnet18', img_size=(128, 64), idm_after=(0, 1), sbm_after=(0, 1, 1)),
    'sta_resnet50': dict(backbone='test_resnet', img_size=(128, 64)),
    'stmp_inception_v3': dict(img_size=(139, 139), aux_logits=False),
    'cstnet_resnet50': dict(backbone='test_resnet', img_size=(128, 64)),
}


def _build(arch: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return reidzoo.create_model(arch, **{**FAMILIES[arch], **kwargs})


# --- the cfg describes the built model ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch', sorted(FAMILIES))
def test_cfg_input_size_and_num_frames_follow_the_model_arguments(arch):
    """create_model(..., img_size=(64, 32)) kept input_size (3, 256, 128) in the cfg (issue 10 item 8)."""
    size = {'stmp_inception_v3': (160, 160), 'sinet_resnet50': (128, 64), 'sta_resnet50': (128, 64)}.get(arch, (96, 48))
    frames = 8
    model = _build(arch, img_size=size, num_frames=frames)
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, *size) and model.img_size == size
    assert cfg['num_frames'] == frames == model.num_frames
    data = resolve_model_cfg(model)
    assert data.input_size == (3, *size) and data.img_size == size and data.num_frames == frames
    assert cfg['model_args']['img_size'] == size and cfg['model_args']['backbone'] == model.pretrained_cfg[
        'model_args'].get('backbone')


def test_cfg_follows_the_backbone_and_the_overlay():
    model = reidzoo.create_model('tp_resnet50', backbone='resnet18')
    assert model.pretrained_cfg['model_args']['backbone'] == 'resnet18' and model.num_features == 512
    # a caller's cfg size (as the trainer passes it) builds the model for those frames: TA's attention conv is sized
    # by the map, so a model built for 256x128 would reject 64x32 clips
    ta = reidzoo.create_model('ta_resnet50', backbone='test_resnet',
                              pretrained_cfg_overlay=dict(input_size=(3, 64, 32), num_frames=6))
    assert ta.img_size == (64, 32) and ta.pretrained_cfg['input_size'] == (3, 64, 32)
    assert ta.num_frames == 6 and ta.pretrained_cfg['num_frames'] == 6
    with torch.no_grad():
        assert ta.eval()(torch.randn(2, 6, 3, 64, 32)).shape == (2, ta.num_features)


def test_one_resolver_with_caller_over_weights_over_architecture():
    arch = {'input_size': (3, 256, 128), 'num_frames': 4, 'mean': (0.5,) * 3, 'std': (0.5,) * 3,
            'test_sampling': 'all', 'distance': 'cosine'}
    weights = {'num_frames': 8, 'distance': 'euclidean', 'mean': [0.1, 0.2, 0.3]}
    caller = {'distance': 'sqeuclidean', 'test_sampling': None}  # None: not given
    merged = merge_model_cfg(arch, weights, caller)
    assert merged['num_frames'] == 8 and merged['distance'] == 'sqeuclidean' and merged['test_sampling'] == 'all'
    assert merged['mean'] == (0.1, 0.2, 0.3)  # JSON lists come back as tuples
    assert arch['num_frames'] == 4 and weights['mean'] == [0.1, 0.2, 0.3]  # inputs untouched
    # one default test sampling, used wherever an architecture leaves it unstated
    bare = {k: v for k, v in arch.items() if k != 'test_sampling'}
    assert ModelCfg.from_dict(bare).test_sampling == DEFAULT_TEST_SAMPLING == 'dense'
    model = reidzoo.create_model('sta_resnet50', backbone='test_resnet')
    assert resolve_model_cfg(model).test_sampling == 'all'  # STA's own
    assert resolve_model_cfg(model, test_sampling='dense', num_frames=2).num_frames == 2
    with pytest.raises(TypeError, match='seq_len'):
        resolve_model_cfg(model, seq_len=8)
    with pytest.raises(CfgError, match=r"'num_frames' is 'four' \(str\), expected an integer"):
        ModelCfg.from_dict(dict(arch, num_frames='four'))


def test_every_architecture_default_cfg_is_a_valid_model_cfg():
    for name in reidzoo.list_models():
        data = ModelCfg.from_dict(reidzoo.models.get_arch_default_cfg(name), name)
        assert data.input_size[0] == 3 and data.num_frames >= 1, name
        assert data.distance in ('cosine', 'euclidean', 'sqeuclidean'), name


# --- checkpoint_path= for every family ---------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _checkpoint(arch: str, num_classes: int, tmp: str) -> tuple[str, dict[str, torch.Tensor]]:
    model = _build(arch, seed=1, num_classes=num_classes)
    with torch.no_grad():  # non-trivial BN statistics, so buffers are compared too
        for buf in model.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    path = f'{tmp}/{arch}-{num_classes}.safetensors'
    save_file(state, path)
    return path, state


@pytest.mark.parametrize('arch, saved, wanted', [
    *[(arch, 5, wanted) for arch in sorted(FAMILIES) for wanted in (0, 5, 3)],
    ('tp_resnet50', 0, 5), ('cstnet_resnet50', 0, 5),  # weights without a classifier, model with one
])
def test_checkpoint_path_for_every_family_and_class_count(arch, saved, wanted, tmp_path_factory):
    """The loader looked only for classifier.weight, so CSTNet (classifier.0/.3) and STMP (classifier.fc1/.fc)
    failed unless num_classes equalled the checkpoint's (issue 10 item 10)."""
    path, state = _checkpoint(arch, saved, str(tmp_path_factory.getbasetemp()))
    model = _build(arch, seed=2, num_classes=wanted, checkpoint_path=path)
    prefix = classifier_prefix(model)
    got = model.state_dict()
    body = [k for k in state if not k.startswith(prefix)]
    assert body and set(body) == {k for k in got if not k.startswith(prefix)}
    for k in body:
        assert torch.equal(got[k], state[k]), k
    head = {k: v for k, v in got.items() if k.startswith(prefix)}
    assert model.num_classes == wanted and bool(head) == (wanted > 0)
    if saved == wanted:
        assert all(torch.equal(v, state[k]) for k, v in head.items())
    assert model.pretrained_cfg['file'] == path and model.pretrained_cfg['sha256'] == sha256_file(path)


# --- weight repos: timm semantics, integrity, config.json --------------------------------------------------------
@pytest.fixture
def saved_repo(tmp_path):
    model = _build('tp_resnet50', seed=3, num_classes=7)
    return save_pretrained(model, tmp_path / 'repo', dataset='synthvid'), model


def test_weight_repo_builds_architecture_and_classifier_but_loads_only_with_pretrained(saved_repo, caplog):
    """timm semantics: the repo's config.json decides the architecture and the classifier size; the weights load
    only with pretrained=True, and a line says so when they are not (issue 10 item 14)."""
    folder, source = saved_repo
    with caplog.at_level(logging.WARNING, logger='reidzoo'):
        fresh = reidzoo.create_model(f'local-dir:{folder}')
    assert fresh.num_classes == 7 and fresh.num_features == 96
    assert any('pretrained=False' in r.getMessage() and str(folder) in r.getMessage() for r in caplog.records)
    assert not torch.equal(fresh.classifier.weight, source.classifier.weight)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='reidzoo'):
        loaded = reidzoo.create_model(f'local-dir:{folder}', pretrained=True)
    assert not [r for r in caplog.records if 'pretrained=False' in r.getMessage()]
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    resized = reidzoo.create_model(f'local-dir:{folder}', pretrained=True, num_classes=2)
    assert resized.classifier.weight.shape == (2, 96)


def test_local_dir_tampered_weights_are_refused(saved_repo):
    """local-dir: loaded a replaced model.safetensors although config.json records its sha256 (issue 10 item 3)."""
    folder, _ = saved_repo
    weights = folder / 'model.safetensors'
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one tensor byte changed
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=rf'(?s){weights}.*sha256 mismatch.*write the folder again'):
        reidzoo.create_model(f'local-dir:{folder}', pretrained=True)
    weights.write_bytes(bytes(data[:len(data) // 2]))
    with pytest.raises(WeightsIntegrityError, match=rf'{weights}.*truncated .* expected {len(data)}'):
        reidzoo.create_model(f'local-dir:{folder}', pretrained=True)


def test_truncated_safetensors_file_is_named(saved_repo, tmp_path):
    """checkpoint_path= on a truncated file raised a bare SafetensorError (issue 10 item 11)."""
    folder, _ = saved_repo
    cut = tmp_path / 'cut.safetensors'
    cut.write_bytes((folder / 'model.safetensors').read_bytes()[:5000])
    with pytest.raises(ValueError, match=rf'{cut} is not a readable safetensors file .*truncated or corrupt'):
        reidzoo.create_model('tp_resnet50', backbone='test_resnet', checkpoint_path=cut)


@pytest.mark.parametrize('edit, message', [
    (lambda c: c.update(colour='blue'), r"unknown key 'colour'"),
    (lambda c: c['pretrained_cfg'].update(num_frames='four'), r"pretrained_cfg: 'num_frames' is 'four' \(str\)"),
    (lambda c: c['pretrained_cfg'].update(input_size=[3, 64]), r"'input_size' is \[3, 64\] .*list of 3 integers"),
    (lambda c: c['pretrained_cfg'].update(sampling='all'), r"pretrained_cfg: unknown key 'sampling'"),
    (lambda c: c.update(num_classes='7'), r"'num_classes' is '7' \(str\), expected an integer"),
    (lambda c: c['model_args'].update(img_size=[64]), r"model_args: 'img_size' is \[64\]"),
])
def test_bad_config_json_names_the_key(saved_repo, edit, message):
    """A wrong key in a repo's config.json gave a TypeError deep in the model (issue 10 item 11)."""
    folder, _ = saved_repo
    config = json.loads((folder / 'config.json').read_text())
    edit(config)
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CfgError, match=message) as info:
        reidzoo.create_model(f'local-dir:{folder}')
    assert str(folder / 'config.json') in str(info.value)


def test_unknown_model_arg_in_config_json_names_the_key(saved_repo):
    folder, _ = saved_repo
    config = json.loads((folder / 'config.json').read_text())
    config['model_args']['depth_multiplier'] = 2
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(TypeError, match=r"tp_resnet50 has no argument 'depth_multiplier' \(from \"model_args\" of "
                                        r"config.json of local-dir:"):
        reidzoo.create_model(f'local-dir:{folder}')


def test_saved_config_json_passes_its_own_check(saved_repo):
    folder, _ = saved_repo
    check_config_json(json.loads((folder / 'config.json').read_text()), 'config.json')


# --- reproducible files --------------------------------------------------------------------------------------------
def test_exporting_the_same_weights_twice_gives_one_sha256(tmp_path):
    """safetensors wrote __metadata__ in hash-map order, which changes from one save to the next, so the same
    weights got different sha256 (issue 10 item 15): five saves must give one file."""
    model = _build('tp_resnet50', num_classes=3)
    folders = [save_pretrained(model, tmp_path / str(i)) for i in range(5)]
    assert len({sha256_file(f / 'model.safetensors') for f in folders}) == 1
    assert len({(f / 'config.json').read_text() for f in folders}) == 1
    from safetensors import safe_open
    with safe_open(str(folders[0] / 'model.safetensors'), 'pt') as f:  # still a valid safetensors file
        assert f.metadata() == {'format': 'pt', 'reidzoo.arch': 'tp_resnet50', 'reidzoo.version': reidzoo.__version__}
        assert set(f.keys()) == set(model.state_dict())
    reloaded = reidzoo.create_model(f'local-dir:{folders[0]}', pretrained=True)
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in model.state_dict().items())
