"""COSAM family: module behaviour against a per-frame reference, the authors' checkpoint layout, model contract."""
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import reidzoo
from reidzoo.convert import build_converted_model, convert_official_checkpoint
from reidzoo.models import ModelOutput
from reidzoo.models._builder import load_state_dict_checked
from reidzoo.models.cosam import COSAM, CosamNet, convert_official_state_dict

SMALL = dict(backbone='resnet18', img_size=(64, 32))


def _small(name='cosam_resnet50_tp', **kw):
    torch.manual_seed(0)
    return reidzoo.create_model(name, **dict(SMALL, **kw))


# --- the authors' COSAM, written from the paper (Eq. 1-2, §4.2) and the code's documented details -----------------
def _reference_cosam(x: torch.Tensor, p: dict, t: int, eps: float = 1e-4) -> torch.Tensor:
    """One frame at a time; ``p`` holds the authors' keys of one COSAM module (BN in eval mode)."""
    def bn(y, pre):
        return F.batch_norm(y, p[pre + 'running_mean'], p[pre + 'running_var'], p[pre + 'weight'], p[pre + 'bias'],
                            False, 0.0, 1e-5)

    r = F.relu(bn(F.conv2d(x, p['dim_reduction.0.weight'], p['dim_reduction.0.bias']), 'dim_reduction.1.'))
    bt, c, h, w = r.shape
    desc = r.flatten(2)  # (BT, C, hw)
    desc = (desc - desc.mean(1, keepdim=True)) / (desc.std(1, keepdim=True) + eps)
    masks = []
    for i in range(bt):
        clip, frame = divmod(i, t)
        others = [clip * t + s for s in range(t) if s != frame]
        # cost volume channel = (other frame, its position); grid = own position
        vol = torch.cat([desc[o].T @ desc[i] / c for o in others]).view(1, -1, h, w)
        y = F.relu(bn(F.conv2d(vol, p['spatial_mask_summary.0.weight'], p['spatial_mask_summary.0.bias']),
                      'spatial_mask_summary.1.'))
        masks.append(F.conv2d(y, p['spatial_mask_summary.3.weight'], p['spatial_mask_summary.3.bias']).sigmoid())
    xm = x * torch.cat(masks)
    g = xm.mean(dim=(2, 3))
    g = torch.tanh(F.linear(g, p['channelwise_attention.0.weight'], p['channelwise_attention.0.bias']))
    g = torch.sigmoid(F.linear(g, p['channelwise_attention.2.weight'], p['channelwise_attention.2.bias']))
    g = g.view(-1, t, c_in := x.shape[1]).mean(1, keepdim=True).expand(-1, t, c_in).reshape(bt, c_in, 1, 1)
    return xm + xm * g


def _random_cosam_params(c: int, t: int, h: int, w: int, mid: int) -> dict:
    """The authors' COSAM keys and shapes (their `src/models/cosam.py`), random values."""
    g = torch.Generator().manual_seed(c + t)
    rnd = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    pos = lambda *s: torch.rand(*s, generator=g) + 0.5  # noqa: E731
    p = {'dim_reduction.0.weight': rnd(mid, c, 1, 1), 'dim_reduction.0.bias': rnd(mid),
         'spatial_mask_summary.0.weight': rnd(64, (t - 1) * h * w, 1, 1), 'spatial_mask_summary.0.bias': rnd(64),
         'spatial_mask_summary.3.weight': rnd(1, 64, 1, 1), 'spatial_mask_summary.3.bias': rnd(1),
         'channelwise_attention.0.weight': rnd(mid, c), 'channelwise_attention.0.bias': rnd(mid),
         'channelwise_attention.2.weight': rnd(c, mid), 'channelwise_attention.2.bias': rnd(c)}
    for pre, n in (('dim_reduction.1.', mid), ('spatial_mask_summary.1.', 64)):
        p.update({pre + 'weight': pos(n), pre + 'bias': rnd(n), pre + 'running_mean': rnd(n),
                  pre + 'running_var': pos(n), pre + 'num_batches_tracked': torch.tensor(7)})
    return p


@pytest.mark.parametrize('c,t,mid', [(32, 3, 64), (300, 4, 256)])
def test_cosam_module_matches_reference(c, t, mid):
    h, w = 4, 2
    p = _random_cosam_params(c, t, h, w, mid)
    module = COSAM(c, t, (h, w)).eval()
    module.load_state_dict(p)  # the module's own keys equal the authors' (strict)
    assert module.dim_reduction[0].out_channels == mid  # D_R = 64 for <= 256 channels, else 256
    x = torch.randn(2 * t, c, h, w)
    with torch.no_grad():
        torch.testing.assert_close(module(x), _reference_cosam(x, p, t), rtol=1e-4, atol=1e-5)


def test_cosam_module_rejects_other_t_and_size():
    module = COSAM(16, 4, (4, 2))
    with pytest.raises(ValueError, match=r'4 frames.*4x2.*\(6, 16, 4, 2\)'):
        module(torch.randn(6, 16, 4, 2))
    with pytest.raises(ValueError, match=r'\(8, 16, 2, 2\)'):
        module(torch.randn(8, 16, 2, 2))


# --- the authors' checkpoint layout ---------------------------------------------------------------------------------
def _authors_state_dict(se: bool, aggregation: str, num_classes: int) -> dict:
    """A state dict laid out as the authors' ``ResNet`` / ``SE_ResNet`` save it (§2.3), with random values."""
    if se:  # Cadene's SENet names = timm legacy_seresnet50's, without the ImageNet head
        trunk = timm.create_model('legacy_seresnet50', num_classes=0).state_dict()
    else:  # torchvision resnet50 children [conv1, bn1, relu, maxpool, layer1..4] as an nn.Sequential
        trunk = nn.Sequential(*list(torchvision.models.resnet50().children())[:-2]).state_dict()
    sd = {f'base.{k}': v for k, v in trunk.items()}
    layer4_hw = (8, 4) if aggregation == 'ta' else (16, 8)
    for idx, (c, hw) in zip((3, 4) if se else (2, 3), ((1024, (16, 8)), (2048, layer4_hw))):
        for k, v in _random_cosam_params(c, 4, *hw, 256).items():
            sd[f'attention_modules.attention_modules.{idx}.{k}'] = v
    feat = 512 if aggregation == 'rnn' else 2048
    if aggregation == 'ta':
        sd.update({'aggregation.attention_conv.weight': torch.randn(256, 2048, 8, 4) * 0.01,
                   'aggregation.attention_conv.bias': torch.zeros(256),
                   'aggregation.attention_tconv.weight': torch.randn(1, 256, 3), 'aggregation.attention_tconv.bias':
                       torch.zeros(1)})
    if aggregation == 'rnn':
        sd.update({'aggregation.lstm.weight_ih_l0': torch.randn(2048, 2048) * 0.01,
                   'aggregation.lstm.weight_hh_l0': torch.randn(2048, 512) * 0.01,
                   'aggregation.lstm.bias_ih_l0': torch.zeros(2048), 'aggregation.lstm.bias_hh_l0': torch.zeros(2048)})
    sd.update({'classifier.weight': torch.randn(num_classes, feat), 'classifier.bias': torch.zeros(num_classes)})
    return sd


@pytest.mark.parametrize('backbone,aggregation,num_keys', [
    ('resnet50', 'tp', 360), ('seresnet50', 'ta', 428), ('resnet50', 'rnn', 364)])
def test_convert_authors_checkpoint_loads_strictly(backbone, aggregation, num_keys):
    se = backbone == 'seresnet50'
    official = _authors_state_dict(se, aggregation, num_classes=7)
    assert len(official) == num_keys  # the counts the authors' models have (§2.3)
    arch = f'cosam_{backbone}_{aggregation}'
    converted = convert_official_state_dict({'state_dict': official, 'rank1': 'NA', 'epoch': 800}, arch)
    model = reidzoo.create_model(arch, num_classes=7)
    load_state_dict_checked(model, converted, 'authors-layout test dict')  # raises on any missing/extra/shape
    own = model.state_dict()
    cosam_src = 3 if se else 2
    pinned = {  # authors' key -> ours
        f'attention_modules.attention_modules.{cosam_src}.spatial_mask_summary.0.weight':
            'cosam.layer3.spatial_mask_summary.0.weight',
        f'attention_modules.attention_modules.{cosam_src + 1}.channelwise_attention.2.bias':
            'cosam.layer4.channelwise_attention.2.bias',
        'classifier.weight': 'classifier.weight',
    }
    if se:
        pinned.update({'base.layer0.conv1.weight': 'backbone.layer0.conv1.weight',
                       'base.layer4.0.se_module.fc1.weight': 'backbone.layer4.0.se_module.fc1.weight'})
    else:
        pinned.update({'base.0.weight': 'backbone.conv1.weight', 'base.1.running_var': 'backbone.bn1.running_var',
                       'base.4.0.conv1.weight': 'backbone.layer1.0.conv1.weight',
                       'base.7.2.bn3.bias': 'backbone.layer4.2.bn3.bias'})
    for src, dst in pinned.items():
        assert torch.equal(own[dst], official[src]), (src, dst)
    # the authors' names are accepted for arch, and a DataParallel prefix is stripped
    again = convert_official_state_dict({f'module.{k}': v for k, v in official.items()},
                                        f'{"se_resnet50" if se else "resnet50"}_cosam45_{aggregation}')
    assert again.keys() == converted.keys()
    # `reidzoo convert` path: architecture, classes and T inferred from the weights
    with_t2 = dict(official)
    for key in [k for k in official if k.endswith('spatial_mask_summary.0.weight')]:
        with_t2[key] = official[key][:, :official[key].shape[1] // 3]  # a T=2 checkpoint (paper Table 6)
    state_dict = convert_official_checkpoint('cosam', {'state_dict': with_t2, 'epoch': 1})
    model = build_converted_model('cosam', state_dict)
    assert model.pretrained_cfg['architecture'] == arch
    assert (model.num_classes, model.num_frames, model.supported_num_frames) == (7, 2, (2,))


def test_convert_rejects_unknown_keys_and_arch():
    with pytest.raises(KeyError, match='base.9.weight'):
        convert_official_state_dict({'base.9.weight': torch.zeros(1)}, 'cosam_resnet50_tp')
    with pytest.raises(ValueError, match='cosam_resnet101_tp'):
        convert_official_state_dict({}, 'cosam_resnet101_tp')


def test_full_size_parameter_counts():
    """Params of the authors' models with 625 classes (their `src/models/ResNet.py`)."""
    expected = {'cosam_resnet50_tp': 27.20, 'cosam_seresnet50_rnn': 34.02}
    for name, millions in expected.items():
        model = reidzoo.create_model(name, num_classes=625)
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 256, 128) and cfg['num_frames'] == 4
    assert (cfg['test_sampling'], cfg['distance'], cfg['interpolation']) == ('dense', 'sqeuclidean', 'bilinear')
    assert cfg['mean'] == (0.485, 0.456, 0.406) and cfg['std'] == (0.229, 0.224, 0.225)


# --- model contract ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('aggregation,dim', [('tp', 512), ('ta', 512), ('rnn', 512)])
def test_eval_and_train_outputs(aggregation, dim):
    model = _small(f'cosam_resnet50_{aggregation}', num_classes=5)
    assert isinstance(model, CosamNet) and model.num_features == dim
    assert sorted(model.cosam) == ['layer3', 'layer4']
    x = torch.randn(2, 4, 3, 64, 32)
    model.eval()
    with torch.no_grad():
        emb = model(x)
    assert emb.shape == (2, dim)
    model.train()
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 5) and out.embedding.shape == (2, dim)


def test_clips_are_embedded_independently():
    """COSAM mixes frames within a clip only: changing clip 1 leaves clip 0's embedding unchanged."""
    model = _small().eval()
    x = torch.randn(2, 4, 3, 64, 32)
    y = x.clone()
    y[1] = torch.randn(4, 3, 64, 32)
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_unsupported_t_and_size_raise():
    model = _small().eval()
    with pytest.raises(ValueError, match=r'T in \[4\].*\(1, 8, 3, 64, 32\)'):
        model(torch.randn(1, 8, 3, 64, 32))
    with pytest.raises(ValueError, match=r'64x32.*\(1, 4, 3, 128, 64\)'):
        model(torch.randn(1, 4, 3, 128, 64))
    with pytest.raises(ValueError, match='cosam_blocks'):
        _small(cosam_blocks=(1, 5))


def test_num_frames_and_img_size_are_honoured():
    model = _small(num_frames=2, img_size=(96, 32), cosam_blocks=(3, 4, 5)).eval()
    assert sorted(model.cosam) == ['layer2', 'layer3', 'layer4']
    assert model.cosam['layer2'].spatial_mask_summary[0].in_channels == 1 * 12 * 4
    with torch.no_grad():
        assert model(torch.randn(3, 2, 3, 96, 32)).shape == (3, 512)


def test_gradients_reach_every_parameter():
    # timm zero-initialises each block's last BN scale, which would leave the block's convs without gradient
    model = _small('cosam_resnet50_ta', num_classes=3, zero_init_last=False).train()
    out = model(torch.randn(2, 4, 3, 64, 32))
    (out.logits.sum() + out.embedding.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_seresnet_backbone_and_float64():
    model = reidzoo.create_model('cosam_seresnet50_tp', backbone='legacy_seresnet18', img_size=(64, 32)).double().eval()
    with torch.no_grad():
        emb = model(torch.randn(1, 4, 3, 64, 32, dtype=torch.float64))
    assert emb.dtype == torch.float64 and emb.shape == (1, 512) and torch.isfinite(emb).all()


def test_bfloat16_autocast():
    model = _small().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        emb = model(torch.randn(1, 4, 3, 64, 32))
    assert emb.shape == (1, 512) and torch.isfinite(emb.float()).all()
