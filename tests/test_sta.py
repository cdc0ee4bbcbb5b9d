"""STA (reidzoo.models.sta): Eq. 1-4, Algorithm 1 and Eq. 6 against the paper, and the model contract."""
import pytest
import torch
import torch.nn.functional as F

import reidzoo
from reidzoo.models import ModelOutput
from reidzoo.models.sta import (
    STA_REG_WEIGHT, sta_attention_maps, sta_block_scores, sta_fuse, sta_interframe_regularizer,
)


def _small(**kwargs):
    return reidzoo.create_model('sta_resnet50', backbone='resnet18', **kwargs)


def _reference_fusion(f: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 1-4 and Algorithm 1 one frame, block and position at a time (``f``: one clip ``(T, D, h, w)``)."""
    t, d, h, w = f.shape
    hs = h // k
    g = torch.zeros(t, h, w, dtype=f.dtype)
    for n in range(t):
        energy = [[float(sum(f[n, c, i, j] ** 2 for c in range(d))) for j in range(w)] for i in range(h)]
        total = sum(sum(row) for row in energy)
        for i in range(h):
            for j in range(w):
                g[n, i, j] = energy[i][j] / total
    s = torch.tensor([[float(g[n, hs * b:hs * (b + 1)].sum()) for b in range(k)] for n in range(t)], dtype=f.dtype)
    s = s / s.sum(dim=0, keepdim=True)
    f1 = torch.zeros(d, h, w, dtype=f.dtype)
    f2 = torch.zeros(d, h, w, dtype=f.dtype)
    for b in range(k):
        rows = slice(hs * b, hs * (b + 1))
        f1[:, rows] = f[int(s[:, b].argmax()), :, rows]
        for n in range(t):
            f2[:, rows] += f[n, :, rows] * s[n, b]
    return torch.cat([f1, f2], dim=0)


def test_attention_maps_and_scores_follow_eq_1_to_4():
    torch.manual_seed(0)
    x = F.relu(torch.randn(3, 5, 7, 8, 2, dtype=torch.float64))
    g = sta_attention_maps(x)
    torch.testing.assert_close(g, x.square().sum(2) / x.square().sum((2, 3, 4))[..., None, None])
    torch.testing.assert_close(g.sum((-2, -1)), torch.ones(3, 5, dtype=torch.float64))
    s = sta_block_scores(g, num_blocks=4)
    assert s.shape == (3, 5, 4)
    torch.testing.assert_close(s.sum(dim=1), torch.ones(3, 4, dtype=torch.float64))  # per block, over frames
    assert (s >= 0).all()


@pytest.mark.parametrize('t', [1, 3, 4])
def test_fusion_matches_algorithm_1(t):
    torch.manual_seed(t)
    x = F.relu(torch.randn(2, t, 3, 8, 2, dtype=torch.float64))
    fused = sta_fuse(x, sta_block_scores(sta_attention_maps(x), 4))
    for b in range(2):
        torch.testing.assert_close(fused[b], _reference_fusion(x[b], 4))


def test_identical_frames_give_same_embedding_for_any_t():
    torch.manual_seed(0)
    model = _small().eval()
    frame = torch.randn(2, 1, 3, 64, 32)
    with torch.no_grad():
        ref = model(frame)
        for t in (2, 4, 7):
            torch.testing.assert_close(model(frame.expand(-1, t, -1, -1, -1)), ref, rtol=1e-5, atol=1e-5)
        different = model(torch.randn(2, 4, 3, 64, 32))
    assert not torch.allclose(different, ref, atol=1e-3)


def test_regularizer():
    torch.manual_seed(0)
    same = torch.rand(1, 1, 4, 2).expand(3, 5, 4, 2).clone().requires_grad_(True)
    reg = sta_interframe_regularizer(same)
    assert reg.item() == 0.0
    reg.backward()
    assert torch.isfinite(same.grad).all()

    g = sta_attention_maps(torch.rand(4, 3, 6, 4, 2, dtype=torch.float64))
    reg = sta_interframe_regularizer(g, generator=torch.Generator().manual_seed(1))
    # the same draws by hand: two distinct frames per clip, Frobenius norm, mean over clips
    gen = torch.Generator().manual_seed(1)
    i = torch.randint(3, (4,), generator=gen)
    j = (i + torch.randint(1, 3, (4,), generator=gen)) % 3
    assert (i != j).all()
    expected = torch.stack([torch.linalg.matrix_norm(g[b, i[b]] - g[b, j[b]]) for b in range(4)]).mean()
    torch.testing.assert_close(reg, expected)
    assert reg > 0 and reg.dtype == torch.float64
    assert sta_interframe_regularizer(g[:, :1]).item() == 0.0  # T = 1: nothing to compare
    with pytest.raises(ValueError, match=r'\(B, T, h, w\).*\(4, 3, 8\)'):
        sta_interframe_regularizer(g.flatten(2))
    assert STA_REG_WEIGHT > 0


def test_train_outputs_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = _small(num_classes=7).train()
    for m in model.modules():  # timm zero-inits each block's last BN gamma, which blocks gradients at init
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    out = model(torch.randn(3, 4, 3, 64, 32))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 7) and out.embedding.shape == (3, model.num_features)
    att = out.aux['attention']
    assert att.shape == (3, 4, 4, 2)
    torch.testing.assert_close(att.sum((-2, -1)), torch.ones(3, 4))
    loss = F.cross_entropy(out.logits, torch.tensor([0, 1, 2])) + out.embedding.pow(2).mean() \
        + STA_REG_WEIGHT * sta_interframe_regularizer(att)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_eval_contract_any_t_and_bad_input():
    model = _small().eval()
    assert model.num_features == 1024
    with torch.no_grad():
        for t in (1, 2, 6):
            assert model(torch.randn(2, t, 3, 64, 32)).shape == (2, 1024)
        assert model(torch.randn(1, 3, 3, 128, 64)).shape == (1, 1024)
    with pytest.raises(ValueError, match=r'K=4.*\(1, 2, 3, 48, 32\)'):
        model(torch.randn(1, 2, 3, 48, 32))  # 3-row map cannot split into 4 blocks
    with pytest.raises(ValueError, match='5-D'):
        model(torch.randn(2, 3, 64, 32))


def test_dtypes():
    model = _small().eval()
    x = torch.randn(1, 3, 3, 64, 32)
    with torch.no_grad():
        assert model.double()(x.double()).dtype == torch.float64
        model.float()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert torch.isfinite(model(x).float()).all()


def test_cfg_and_full_size_parameter_count():
    model = reidzoo.create_model('sta_resnet50')
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 256, 128) and cfg['num_frames'] == 4
    assert cfg['test_sampling'] == 'all' and cfg['distance'] == 'euclidean'
    assert cfg['mean'] == (0.485, 0.456, 0.406) and cfg['std'] == (0.229, 0.224, 0.225)
    assert sum(p.numel() for p in model.parameters()) == 27_704_384
    assert sum(p.numel() for p in model.backbone.parameters()) == 23_508_032
    model.reset_classifier(625)
    assert sum(p.numel() for p in model.parameters()) == 27_704_384 + 640_625
    # last stride 1: the 2048-channel map of a 256x128 frame is 16x8
    layer4 = model.backbone.layer4[0]
    assert layer4.conv2.stride == (1, 1) and layer4.downsample[0].stride == (1, 1)
