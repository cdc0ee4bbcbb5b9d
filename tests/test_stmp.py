"""STMP (RRU + STIM): the recurrence against an equation-level reference, the authors' checkpoint layout, contract."""
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import reidzoo
from reidzoo.convert import build_converted_model, convert_official_checkpoint
from reidzoo.models import ModelOutput
from reidzoo.models._builder import load_state_dict_checked
from reidzoo.models.stmp import STIM, RefiningRecurrentUnit, STMPNet, convert_official_state_dict

SMALL = dict(img_size=(139, 139), aux_logits=False)  # 3x3 Mixed_7c maps; the aux head needs 299x299


def _authors_fuse_net(c: int, hw: tuple, mid: int = 256, hidden: int = 128, seed: int = 0) -> dict:
    """``fuse_net.*`` keys and shapes of the authors' FuseNet (yolomax/person-reid-lib
    ``tasks/task_video/architecture.py``), random values."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    pos = lambda *s: torch.rand(*s, generator=g) + 0.5  # noqa: E731
    h, w = hw
    p = {'reduce_dim_z.conv.weight': rnd(mid, 2 * c, 1, 1), 's_atten_z.0.weight': rnd(hidden, 1, h, w),
         's_atten_z.2.weight': rnd(h * w, hidden, 1, 1), 'c_atten_z.1.weight': rnd(c, mid, 1, 1),
         't_info.0.weight': rnd(mid, c, 1, 1, 1), 't_info.3.weight': rnd(mid, mid, 3, 3, 3) * 0.3}
    for pre in ('reduce_dim_z.bn.', 't_info.1.', 't_info.4.'):
        p.update({pre + 'weight': pos(mid), pre + 'bias': rnd(mid), pre + 'running_mean': rnd(mid),
                  pre + 'running_var': pos(mid), pre + 'num_batches_tracked': torch.tensor(3)})
    return {f'fuse_net.{k}': v for k, v in p.items()}


def _reference_fuse_net(x: torch.Tensor, p: dict, paper_sign: bool = False):
    """Paper Eq. 1-6 and 9 with the code's details (gate sign, BN eps 1e-3 in the transition layer), BN in eval."""
    def bn(y, pre, eps):
        return F.batch_norm(y, p[pre + 'running_mean'], p[pre + 'running_var'], p[pre + 'weight'], p[pre + 'bias'],
                            False, 0.0, eps)

    b, t, c, h, w = x.shape
    s, prev, states = x[:, 0], x[:, 0], []
    for step in range(t):
        xt = x[:, step]
        appearance = xt - s if paper_sign else s - xt
        zt = F.relu(bn(F.conv2d(torch.cat([appearance, xt - prev], 1), p['fuse_net.reduce_dim_z.conv.weight']),
                       'fuse_net.reduce_dim_z.bn.', 1e-3))
        zs = F.conv2d(F.relu(F.conv2d(zt.mean(1, keepdim=True), p['fuse_net.s_atten_z.0.weight'])),
                      p['fuse_net.s_atten_z.2.weight']).view(b, 1, h, w)
        zc = F.conv2d(F.avg_pool2d(zt, (h, w)), p['fuse_net.c_atten_z.1.weight'])
        z = torch.sigmoid(zs * zc)
        s, prev = (1 - z) * s + z * xt, xt
        states.append(s)
    stacked = torch.stack(states, 2)  # (B, C, T, h, w)
    o = F.relu(bn(F.conv3d(stacked, p['fuse_net.t_info.0.weight']), 'fuse_net.t_info.1.', 1e-5))
    o = F.relu(bn(F.conv3d(o, p['fuse_net.t_info.3.weight'], padding=1), 'fuse_net.t_info.4.', 1e-5))
    return F.avg_pool2d(o.mean(2), (h, w)).flatten(1), stacked.mean(4).mean(2)


class _FuseNet(nn.Module):
    def __init__(self, c, hw, gate_input='code'):
        super().__init__()
        self.rru = RefiningRecurrentUnit(c, hw, transition_chs=16, spatial_hidden=8, gate_input=gate_input)
        self.stim = STIM(c, mid_chs=16, out_chs=16)


@pytest.mark.parametrize('t,hw', [(1, (3, 3)), (4, (3, 2)), (7, (8, 8))])
def test_rru_stim_match_reference(t, hw):
    c = 12
    official = {k: v.double() if v.is_floating_point() else v
                for k, v in _authors_fuse_net(c, hw, mid=16, hidden=8, seed=t).items()}
    converted = convert_official_state_dict({f'module.{k}': v for k, v in official.items()})
    assert all(k.startswith(('rru.', 'stim.')) for k in converted)
    torch.manual_seed(t)
    x = torch.randn(2, t, c, *hw, dtype=torch.float64)
    for gate_input in ('code', 'paper'):
        net = _FuseNet(c, hw, gate_input).double().eval()
        net.load_state_dict(converted)  # strict
        with torch.no_grad():
            refined = net.rru(x)
            emb, parts = net.stim(refined), refined.mean(-1).mean(1)
        ref_emb, ref_parts = _reference_fuse_net(x, official, paper_sign=gate_input == 'paper')
        torch.testing.assert_close(emb, ref_emb)
        torch.testing.assert_close(parts, ref_parts)
        if t > 1 and gate_input == 'code':
            code_emb = emb
    if t > 1:
        assert not torch.allclose(code_emb, emb)  # the sign choice matters


def _authors_checkpoint(num_classes: int) -> dict:
    """``DataParallel(ModelClient).state_dict()`` + the duplicate ``feature.module.feature.*`` backbone (§3.3)."""
    torch.manual_seed(0)
    trunk = timm.create_model('inception_v3', aux_logits=True, num_classes=num_classes).state_dict()
    trunk = {k: v for k, v in trunk.items() if not k.startswith('fc.')}  # their fc is an empty Sequential
    model = {f'feature.feature.{k}': v for k, v in trunk.items()}
    model.update(_authors_fuse_net(2048, (8, 8)))
    model.update({'classifier.0.0.weight': torch.randn(512, 256), 'classifier.0.0.bias': torch.randn(512),
                  'classifier.0.1.weight': torch.rand(512), 'classifier.0.1.bias': torch.randn(512),
                  'classifier.0.1.running_mean': torch.randn(512), 'classifier.0.1.running_var': torch.rand(512),
                  'classifier.0.1.num_batches_tracked': torch.tensor(5),
                  'classifier.1.0.weight': torch.randn(num_classes, 512),
                  'classifier.1.0.bias': torch.randn(num_classes)})
    sd = {f'module.{k}': v for k, v in model.items()}
    sd.update({f'feature.module.feature.{k}': v for k, v in trunk.items()})
    return sd


def test_convert_authors_checkpoint_loads_strictly():
    official = _authors_checkpoint(num_classes=7)
    assert len(official) == 1186 and sum(k.startswith('module.') for k in official) == 608
    converted = convert_official_state_dict(official)
    assert len(converted) == 608
    model = reidzoo.create_model('stmp_inception_v3', num_classes=7)
    # the authors' model has 29.16 M parameters with 625 classes (two FCs sized by the classes: 512 and 768 inputs)
    with_625 = sum(p.numel() for p in model.parameters()) + (625 - 7) * (512 + 1 + 768 + 1)
    assert round(with_625 / 1e6, 2) == 29.16
    load_state_dict_checked(model, converted, 'authors-layout test dict')
    own = model.state_dict()
    pinned = {
        'module.feature.feature.Conv2d_1a_3x3.conv.weight': 'backbone.Conv2d_1a_3x3.conv.weight',
        'module.feature.feature.Mixed_7c.branch_pool.bn.running_var': 'backbone.Mixed_7c.branch_pool.bn.running_var',
        'module.feature.feature.AuxLogits.conv1.conv.weight': 'backbone.AuxLogits.conv1.conv.weight',
        'module.feature.feature.AuxLogits.fc.weight': 'classifier.aux_fc.weight',
        'module.fuse_net.reduce_dim_z.bn.running_mean': 'rru.reduce_dim_z.bn.running_mean',
        'module.fuse_net.s_atten_z.0.weight': 'rru.s_atten_z.0.weight',
        'module.fuse_net.s_atten_z.2.weight': 'rru.s_atten_z.2.weight',
        'module.fuse_net.c_atten_z.1.weight': 'rru.c_atten_z.1.weight',
        'module.fuse_net.t_info.3.weight': 'stim.t_info.3.weight',
        'module.fuse_net.t_info.4.running_var': 'stim.t_info.4.running_var',
        'module.classifier.0.0.weight': 'classifier.fc1.weight',
        'module.classifier.0.1.running_mean': 'classifier.bn.running_mean',
        'module.classifier.1.0.bias': 'classifier.fc.bias',
    }
    for src, dst in pinned.items():
        assert torch.equal(own[dst], official[src]), (src, dst)
    assert model.rru.reduce_dim_z.bn.eps == 1e-3
    # inference without the auxiliary classifier
    no_aux = convert_official_state_dict(official, aux_logits=False)
    assert len(no_aux) == 608 - 14
    load_state_dict_checked(reidzoo.create_model('stmp_inception_v3', num_classes=7, aux_logits=False), no_aux)
    # `reidzoo convert` path (its loader drops the DataParallel duplicate itself)
    model = build_converted_model('stmp', convert_official_checkpoint('stmp', official))
    assert model.num_classes == 7 and model.aux_logits
    torch.testing.assert_close(model.rru.s_atten_z[0].weight, official['module.fuse_net.s_atten_z.0.weight'])
    with pytest.raises(KeyError, match='module.extra'):
        convert_official_state_dict({'module.extra.weight': torch.zeros(1)})


def test_train_outputs_and_gradients_full_size():
    """299x299 (the aux head and the 8x8 RRU attention need it), two clips of two frames."""
    torch.manual_seed(0)
    model = reidzoo.create_model('stmp_inception_v3', num_classes=5).train()
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 299, 299) and cfg['num_frames'] == 8
    assert (cfg['mean'], cfg['std']) == ((0.5,) * 3, (0.5,) * 3)
    assert (cfg['test_sampling'], cfg['distance'], cfg['interpolation']) == ('all', 'cosine', 'bicubic')
    out = model(torch.randn(2, 2, 3, 299, 299))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 5) and out.embedding.shape == (2, 256) and model.num_features == 256
    assert out.aux['part_features'].shape == (2, 2048, 8) and out.aux['aux_logits'].shape == (2, 5)
    loss = out.logits.sum() + out.aux['aux_logits'].sum() + out.embedding.square().mean() + \
        out.aux['part_features'].square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


@pytest.mark.parametrize('t', [1, 3])
def test_eval_takes_any_clip_length(t):
    torch.manual_seed(0)
    model = reidzoo.create_model('stmp_inception_v3', **SMALL).eval()
    assert isinstance(model, STMPNet) and model.feat_size == (3, 3)
    with torch.no_grad():
        emb = model(torch.randn(2, t, 3, 139, 139))
    assert emb.shape == (2, 256) and torch.isfinite(emb).all()
    if t == 1:
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            emb = model(torch.randn(1, t, 3, 139, 139))
        assert emb.shape == (1, 256) and torch.isfinite(emb.float()).all()


def test_chunked_backbone_matches_one_pass_and_float64():
    torch.manual_seed(0)
    model = reidzoo.create_model('stmp_inception_v3', frame_chunk=None, **SMALL).double().eval()
    x = torch.randn(1, 3, 3, 139, 139, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        model.frame_chunk = 2
        chunked = model(x)
    assert whole.dtype == torch.float64
    torch.testing.assert_close(chunked, whole)


def test_train_without_aux_head_and_without_classifier():
    model = reidzoo.create_model('stmp_inception_v3', num_classes=3, **SMALL).train()
    out = model(torch.randn(2, 2, 3, 139, 139))
    assert out.logits.shape == (2, 3) and set(out.aux) == {'part_features'}
    assert out.aux['part_features'].shape == (2, 2048, 3)
    model.reset_classifier(0)
    out = model(torch.randn(2, 2, 3, 139, 139))
    assert out.logits is None and out.embedding.shape == (2, 256)


def test_bad_sizes_raise():
    model = reidzoo.create_model('stmp_inception_v3', **SMALL).eval()
    with pytest.raises(ValueError, match=r'139x139.*\(1, 2, 3, 299, 299\)'):
        model(torch.randn(1, 2, 3, 299, 299))
    with pytest.raises(ValueError, match=r'aux_logits=False'):
        reidzoo.create_model('stmp_inception_v3', img_size=(139, 139))
    with pytest.raises(ValueError, match=r"'code' or 'paper'"):
        RefiningRecurrentUnit(8, (2, 2), gate_input='sign')
    with pytest.raises(ValueError, match=r'3x3.*\(1, 2, 8, 2, 2\)'):
        RefiningRecurrentUnit(8, (3, 3))(torch.randn(1, 2, 8, 2, 2))
