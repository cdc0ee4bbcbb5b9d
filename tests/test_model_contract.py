"""The model contract every registered architecture keeps (timm's model tests, for clips).

Small trunks (timm's ``test_resnet`` / ``legacy_seresnet18``, Inception-v3 at 75x75 for STMP) and small frames keep
this file fast; the behaviour tested is the architecture code around the trunk, which is the same at full size.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn

import reidzoo
from reidzoo.models._backbone import create_backbone, stage_output_sizes

ARCHS = reidzoo.list_models()
# one architecture per code path (aggregation, COSAM on either trunk layout, each SINet variant, ...): the tests
# that trace, compile or train run on these; the cheap checks run on every registered architecture
FAMILIES = ['tp_resnet50', 'ta_resnet50', 'rnn_seresnet50', 'cosam_resnet50_ta', 'cosam_seresnet50_rnn',
            'cosam_resnet50_tp', 'sinet_resnet50', 'sbnet_resnet50', 'idnet_resnet50', 'sta_resnet50',
            'stmp_inception_v3', 'cstnet_resnet50']

SINET_PLUGINS = {  # test_resnet has one block per stage: one IDM / SBM after it
    'sinet_resnet50': dict(idm_after=(0,), sbm_after=(0,)),
    'sbnet_resnet50': dict(sbm_after=(0,)),
    'idnet_resnet50': dict(idm_after=(0,)),
}


def small_kwargs(arch: str, img_size=None) -> dict:
    """Architecture arguments of a small variant of ``arch`` (same family code, tiny trunk, small frames)."""
    if arch.startswith('stmp'):
        return dict(img_size=img_size or (75, 75), num_frames=4, aux_logits=False)
    trunk = 'legacy_seresnet18' if 'seresnet' in arch else 'test_resnet'
    if arch in SINET_PLUGINS:
        return dict(backbone=trunk, img_size=img_size or (96, 48), **SINET_PLUGINS[arch])
    return dict(backbone=trunk, img_size=img_size or (64, 32))


def calibrate(model: nn.Module) -> nn.Module:
    """Give BatchNorm running statistics from one train-mode pass, so eval activations have realistic scales
    (random init keeps mean 0 / var 1 and lets deep trunks blow up, which would test float32 rounding only)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(2, model.num_frames, 3, *model.img_size, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def build(arch: str, calibrated: bool = False, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = reidzoo.create_model(arch, **dict(small_kwargs(arch), **kwargs)).eval()
    return calibrate(model) if calibrated else model


@functools.lru_cache(maxsize=None)
def cached(arch: str) -> nn.Module:
    """A shared small model for tests that do not change it."""
    return build(arch)


def clips(model: nn.Module, b: int, t=None, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t or model.num_frames, 3, *model.img_size, generator=torch.Generator().manual_seed(seed))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# --- shapes ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_img_size_num_frames_and_empty_batch(arch):
    model = cached(arch)
    assert tuple(model.img_size) == small_kwargs(arch)['img_size']
    assert model.num_frames == small_kwargs(arch).get('num_frames', model.pretrained_cfg['num_frames'])
    with torch.no_grad():
        out = model(clips(model, 0))
    assert out.shape == (0, model.num_features)  # CSTNet and SINet raised on an empty batch


@pytest.mark.parametrize('backbone,last_stride,pool_padding', [
    ('resnet18', 1, None), ('resnet18', 2, None), ('resnet18', 1, 0), ('legacy_seresnet18', 1, None),
    ('test_resnet', 2, None)])
@pytest.mark.parametrize('size', [(256, 128), (224, 112), (100, 50), (97, 45)])
def test_stage_output_sizes_equal_a_real_forward(backbone, last_stride, pool_padding, size):
    trunk = create_backbone(backbone, last_stride=last_stride, stem_pool_padding=pool_padding).eval()
    y = trunk.maxpool(trunk.act1(trunk.bn1(trunk.conv1(torch.zeros(1, 3, *size))))) if hasattr(trunk, 'conv1') \
        else trunk.pool0(trunk.layer0(torch.zeros(1, 3, *size)))
    real = []
    with torch.no_grad():
        for i in range(1, 5):
            y = getattr(trunk, f'layer{i}')(y)
            real.append(tuple(y.shape[-2:]))
    assert stage_output_sizes(trunk, size) == real


def test_stage_output_sizes_names_a_size_the_trunk_cannot_take():
    with pytest.raises(ValueError, match='1x1 frames'):
        stage_output_sizes(create_backbone('test_resnet', stem_pool_padding=0), (1, 1))


GRID = [(64, 32), (100, 50), (128, 60), (224, 112)]


@pytest.mark.parametrize('arch', FAMILIES)
def test_every_frame_size_the_trunk_takes(arch):
    """Not only multiples of 32: ta_resnet50 at 224x112 and cosam_resnet50_ta at 100x50 crashed ("built for 7x3
    maps, got 7x4") because map sizes were computed with floor division in some families and ceil in others."""
    grid = [(75, 75), (99, 83)] if arch.startswith('stmp') else GRID
    for size in grid:
        try:
            model = reidzoo.create_model(arch, **small_kwargs(arch, size)).eval()
        except ValueError as e:
            # only STA (the map height must split into 4 blocks) and SBM (at least 3x3 layer3 maps) refuse a size
            # the trunk takes, and they name the rule
            assert (arch.startswith('sta') and 'blocks' in str(e)) or ('SBM needs at least 3x3' in str(e)), \
                (arch, size, e)
            continue
        with torch.no_grad():
            out = model(clips(model, 1))
        assert out.shape == (1, model.num_features) and torch.isfinite(out).all(), (arch, size)


def test_issue_cases_build_at_frame_sizes_not_multiples_of_32():
    for arch, size in (('ta_resnet50', (224, 112)), ('cosam_resnet50_ta', (100, 50))):
        model = reidzoo.create_model(arch, backbone='resnet50', img_size=size).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, 4, 3, *size)).shape == (1, model.num_features)


@pytest.mark.parametrize('arch', ['tp_resnet50', 'sinet_resnet50', 'stmp_inception_v3'])
def test_float16_input_to_a_float32_model_says_what_to_do(arch):
    model = cached(arch)
    with pytest.raises(ValueError, match=r'cast the input with x\.to\(torch\.float32\).*autocast'):
        model(clips(model, 1).half())
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        model(clips(model, 1).bfloat16())  # autocast handles mixed dtypes: no error


# --- timm API --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_reset_classifier_two_argument_form(arch):
    model = build(arch)
    model.reset_classifier(7, model.global_pool)  # timm's two-argument form raised TypeError
    assert model.num_classes == 7
    out = model.train()(clips(model, 2))
    assert out.logits.shape == (2, 7)
    model.reset_classifier(0)
    assert model.train()(clips(model, 2)).logits is None
    with pytest.raises(ValueError, match='part of the architecture'):
        model.reset_classifier(3, 'not-a-pool')


@pytest.mark.parametrize('arch', FAMILIES)
def test_grad_checkpointing_gives_the_same_gradients(arch):
    model = build(arch, num_classes=5)
    model.train()
    grads = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        torch.manual_seed(1)  # dropout, SBM / STA randomness: same draws in both runs
        out = model(clips(model, 2, seed=3))
        (out.logits.square().mean() + out.embedding.square().mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize('arch', FAMILIES)
def test_forward_intermediates(arch):
    model = cached(arch)
    x = clips(model, 2)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        only = model.forward_intermediates(x, indices=2, intermediates_only=True)
        ref = model.forward_features(x)
    assert len(maps) == 4 and all(m.shape[:2] == (2, model.num_frames) and m.dim() == 5 for m in maps)
    torch.testing.assert_close(final, ref)
    torch.testing.assert_close(maps[-1], ref)
    assert len(only) == 2 and only[-1].shape == maps[-1].shape


# --- tracing, memory formats, compilation ----------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_torch_export_with_a_dynamic_batch(arch):
    """STMP failed with "Constraints violated (batch)" (its frame chunking branched on the batch size)."""
    model = cached(arch)
    batch = torch.export.Dim('batch', min=1, max=64)
    program = torch.export.export(model, (clips(model, 2),), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        for b in (1, 3):
            x = clips(model, b, seed=b)
            torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('arch', FAMILIES)
def test_channels_last_model_and_input(arch):
    """STMP raised "required rank 4 tensor to use channels_last format" (STIM's 5-D Conv3d weights)."""
    model = build(arch, calibrated=True)
    x = clips(model, 2)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        frames = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        out = model(frames.unflatten(0, x.shape[:2]))
    # other conv kernels, other rounding; STMP's random Inception is ill-conditioned in float32 (see test_deploy)
    assert rel(out, ref) < (1e-4 if arch.startswith('stmp') else 1e-5)


def test_stmp_channels_last_keeps_conv3d_weights_and_checkpoint_keys():
    model = build('stmp_inception_v3')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.to(memory_format=torch.channels_last)
    weight = model.stim.t_info[3].weight
    assert weight.dim() == 5 and weight.is_contiguous(memory_format=torch.channels_last_3d)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) and after[k].shape == before[k].shape for k in before)
    model.double()  # other moves of the 5-D weights still work
    assert model.stim.t_info[3].weight.dtype == torch.float64


@pytest.mark.parametrize('arch', FAMILIES)
def test_no_graph_breaks(arch):
    """COSAM broke the graph 18-20 times (boolean-mask indexing in other_frame_index); the RNN aggregation broke it
    on the nn.LSTM module."""
    model = cached(arch)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(clips(model, 2))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['cosam_resnet50_tp', 'rnn_resnet50'])
def test_compile_fullgraph(arch):
    model = cached(arch)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend='eager')  # the graph capture is what is under test
    x = clips(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)


def test_imagenet_constants_are_timms():
    """reidzoo states the ImageNet normalisation itself (so the registry loads without timm): the same values."""
    import timm.data
    from reidzoo.spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    assert IMAGENET_DEFAULT_MEAN == tuple(timm.data.IMAGENET_DEFAULT_MEAN)
    assert IMAGENET_DEFAULT_STD == tuple(timm.data.IMAGENET_DEFAULT_STD)


def test_listing_models_does_not_import_timm():
    """`reidzoo list` reads the registry only; timm (seconds to import) loads when a model is built."""
    import subprocess
    import sys
    code = ('import sys, reidzoo; names = reidzoo.list_models(); '
            'assert len(names) > 10, names; assert "timm" not in sys.modules, "timm imported"; '
            'reidzoo.create_model("tp_resnet50", backbone="test_resnet"); assert "timm" in sys.modules')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
