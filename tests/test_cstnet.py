"""CSTNet (reidzoo.models.cstnet, reidzoo.layers.non_local): CSL and STI against the paper's equations, and the model
contract."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import reidzoo
from reidzoo.layers import SpatialRelation, TemporalRelation
from reidzoo.models import ModelOutput
from reidzoo.models.cstnet import CoSaliencyLearning, SpatialTemporalInteraction


def _ncc(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for one descriptor pair, with COSAM's normalisation (unbiased std + 1e-4)."""
    p = (p - p.mean()) / (p.std() + 1e-4)
    q = (q - q.mean()) / (q.std() + 1e-4)
    return (p * q).sum() / p.numel()


def _reference_csl_attention(csl: CoSaliencyLearning, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1-3 one frame pair and descriptor pair at a time: the 1x1 conv over the ((T-1)·N)-channel NCC volume with
    its weights tied across the other frames (averaged), for the spatial and the channel branch."""
    b, t, c, h, w = x.shape
    frames = x.flatten(0, 1)
    spatial = csl.spatial_reduction(frames).view(b, t, -1, h * w)  # descriptors = columns
    channel = csl.channel_reduction(frames).view(b, t, c, -1)  # descriptors = rows
    ws, bs = csl.spatial_summary.weight[0], csl.spatial_summary.bias[0]
    wc, bc = csl.channel_summary.weight[0], csl.channel_summary.bias[0]
    z = torch.zeros(b, t, c, h * w, dtype=x.dtype)
    for bi in range(b):
        for ti in range(t):
            others = [k for k in range(t) if k != ti]
            z_s = [bs + sum(ws[m] * _ncc(spatial[bi, k, :, m], spatial[bi, ti, :, n])
                            for k in others for m in range(h * w)) / len(others) for n in range(h * w)]
            z_c = [bc + sum(wc[m] * _ncc(channel[bi, k, m], channel[bi, ti, n])
                            for k in others for m in range(c)) / len(others) for n in range(c)]
            for ci in range(c):
                for n in range(h * w):
                    z[bi, ti, ci, n] = torch.sigmoid(z_c[ci] * z_s[n])
    return z.view(b, t, c, h, w)


def _csl(fused: bool) -> CoSaliencyLearning:
    torch.manual_seed(0)
    csl = CoSaliencyLearning(5, (4, 2), reduced_chs=6, channel_pool_size=(2, 2), fused_ncc=fused).double().eval()
    with torch.no_grad():  # larger summary weights so the attention is far from a constant 0.5
        csl.spatial_summary.weight.normal_(0, 2)
        csl.channel_summary.weight.normal_(0, 2)
    return csl


@pytest.mark.parametrize('fused', [True, False])
def test_csl_matches_per_pair_ncc_reference(fused):
    csl = _csl(fused)
    x = torch.randn(2, 3, 5, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        z = csl.attention(x)
        torch.testing.assert_close(z, _reference_csl_attention(csl, x), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(csl(x), x * z)


def test_csl_attention_in_unit_interval_and_order_invariant():
    csl = _csl(True)
    torch.manual_seed(1)
    x = torch.randn(2, 5, 5, 4, 2, dtype=torch.float64) * 3
    with torch.no_grad():
        z = csl.attention(x)
        assert ((z > 0) & (z < 1)).all()
        assert z.std() > 0.05  # not a constant map
        # permuting the frames permutes the outputs: a frame's attention depends on the set of the others only
        for perm in ([4, 2, 0, 1, 3], [1, 0, 2, 3, 4]):
            torch.testing.assert_close(csl.attention(x[:, perm]), z[:, perm])
    with pytest.raises(ValueError, match=r'T >= 2.*\(2, 1, 5, 4, 2\)'):
        csl(x[:, :1])


def test_spatial_relation_matches_eq_4_5():
    """Conv, *then* pool (the paper's order), then one output position at a time."""
    torch.manual_seed(0)
    block = SpatialRelation(6, mid_chs=3, pool_size=(2, 2)).double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64)
    q = block.query_key(x).flatten(2)
    k = F.adaptive_avg_pool2d(block.query_key(x), (2, 2)).flatten(2)
    v = F.adaptive_avg_pool2d(block.value(x), (2, 2)).flatten(2)
    mixed = torch.zeros_like(q)
    for n in range(2):
        for p in range(12):
            weights = torch.softmax(k[n].T @ q[n, :, p], dim=0)  # over the 4 pooled key positions
            mixed[n, :, p] = v[n] @ weights
    expected = F.relu(block.out(mixed.view(2, 3, 4, 3)))
    torch.testing.assert_close(block(x), expected)
    small = torch.randn(1, 6, 2, 1, dtype=torch.float64)  # smaller than the pool target: not pooled
    assert block(small).shape == small.shape


def test_temporal_relation_matches_paper_reshape():
    """The paper's (HW, C, T) reshape with 1x1xC_1 convolutions, one position at a time."""
    torch.manual_seed(0)
    block = TemporalRelation(6, mid_chs=3).double()
    x = torch.randn(2, 4, 6, 2, 3, dtype=torch.float64)

    def lin(conv, v):  # a 1x1 conv on (T, C) rows
        return v @ conv.weight.flatten(1).T + conv.bias

    out = torch.zeros_like(x)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                seq = x[b, :, :, i, j]  # (T, C)
                q, k, v = lin(block.query, seq), lin(block.key, seq), lin(block.value, seq)
                m = torch.softmax(k @ q.T, dim=0)  # (T_key, T_query)
                out[b, :, :, i, j] = F.relu(lin(block.out, m.T @ v))
    torch.testing.assert_close(block(x), out)


def test_sti_gates_and_fusion():
    torch.manual_seed(0)
    sti = SpatialTemporalInteraction(8, mid_chs=4, pool_size=(2, 2)).double()
    x = torch.randn(3, 4, 8, 4, 2, dtype=torch.float64)
    fs = sti.spatial(x.flatten(0, 1)).unflatten(0, (3, 4))
    ft = sti.temporal(x)
    a_s, a_t = sti.gates(fs, ft)
    assert a_s.shape == a_t.shape == (3, 8)
    for a in (a_s, a_t):
        assert ((a > 0) & (a < 1)).all()
    torch.testing.assert_close(a_s, torch.sigmoid(sti.spatial_gate(ft.mean((1, 3, 4)))))  # Eq. 6
    expected = x + a_s[:, None, :, None, None] * fs + a_t[:, None, :, None, None] * ft  # Eq. 7 + residual
    torch.testing.assert_close(sti(x), expected)


def _small(**kwargs):
    return reidzoo.create_model('cstnet_resnet50', backbone='test_resnet', img_size=(128, 64), **kwargs)


def test_train_outputs_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = _small(num_classes=4).train()
    for m in model.modules():  # timm zero-inits each block's last BN gamma, which blocks gradients at init
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    out = model(torch.randn(2, 3, 3, 128, 64))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 4) and out.embedding.shape == (2, model.num_features)
    (F.cross_entropy(out.logits, torch.tensor([0, 3])) + out.embedding.pow(2).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_eval_contract_sizes_and_bad_input():
    model = _small().eval()
    assert sorted(model.co_saliency) == ['1', '2', '3']
    # sizes derived from img_size: H/32 x W/32 channel branch, H/16 x W/16 relation pool
    assert model.co_saliency['1'].feat_size == (16, 8) and model.co_saliency['3'].feat_size == (8, 4)
    assert model.co_saliency['1'].channel_reduction[0].output_size == (4, 2)
    assert model.interaction['1'].spatial.pool_size == (8, 4)
    with torch.no_grad():
        for t in (2, 4):
            assert model(torch.randn(2, t, 3, 128, 64)).shape == (2, model.num_features)
    with pytest.raises(ValueError, match=r'T >= 2.*\(1, 1, 3, 128, 64\)'):
        model(torch.randn(1, 1, 3, 128, 64))
    with pytest.raises(ValueError, match=r'128x64.*\(1, 2, 3, 64, 32\)'):
        model(torch.randn(1, 2, 3, 64, 32))


def test_fused_and_volume_ncc_models_agree_and_dtypes():
    torch.manual_seed(0)
    fused = _small().eval()
    volume = _small(fused_ncc=False).eval()
    volume.load_state_dict(fused.state_dict())
    x = torch.randn(1, 3, 3, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused.double()(x.double()), volume.double()(x.double()))
        fused.float()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert torch.isfinite(fused(x).float()).all()


def test_cfg_and_full_size_parameter_count():
    model = reidzoo.create_model('cstnet_resnet50')
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 256, 128) and cfg['num_frames'] == 8
    assert cfg['test_sampling'] == 'dense' and cfg['distance'] == 'euclidean'
    assert cfg['mean'] == (0.485, 0.456, 0.406) and cfg['std'] == (0.229, 0.224, 0.225)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == 44_185_542
    assert count(model.backbone) == 23_508_032
    assert count(model.co_saliency) == 6_439_942 and count(model.interaction) == 14_237_568
    assert model.num_features == 2048
    # after layer2/3/4 (512/1024/2048 channels), 32x16 / 16x8 / 16x8 maps; C_L=256, H_L x W_L=8x4, C_1=128, 16x8
    sizes = {k: (m.spatial_reduction[0].in_channels, m.feat_size) for k, m in model.co_saliency.items()}
    assert sizes == {'1': (512, (32, 16)), '2': (1024, (16, 8)), '3': (2048, (16, 8))}
    csl, sti = model.co_saliency['3'], model.interaction['3']
    assert csl.spatial_reduction[0].out_channels == 256 and csl.channel_reduction[0].output_size == (8, 4)
    assert sti.spatial.query_key.out_channels == 128 and sti.spatial.pool_size == (16, 8)
    model.reset_classifier(625)
    assert count(model) == 44_185_542 + 2_740_849
