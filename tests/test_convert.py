"""`reidzoo convert`: safe checkpoint loading, unwrapping, and the baist/SINet key mapping.

The authors' checkpoints (Google Drive) are not reachable here, so the tests build random state dicts in the layout
the authors' code writes, from ``official-implementations.md`` §1.4: torchvision ResNet-50 names, inflated
``(O, I, 1, k, k)`` conv weights with biases, plug-ins appended inside the layer ``nn.Sequential``s, head keys.
"""
import argparse
import io
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reidzoo
from reidzoo.cli import main as cli_main
from reidzoo.convert import (
    RELEASED_CHECKPOINTS, build_converted_model, convert_official_checkpoint, load_official_checkpoint,
    unwrap_state_dict,
)
from reidzoo.models._builder import StateDictMismatchError
from reidzoo.models.sinet import convert_official_state_dict, official_model_args

PLUGINS = {  # arch -> (layer2 blocks followed by an IDM, layer3 blocks followed by an SBM, InfoNCE projection)
    'sinet': ((1, 3), (1, 3, 5), True),
    'sbnet': ((), (1, 3, 5), True),
    'idnet': ((1, 3), (), False),
}


def _bn(prefix, n, g):
    return {f'{prefix}.weight': torch.rand(n, generator=g) + 0.5, f'{prefix}.bias': torch.randn(n, generator=g) * 0.1,
            f'{prefix}.running_mean': torch.randn(n, generator=g) * 0.1,
            f'{prefix}.running_var': torch.rand(n, generator=g) + 0.5,
            f'{prefix}.num_batches_tracked': torch.tensor(1000)}


def _conv(prefix, out_chs, in_chs, k, g, dims=5):
    shape = (out_chs, in_chs, 1, k, k) if dims == 5 else (out_chs, in_chs) + (1,) * (dims - 2)
    return {f'{prefix}.weight': torch.randn(shape, generator=g) * (2 / (in_chs * k * k)) ** 0.5,
            f'{prefix}.bias': torch.randn(out_chs, generator=g) * 0.1}


def official_state_dict(arch='sinet', num_classes=625, t=4, reduction=16, seed=0):
    """A random state dict with the key layout and shapes of baist/SINet's ``_ResNet50`` (sinet/sbnet/idnet)."""
    g = torch.Generator().manual_seed(seed)
    idm_after, sbm_after, projection = PLUGINS[arch]
    sd = {**_conv('conv1', 64, 3, 7, g), **_bn('bn1', 64, g)}
    in_chs = 64
    for layer, (depth, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        seq = 0
        for block in range(depth):
            p = f'layer{layer}.{seq}'
            sd.update({**_conv(f'{p}.conv1', width, in_chs, 1, g), **_bn(f'{p}.bn1', width, g),
                       **_conv(f'{p}.conv2', width, width, 3, g), **_bn(f'{p}.bn2', width, g),
                       **_conv(f'{p}.conv3', 4 * width, width, 1, g), **_bn(f'{p}.bn3', 4 * width, g)})
            if block == 0:
                sd.update({**_conv(f'{p}.downsample.0', 4 * width, in_chs, 1, g),
                           **_bn(f'{p}.downsample.1', 4 * width, g)})
            in_chs = 4 * width
            seq += 1
            if layer == 2 and block in idm_after:  # IDM(in_dim=512, factor, t): thw = t * 32 * 16
                p, m, c = f'layer2.{seq}', t * 32 * 16, 512
                sd.update({**_conv(f'{p}.thw_reduction.0', m // reduction, m, 1, g, dims=4),
                           **_bn(f'{p}.thw_reduction.1', m // reduction, g),
                           **_conv(f'{p}.thw_expansion.0', m, m // reduction, 1, g, dims=4),
                           **_conv(f'{p}.chl_reduction.0', c // reduction, c, 1, g),
                           **_bn(f'{p}.chl_reduction.1', c // reduction, g),
                           **_conv(f'{p}.chl_expansion.0', c, c // reduction, 1, g)})
                seq += 1
            if layer == 3 and block in sbm_after:  # SBM(in_dim=1024), k=3, inter 256
                p = f'layer3.{seq}'
                sd.update({**_conv(f'{p}.kernel.0', 9, 1024, 1, g), **_bn(f'{p}.kernel.1', 9, g),
                           **_conv(f'{p}.se.1', 256, 1024, 1, g), **_conv(f'{p}.se.3', 1024, 256, 1, g)})
                seq += 1
    sd.update(_bn('bn', 2048, g))
    sd.update({'classifier.weight': torch.randn(num_classes, 2048, generator=g) * 1e-3,
               'classifier.bias': torch.zeros(num_classes)})
    if projection:
        sd.update(_conv('projection', 2048, 2048, 1, g, dims=3))
    return sd


@pytest.fixture(scope='module')
def sinet_official():
    return official_state_dict('sinet')


@pytest.fixture(scope='module')
def sinet_converted(sinet_official):
    return convert_official_state_dict(sinet_official)


@pytest.fixture(scope='module')
def sinet_model(sinet_converted):
    return build_converted_model('sinet', sinet_converted).eval()


def test_generator_has_the_documented_key_counts():
    # official-implementations.md §1.1: 449 / 413 / 414 state_dict keys, 53 of them conv biases in the backbone
    counts = {arch: len(official_state_dict(arch)) for arch in PLUGINS}
    assert counts == {'sinet': 449, 'sbnet': 413, 'idnet': 414}


@pytest.mark.parametrize('arch', ['sbnet', 'idnet'])
def test_convert_loads_strictly(arch):
    official = official_state_dict(arch)
    converted = convert_official_state_dict(official)
    assert len(converted) == len(official) - 53  # the folded conv biases
    model = build_converted_model('sinet', converted)
    assert model.pretrained_cfg['architecture'] == f'{arch}_resnet50'
    assert model.num_classes == 625
    own = model.state_dict()
    assert set(own) == set(converted) and all(own[k].shape == v.shape for k, v in converted.items())


def test_sinet_loads_strictly_and_embeds(sinet_official, sinet_converted, sinet_model):
    assert len(sinet_converted) == 449 - 53
    assert sinet_model.pretrained_cfg['architecture'] == 'sinet_resnet50'
    assert set(sinet_model.state_dict()) == set(sinet_converted)
    model = reidzoo.create_model('sinet_resnet50', num_classes=625)
    model.load_state_dict(sinet_converted, strict=True)
    with torch.no_grad():
        emb = sinet_model(torch.randn(1, 4, 3, 256, 128))
    assert emb.shape == (1, 2048) and torch.isfinite(emb).all()


def test_key_mapping_is_pinned(sinet_official, sinet_converted):
    o, c = sinet_official, sinet_converted
    same = {  # authors' key -> ours, value unchanged (2-D keys) or squeezed (inflated convs)
        'layer2.2.thw_reduction.0.weight': 'idm.0.thw_reduction.0.weight',
        'layer2.5.chl_reduction.0.weight': 'idm.1.chl_reduction.0.weight',
        'layer2.5.chl_expansion.0.bias': 'idm.1.chl_expansion.0.bias',
        'layer3.8.kernel.0.weight': 'sbm.2.kernel.0.weight',
        'layer3.2.kernel.1.running_var': 'sbm.0.kernel.1.running_var',
        'layer3.5.se.1.weight': 'sbm.1.se.fc1.weight',
        'layer3.5.se.3.bias': 'sbm.1.se.fc2.bias',
        'layer3.7.conv2.weight': 'backbone.layer3.5.conv2.weight',
        'layer2.4.bn3.weight': 'backbone.layer2.3.bn3.weight',
        'layer2.3.conv1.weight': 'backbone.layer2.2.conv1.weight',
        'layer4.0.downsample.0.weight': 'backbone.layer4.0.downsample.0.weight',
        'conv1.weight': 'backbone.conv1.weight',
        'bn.running_var': 'bn.running_var',
        'projection.weight': 'projection.weight',
        'classifier.weight': 'classifier.weight',
    }
    for old, new in same.items():
        expected = o[old].squeeze(2) if o[old].dim() == 5 else o[old]
        assert torch.equal(c[new], expected), (old, new)
    assert c['backbone.conv1.weight'].shape == (64, 3, 7, 7)
    assert c['idm.1.chl_reduction.0.weight'].shape == (32, 512, 1, 1)
    assert c['projection.weight'].shape == (2048, 2048, 1)
    # conv biases are folded into the BN that follows them ...
    torch.testing.assert_close(c['backbone.layer3.5.bn2.running_mean'],
                               o['layer3.7.bn2.running_mean'] - o['layer3.7.conv2.bias'])
    torch.testing.assert_close(c['backbone.layer1.0.downsample.1.running_mean'],
                               o['layer1.0.downsample.1.running_mean'] - o['layer1.0.downsample.0.bias'])
    torch.testing.assert_close(c['backbone.bn1.running_mean'], o['bn1.running_mean'] - o['conv1.bias'])
    assert not [k for k in c if k.startswith('backbone.') and '.conv' in k and k.endswith('.bias')]
    # ... the plug-ins keep theirs (the modules are built with bias=True, as the authors')
    assert torch.equal(c['sbm.0.kernel.0.bias'], o['layer3.2.kernel.0.bias'])


def test_bias_folding_is_exact_in_eval(sinet_official, sinet_model):
    """The authors' conv3d(+bias) -> BN equals our conv2d -> BN with the folded running mean."""
    o, bb = sinet_official, sinet_model.backbone
    x = torch.randn(2, 3, 4, 40, 24)  # (b, c, t, h, w), the authors' layout

    def official(prefix, bn, inp, stride, padding):
        y = F.conv3d(inp, o[f'{prefix}.weight'], o[f'{prefix}.bias'], stride=(1, stride, stride),
                     padding=(0, padding, padding))
        return F.batch_norm(y, o[f'{bn}.running_mean'], o[f'{bn}.running_var'], o[f'{bn}.weight'], o[f'{bn}.bias'],
                            training=False)

    ref = official('conv1', 'bn1', x, 2, 3)
    ours = bb.bn1(bb.conv1(x.transpose(1, 2).flatten(0, 1))).unflatten(0, (2, 4)).transpose(1, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    y = torch.randn(2, 256, 4, 8, 6)
    ref = official('layer3.7.conv2', 'layer3.7.bn2', y, 1, 1)
    blk = bb.layer3[5]
    ours = blk.bn2(blk.conv2(y.transpose(1, 2).flatten(0, 1))).unflatten(0, (2, 4)).transpose(1, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_wrong_shapes_name_the_key(sinet_official):
    bad = dict(sinet_official)
    bad['layer3.2.kernel.0.weight'] = torch.zeros(9, 512, 1, 1, 1)
    with pytest.raises(StateDictMismatchError, match=r'sbm\.0\.kernel\.0\.weight: checkpoint \(9, 512, 1, 1\) vs model '
                                                     r'\(9, 1024, 1, 1\)'):
        build_converted_model('sinet', convert_official_state_dict(bad))
    bad = dict(sinet_official)
    bad['layer2.0.conv2.weight'] = torch.zeros(128, 128, 3, 3, 3)
    with pytest.raises(ValueError, match=r'layer2\.0\.conv2\.weight.*\(128, 128, 3, 3, 3\)'):
        convert_official_state_dict(bad)
    bad = dict(sinet_official)
    bad['layer1.1.conv3.bias'] = torch.zeros(64)
    with pytest.raises(ValueError, match=r'layer1\.1\.conv3\.bias has shape \(64,\).*\(256,\)'):
        convert_official_state_dict(bad)


def test_architecture_checks(sinet_official):
    sbnet = official_state_dict('sbnet')
    with pytest.raises(ValueError, match='sbnet_resnet50'):
        convert_official_state_dict(sbnet, 'sinet_resnet50')
    assert set(convert_official_state_dict(sbnet, 'sbnet')) == set(convert_official_state_dict(sbnet))
    with pytest.raises(ValueError, match='Unknown SINet-family'):
        convert_official_state_dict(sbnet, 'sanet')
    # SANet: StatisticAttentionBlocks where IDNet has its IDMs (layer2 seq 2 and 5)
    sanet = {k: v for k, v in official_state_dict('idnet').items() if not k.startswith(('layer2.2.', 'layer2.5.'))}
    sanet.update({f'layer2.{i}.down_channel.weight': torch.zeros(128, 512, 1, 1, 1) for i in (2, 5)})
    with pytest.raises(ValueError, match='SANet'):
        convert_official_state_dict(sanet)
    with pytest.raises(ValueError, match='not part of a SINet'):
        convert_official_state_dict({**sinet_official, 'fc.weight': torch.zeros(10, 2048)})


def test_model_args_from_the_checkpoint():
    official = official_state_dict('idnet', num_classes=11, t=8, reduction=4)
    arch, args = official_model_args(official)
    assert arch == 'idnet_resnet50'
    assert args == {'num_classes': 11, 'frame_projection': False, 'num_frames': 8, 'idm_reduction': 4}
    model = build_converted_model('sinet', convert_official_state_dict(official))
    assert model.supported_num_frames == (8,) and model.num_classes == 11


def test_unwrap_state_dict():
    w = torch.ones(3)
    assert unwrap_state_dict({'state_dict': {'a.weight': w}, 'rank1': np.float64(0.8), 'epoch': 150}) == {'a.weight': w}
    assert unwrap_state_dict({'module.a.weight': w, 'module.b': w}) == {'a.weight': w, 'b': w}
    # STMP: DataParallel(model) plus a separately wrapped model.feature -> a duplicate backbone under feature.module.
    stmp = {'module.feature.feature.conv.weight': w, 'feature.module.feature.conv.weight': w.clone(),
            'module.classifier.0.weight': w}
    assert set(unwrap_state_dict(stmp)) == {'feature.feature.conv.weight', 'classifier.0.weight'}
    assert set(unwrap_state_dict({'head.module.fc.weight': w})) == {'head.fc.weight'}
    with pytest.raises(ValueError, match='not tensors'):
        unwrap_state_dict({'weights': w, 'rank1': 0.5})


def _save_legacy_numpy1(obj) -> bytes:
    """A checkpoint as numpy 1.x writes it: the scalar global is ``numpy.core.multiarray.scalar``."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    assert raw.count(b'cnumpy._core.multiarray\nscalar\n') == 1
    return raw.replace(b'cnumpy._core.multiarray\nscalar\n', b'cnumpy.core.multiarray\nscalar\n')


def test_numpy_scalar_checkpoint_loads_with_the_allow_list(tmp_path):
    sd = {'conv1.weight': torch.randn(4, 3, 1, 7, 7)}
    path = tmp_path / 'checkpoint_ep150.pth.tar'
    torch.save({'state_dict': sd, 'rank1': np.float64(0.909), 'epoch': 150}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # why the allow-list is needed (torch >= 2.6 default)
    ckpt = load_official_checkpoint(path)
    assert ckpt['epoch'] == 150 and float(ckpt['rank1']) == pytest.approx(0.909)
    assert torch.equal(ckpt['state_dict']['conv1.weight'], sd['conv1.weight'])
    legacy = tmp_path / 'numpy1.pth.tar'
    legacy.write_bytes(_save_legacy_numpy1({'state_dict': sd, 'rank1': np.float64(0.5), 'epoch': 10}))
    assert float(load_official_checkpoint(legacy)['rank1']) == 0.5


def test_other_globals_are_refused(tmp_path):
    path = tmp_path / 'with_args.pth.tar'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'args': argparse.Namespace(lr=3e-4)}, path)
    with pytest.raises(pickle.UnpicklingError, match=r'(?s)with_args\.pth\.tar.*Namespace.*trust_pickle=True'):
        load_official_checkpoint(path)
    with pytest.warns(UserWarning, match='unrestricted'):
        assert load_official_checkpoint(path, trust_pickle=True)['args'].lr == 3e-4


def test_convert_from_a_file(tmp_path):
    official = official_state_dict('idnet', num_classes=5)
    path = tmp_path / 'best_model.pth.tar'
    torch.save({'state_dict': {f'module.{k}': v for k, v in official.items()}, 'rank1': np.float64(0.9),
                'epoch': 150}, path)
    converted = convert_official_checkpoint('sinet', str(path))
    assert set(converted) == set(convert_official_state_dict(official))
    assert set(convert_official_checkpoint('sinet-official', {'state_dict': official}, 'idnet_resnet50')) == \
        set(converted)
    with pytest.raises(ValueError, match='Unknown checkpoint family'):
        convert_official_checkpoint('sanet', {'state_dict': official})


def test_cli_converts_to_a_loadable_folder(tmp_path, sinet_official, sinet_model):
    src, out = tmp_path / 'sinet_mars.pth.tar', tmp_path / 'sinet_resnet50.mars'
    torch.save({'state_dict': sinet_official, 'rank1': np.float64(0.91), 'epoch': 150}, src)
    assert cli_main(['convert', '--from', 'sinet-official', str(src), str(out), '--dataset', 'mars']) == 0
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'sinet_resnet50' and config['num_classes'] == 625
    assert config['source']['type'] == 'converted' and 'baist/SINet' in config['source']['repository']
    model = reidzoo.create_model(f'local-dir:{out}', pretrained=True).eval()
    x = torch.randn(1, 4, 3, 256, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x), sinet_model(x))


def test_cli_list_and_errors(tmp_path, capsys):
    assert cli_main(['convert', '--list']) == 0
    printed = capsys.readouterr().out
    assert len(RELEASED_CHECKPOINTS) == 6
    for release in RELEASED_CHECKPOINTS:
        assert release['url'] in printed
    assert '18YKaBdexzc49A-zhmT8vJY_xug_eLiYF' in printed and '86.2/91.0' in printed  # SINet MARS, paper
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {}, 'args': argparse.Namespace(a=1)}, bad)
    assert cli_main(['convert', '--from', 'sinet-official', str(bad), str(tmp_path / 'out')]) == 1
    assert '--trust-pickle' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('content', ['text', 'empty', 'random', 'truncated', 'json', 'zip_of_text'])
def test_cli_names_a_file_that_is_not_a_checkpoint(tmp_path, capsys, content):
    """One error line naming the file and saying it is no checkpoint (before: `error: 101`, `pop from empty list`)."""
    import zipfile
    path = tmp_path / 'model.pth'
    if content == 'text':
        path.write_text('hello world\n')
    elif content == 'empty':
        path.write_bytes(b'')
    elif content == 'random':
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()[1:] + b'\x00')
    elif content == 'truncated':
        torch.save({'state_dict': {'w': torch.ones(1000)}}, path)
        path.write_bytes(path.read_bytes()[:600])
    elif content == 'json':
        path.write_text(json.dumps({'state_dict': {}}))
    else:
        with zipfile.ZipFile(path, 'w') as z:
            z.writestr('notes.txt', 'hi')
    capsys.readouterr()
    assert cli_main(['convert', '--from', 'sinet-official', str(path), str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and 'is not a checkpoint' in err[0], err
    assert not (tmp_path / 'out').exists()
