"""SINet / SBNet / IDNet: contract, plug-in behaviour, input checks, dtypes and the paper's parameter counts."""
import pytest
import torch
import torch.nn.functional as F

import reidzoo
from reidzoo.models import ModelOutput
from reidzoo.models.sinet import (
    SINet, IntegrationDistributionModule, SalientToBroadModule,
)

ARCHS = ('sinet_resnet50', 'sbnet_resnet50', 'idnet_resnet50')
# resnet18 has 2 blocks per stage: put the plug-ins after the blocks that exist (the order and split positions
# are the authors'); 128x64 frames give 16x8 layer2 and 8x4 layer3 maps.
SMALL = dict(backbone='resnet18', img_size=(128, 64))
SMALL_PLUGINS = {
    'sinet_resnet50': dict(idm_after=(0, 1), sbm_after=(0, 1, 1)),
    'sbnet_resnet50': dict(sbm_after=(0, 1, 1)),
    'idnet_resnet50': dict(idm_after=(0, 1)),
}


def small(arch: str, **kwargs) -> SINet:
    torch.manual_seed(0)
    return reidzoo.create_model(arch, **SMALL, **SMALL_PLUGINS[arch], **kwargs)


def clip(b=2, t=4, h=128, w=64, dtype=torch.float32, seed=0):
    return torch.randn(b, t, 3, h, w, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def test_registered_with_cfg():
    assert set(ARCHS) <= set(reidzoo.list_models('*net_resnet50'))
    for arch in ARCHS:
        cfg = reidzoo.models.get_arch_default_cfg(arch)
        assert cfg['input_size'] == (3, 256, 128) and cfg['num_frames'] == 4
        assert cfg['mean'] == (0.485, 0.456, 0.406) and cfg['std'] == (0.229, 0.224, 0.225)
        assert (cfg['interpolation'], cfg['test_sampling'], cfg['distance']) == ('bicubic', 'interleaved', 'cosine')
        assert 'Salient-to-Broad' in cfg['paper_name']


# the authors' inflated convs carry 53 biases (1 stem + 16 x 3 block convs + 4 downsample convs) that the converter
# folds into the following BN; their sizes are the conv output channels: 64 + (3*384 + 256) + (4*768 + 512)
# + (6*1536 + 1024) + (3*3072 + 2048)
AUTHORS_CONV_BIASES = 64 + (3 * 384 + 256) + (4 * 768 + 512) + (6 * 1536 + 1024) + (3 * 3072 + 2048)


@pytest.mark.parametrize('arch,without_head,with_625', [
    ('sinet_resnet50', 26.26, 31.74), ('sbnet_resnet50', 25.14, 30.62), ('idnet_resnet50', 24.66, 25.94)])
def test_parameter_counts_match_the_authors(arch, without_head, with_625):
    """The authors' model (baist/SINet `models/resnet.py`, num_classes=625): ours + their conv biases."""
    assert AUTHORS_CONV_BIASES == 26560
    model = reidzoo.create_model(arch, num_classes=625)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.classifier.parameters())
    if model.projection is not None:
        head += sum(p.numel() for p in model.projection.parameters())
    assert round((total + AUTHORS_CONV_BIASES) / 1e6, 2) == with_625
    assert round((total - head + AUTHORS_CONV_BIASES) / 1e6, 2) == without_head
    assert (model.projection is not None) == (arch != 'idnet_resnet50')
    assert model.feat_sizes == [(63, 31), (32, 16), (16, 8), (16, 8)]  # unpadded stem pool: 63x31 layer1 maps
    if arch != 'sbnet_resnet50':
        assert model.idm[0].thw_reduction[0].weight.shape == (128, 2048, 1, 1)  # t*32*16 -> /16
        assert model.idm[0].chl_reduction[0].weight.shape == (32, 512, 1, 1)
    if arch != 'idnet_resnet50':
        assert model.sbm[2].kernel[0].weight.shape == (9, 1024, 1, 1)
        assert [m.split_pos for m in model.sbm] == [0, 1, 2]


def test_stage_sizes_match_a_real_forward():
    model = small('sinet_resnet50')
    from reidzoo.models._backbone import backbone_stages, backbone_stem, stage_output_sizes
    y = backbone_stem(model.backbone)(torch.zeros(1, 3, 128, 64))
    sizes = []
    for stage in backbone_stages(model.backbone):
        y = stage(y)
        sizes.append(tuple(y.shape[-2:]))
    assert sizes == stage_output_sizes(model.backbone, (128, 64)) == model.feat_sizes


def test_eval_full_size_embedding():
    model = reidzoo.create_model('sinet_resnet50').eval()
    x = torch.randn(1, 4, 3, 256, 128)
    with torch.no_grad():
        emb = model(x)
        maps = model.forward_features(x)
    assert emb.shape == (1, 2048) == (1, model.num_features)
    assert maps.shape == (1, 4, 2048, 16, 8)
    # BN per frame then the average (the authors' test path); equal to BN of the average since eval BN is affine
    frames = maps.amax(dim=(-2, -1)).transpose(1, 2)
    torch.testing.assert_close(emb, model.bn(frames).mean(-1))
    torch.testing.assert_close(emb, model.bn(frames.mean(-1)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('arch', ARCHS)
def test_train_outputs(arch):
    model = small(arch, num_classes=7).train()
    out = model(clip())
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 512)
    if arch == 'idnet_resnet50':
        assert 'frame_projection' not in out.aux
    else:
        assert out.aux['frame_projection'].shape == (2, 512, 4)
    model.eval()
    with torch.no_grad():
        assert model(clip()).shape == (2, 512)


def test_frame_projection_is_projected_per_frame_bn_features():
    model = small('sbnet_resnet50', num_classes=3).train()
    x = clip()
    out = model(x)
    bn_state = {k: v.clone() for k, v in model.bn.state_dict().items()}
    with torch.no_grad():
        frames = model.frame_features(model.forward_features(x))
        torch.testing.assert_close(out.embedding, F.batch_norm(frames.mean(-1), None, None, model.bn.weight,
                                                               model.bn.bias, training=True))
        expected = model.projection(F.batch_norm(frames, None, None, model.bn.weight, model.bn.bias, training=True))
    torch.testing.assert_close(out.aux['frame_projection'], expected)
    assert bn_state['num_batches_tracked'] == 2  # the authors call the BN neck twice per step


def test_input_checks():
    sinet = small('sinet_resnet50').eval()
    with pytest.raises(ValueError, match=r'\[4\].*\(2, 3, 3, 128, 64\)'):
        sinet(clip(t=3))
    with pytest.raises(ValueError, match=r'128x64.*\(2, 4, 3, 96, 64\)'):
        sinet(clip(h=96))
    with pytest.raises(ValueError, match=r'\[4\]'):
        sinet(clip(t=8))  # IDM is built for one T
    sbnet = small('sbnet_resnet50').eval()
    with pytest.raises(ValueError, match=r'\[4, 8\].*\(2, 3, 3, 128, 64\)'):
        sbnet(clip(t=3))
    with pytest.raises(ValueError, match=r'\(2, 4, 3, 32, 32\).*3x3'):
        sbnet(clip(h=32, w=32))
    with torch.no_grad():
        assert sbnet(clip(t=8)).shape == (2, 512)  # SBM takes 8 frames as two 4-frame halves
        assert sbnet(clip(h=96, w=48)).shape == (2, 512)  # no IDM: any size with >= 3x3 layer3 maps
    with pytest.raises(ValueError, match=r'num_frames=5'):
        small('sinet_resnet50', num_frames=5)
    with pytest.raises(ValueError, match=r'idm_after=\(1, 3\).*blocks 0\.\.1'):
        reidzoo.create_model('idnet_resnet50', **SMALL)  # resnet18 has no layer2 block 3
    eight = small('sinet_resnet50', num_frames=8).eval()
    with torch.no_grad():
        assert eight(clip(b=1, t=8)).shape == (1, 512)


def _grad_norms(model, loss):
    model.zero_grad()
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_gradients_reach_every_parameter():
    model = small('sinet_resnet50', num_classes=5).train()
    with torch.no_grad():
        # zero-initialised layers (IDM expansions; timm's zero_init_last BN of each residual branch) block the
        # gradient at init; trained (ImageNet) weights are not zero, so test with non-zero ones
        for m in model.idm:
            m.chl_expansion[0].weight.normal_(0, 0.05)
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.any():
                m.weight.fill_(1)
    out = model(clip())
    loss = F.cross_entropy(out.logits, torch.tensor([0, 3])) + out.embedding.square().mean() \
        + out.aux['frame_projection'].square().mean()
    grads = _grad_norms(model, loss)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
    # a bias straight before a train-mode BN gets (numerically) no gradient: BN removes constants
    before_bn = ('kernel.0.bias', 'chl_reduction.0.bias', 'thw_reduction.0.bias')
    zero = [n for n, g in grads.items() if g.abs().max() == 0 and not n.endswith(before_bn)]
    assert not zero, zero


def test_float64_and_bfloat16_autocast():
    model = small('sinet_resnet50', num_classes=4).double()
    out = model.train()(clip(dtype=torch.float64))
    assert out.logits.dtype == out.embedding.dtype == out.aux['frame_projection'].dtype == torch.float64
    with torch.no_grad():
        emb = model.eval()(clip(dtype=torch.float64))
    assert emb.dtype == torch.float64 and torch.isfinite(emb).all()
    model = small('sinet_resnet50', num_classes=4).eval()
    x = clip()
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    assert F.cosine_similarity(low.float(), ref).min() > 0.95


def test_paper_options():
    model = small('sinet_resnet50', idm_reduction=4, cpm='paper').eval()
    positions = 4 * 16 * 8
    assert model.idm[0].thw_reduction[0].weight.shape == (positions // 4, positions, 1, 1)
    assert all(m.cpm == 'paper' for m in model.sbm)
    with torch.no_grad():
        assert torch.isfinite(model(clip())).all()
    with pytest.raises(ValueError, match='cpm'):
        small('sinet_resnet50', cpm='eq5')


# --- the plug-ins on their own ----------------------------------------------------------------------------------
def _sbm(pos, **kw):
    torch.manual_seed(1)
    return SalientToBroadModule(32, pos, **kw).eval()


@pytest.mark.parametrize('pos', [0, 1, 2])
def test_sbm_suppresses_only_later_frames(pos):
    """With alpha=0 CPM adds nothing: former frames pass unchanged, later frames are scaled by S in (0, 1]."""
    x = torch.rand(2, 4, 32, 6, 5, generator=torch.Generator().manual_seed(pos)) * 3
    y = _sbm(pos, cpm_alpha=0.0)(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :pos + 1], x[:, :pos + 1])
    later, out = x[:, pos + 1:], y[:, pos + 1:]
    assert (out <= later + 1e-6).all() and (out < later - 1e-4).any()  # something salient got suppressed
    scale = out / later.clamp_min(1e-6)
    # one suppression map per frame and position, shared by all channels
    torch.testing.assert_close(scale.amax(2), scale.amin(2), rtol=1e-4, atol=1e-4)


def test_sbm_eight_frames_are_two_halves():
    m = _sbm(1)
    x = torch.rand(3, 8, 32, 6, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m(x), torch.cat([m(x[:, :4]), m(x[:, 4:])], dim=1))
    with pytest.raises(ValueError, match=r'multiple of 4.*\(3, 6, 32, 6, 5\)'):
        m(x[:, :6])


def test_sbm_cpm_code_vs_paper():
    x = torch.rand(2, 4, 32, 6, 5, generator=torch.Generator().manual_seed(0))
    code, paper, none = _sbm(0)(x), _sbm(0, cpm='paper')(x), _sbm(0, cpm_alpha=0.0)(x)
    # Eq. 6 adds alpha * (sum over former frames of GAP); with one former frame it equals the code's clip average
    torch.testing.assert_close(code[:, 1:], paper[:, 1:])
    torch.testing.assert_close(code[:, 1:] - none[:, 1:], 0.1 * x[:, :1].mean(dim=(3, 4), keepdim=True).expand_as(
        none[:, 1:]))
    assert not torch.allclose(code[:, :1], paper[:, :1])  # Eq. 5 sums, the code takes a (1-S)-weighted mean


def test_sbm_constant_input_is_finite():
    """No suppression at all (uniform response) is 0/0 in the authors' CPM; here it stays finite."""
    x = torch.ones(1, 4, 32, 6, 5)
    assert torch.isfinite(_sbm(0)(x)).all()


def test_idm_starts_as_identity_and_checks_shape():
    m = IntegrationDistributionModule(32, num_frames=4, feat_size=(6, 4)).eval()
    x = torch.rand(2, 4, 32, 6, 4)
    torch.testing.assert_close(m(x), x)  # zero-initialised expansion, ReLU of a non-negative input
    assert m.thw_reduction[0].weight.shape == (4 * 6 * 4 // 16, 96, 1, 1)
    with torch.no_grad():
        m.chl_expansion[0].weight.normal_()
    assert not torch.allclose(m(x), x)
    with pytest.raises(ValueError, match=r'4 frames of 6x4.*\(2, 3, 32, 6, 4\)'):
        m(x[:, :3])


def test_idm_mixes_frames():
    """A change in one frame reaches the others (message passing over t*h*w), unlike a per-frame module."""
    torch.manual_seed(0)
    m = IntegrationDistributionModule(32, num_frames=4, feat_size=(6, 4)).eval()
    with torch.no_grad():
        m.chl_expansion[0].weight.normal_()
    x = torch.rand(1, 4, 32, 6, 4)
    x2 = x.clone()
    x2[:, 0] += 1
    assert not torch.allclose(m(x)[:, 3], m(x2)[:, 3])
