"""timm backbones as re-ID trunks: staged access, "last stride 1", and the ImageNet starting weights.

Every family builds on a timm model chosen by name and keeps timm's parameter names under ``backbone.``, so
ImageNet weights load through timm's own Hub path and authors' checkpoints map onto timm keys with a rename.

"Last stride 1" here means what re-ID code means: the first block of the last stage gets stride 1 with no
dilation. timm's ``output_stride=16`` is *not* that (it dilates the later blocks and keeps a stride-16 map by
dilation, which changes what the pretrained filters see); see ``docs/deployment.md`` for how map sizes are derived.

Map sizes are never computed with a division rule of thumb: families ask :func:`stage_output_sizes`, which runs the
trunk on a ``meta`` tensor (shapes only, no memory, no arithmetic), so every padding, ``ceil_mode`` and last-stride
edit is accounted for exactly as the real forward does it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

__all__ = ['create_backbone', 'backbone_stem', 'backbone_stages', 'forward_frames', 'set_last_stride', 'stage_channels',
           'stage_output_sizes']


def set_last_stride(stage: nn.Module, stride: int = 1) -> None:
    """Set every strided conv/pool inside ``stage`` to ``stride`` (the COSAM/AP3D "last stride" edit).

    Works whatever block type holds the stride (conv1 in BasicBlock and legacy SE blocks, conv2 in torchvision-v1.5
    bottlenecks, an AvgPool in 'd'-style downsamples).
    """
    for parent in list(stage.modules()):
        for child_name, module in parent.named_children():
            if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                continue
            s = module.stride if isinstance(module.stride, tuple) else (module.stride, module.stride)
            if max(s) <= 1:
                continue
            if isinstance(module, nn.AvgPool2d) and stride == 1:
                # a 'd'-style average-pool downsample does nothing at stride 1 (timm uses Identity there too)
                setattr(parent, child_name, nn.Identity())
            else:
                module.stride = (stride, stride) if isinstance(module, nn.Conv2d) else stride


def backbone_stem(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stem of a timm ResNet-like model (conv, norm, act, pool), as a callable."""
    if hasattr(model, 'layer0'):  # timm legacy SENet (Cadene layout)
        return lambda x: model.pool0(model.layer0(x))
    if hasattr(model, 'conv1') and hasattr(model, 'maxpool'):  # timm ResNet
        return lambda x: model.maxpool(model.act1(model.bn1(model.conv1(x))))
    raise TypeError(f'{type(model).__name__} is not a ResNet-like timm model (no conv1/maxpool or layer0).')


def backbone_stages(model: nn.Module) -> list[nn.Module]:
    """The four residual stages (``layer1`` .. ``layer4``) of a timm ResNet-like model."""
    try:
        return [getattr(model, f'layer{i}') for i in range(1, 5)]
    except AttributeError as e:
        raise TypeError(f'{type(model).__name__} has no layer1..layer4 stages: choose a ResNet-like backbone.') from e


def forward_frames(
        model: nn.Module,
        x: torch.Tensor,
        after_stage: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None,
        *,
        grad_checkpointing: bool = False,
        intermediates: Optional[list[torch.Tensor]] = None,
) -> torch.Tensor:
    """Run a clip batch ``(B, T, 3, H, W)`` through the trunk frame by frame (as one ``(B*T)`` image batch).

    Args:
        model: a ResNet-like timm trunk.
        x: the clips.
        after_stage: ``after_stage(i, maps)`` may rewrite the clip view ``(B, T, C, h, w)`` after stage ``i`` (0..3),
            where clip-level modules (COSAM, CSTNet's CSL + STI) sit.
        grad_checkpointing: recompute each stage (with its ``after_stage`` modules) in the backward pass instead of
            keeping its activations: only the stage boundaries stay in memory while training.
        intermediates: if given, the clip maps ``(B, T, C, h, w)`` after each stage (and its ``after_stage``
            modules) are appended to it (``forward_intermediates``).

    Returns:
        The last stage's per-frame maps ``(B, T, C, h, w)``.
    """
    b, t = x.shape[:2]
    y = backbone_stem(model)(x.flatten(0, 1))
    for i, stage in enumerate(backbone_stages(model)):
        def run(z: torch.Tensor, i: int = i, stage: nn.Module = stage) -> torch.Tensor:
            z = stage(z)
            return after_stage(i, z.unflatten(0, (b, t))).flatten(0, 1) if after_stage is not None else z
        if grad_checkpointing and torch.is_grad_enabled():
            y = checkpoint(run, y, use_reentrant=False)
        else:
            y = run(y)
        if intermediates is not None:
            intermediates.append(y.unflatten(0, (b, t)))
    return y.unflatten(0, (b, t))


class _TrunkProbe(nn.Module):
    """Runs a trunk's feature path (what the families call) so ``functional_call`` can swap in meta tensors."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        if hasattr(b, 'forward_preaux'):  # Inception-v3: the aux head is not on the feature path
            return b.forward_postaux(b.forward_preaux(x))
        y = backbone_stem(b)(x)
        for stage in backbone_stages(b):
            y = stage(y)
        return y


def stage_output_sizes(backbone: nn.Module, img_size: tuple[int, int]) -> list[tuple[int, int]]:
    """``(h, w)`` of the maps after each of the trunk's last four feature stages for ``img_size`` frames.

    The trunk runs once on a ``torch.device('meta')`` tensor with meta copies of its parameters (no memory, no
    arithmetic: each op only computes its output shape), so the sizes are exactly what the strided convs and pools
    produce, ``floor((n + 2p - d(k-1) - 1) / s) + 1`` or the ``ceil_mode`` variant, whatever the trunk is: a
    ``'d'``-style average-pool downsample, SINet's unpadded stem pool, a last stride of 1, Inception's valid convs.
    Families build their size-dependent modules (TA kernel, COSAM/IDM/CSL summaries, RRU attention) from this, so a
    model runs at every ``H x W`` its trunk accepts.

    Args:
        backbone: a timm trunk with ``feature_info`` (ResNet-like: ``layer1..layer4``; or Inception-v3).
        img_size: input ``(H, W)``.

    Returns:
        Four ``(h, w)``: ``layer1..layer4`` for ResNet-like trunks (``Conv2d_4a, Mixed_5d, Mixed_6e, Mixed_7c`` for
        Inception-v3).

    Raises:
        ValueError: the trunk cannot take ``img_size`` (a kernel larger than a map, or an empty map).
    """
    h, w = (int(v) for v in img_size)
    names = [info['module'] for info in backbone.feature_info[-4:]]
    modules = dict(backbone.named_modules())
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: sizes.__setitem__(n, tuple(out.shape[-2:]))) for n in names]
    probe = _TrunkProbe(backbone)
    state = {k: torch.empty_like(v, device='meta') for k, v in probe.state_dict(keep_vars=True).items()}
    try:
        with torch.no_grad():
            # two frames: a train-mode BatchNorm refuses a single value per channel before any size is known
            functional_call(probe, state, (torch.empty(2, 3, h, w, device='meta'),))
    except (RuntimeError, ValueError) as e:
        raise ValueError(f'{type(backbone).__name__} cannot take {h}x{w} frames (H x W): {e}. Use larger frames '
                         f'(the model\'s pretrained_cfg["input_size"] gives the size it was built for).') from None
    finally:
        for hook in hooks:
            hook.remove()
    out = [sizes[n] for n in names]
    if min(min(s) for s in out) < 1:
        raise ValueError(f'{type(backbone).__name__} reduces {h}x{w} frames (H x W) to empty maps {out}: use larger '
                         f'frames.')
    return out


def stage_channels(model: nn.Module) -> list[int]:
    """Output channels of each of the four stages, read from timm's ``feature_info``."""
    return [info['num_chs'] for info in model.feature_info[-4:]]


def create_backbone(
        name: str,
        pretrained: bool = False,
        last_stride: Optional[int] = 1,
        stem_pool_padding: Optional[int] = None,
        **kwargs,
) -> nn.Module:
    """A headless timm model (``num_classes=0, global_pool=''``) with the re-ID edits applied.

    Args:
        name: timm model name, optionally with a pretrained tag (``'resnet50.tv_in1k'``).
        pretrained: load timm's ImageNet weights through timm's own Hub path (``HF_ENDPOINT`` honoured). Only for
            training from scratch: reidzoo checkpoints already hold the backbone.
        last_stride: stride of the last stage (1 for the re-ID "last stride 1"); ``None`` keeps timm's.
        stem_pool_padding: override the stem max-pool padding (SINet's inflated stem pools without padding).
    """
    import timm  # imported where a trunk is built, so the registry (`reidzoo list`) loads without timm's seconds
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool='', **kwargs)
    if last_stride is not None and hasattr(model, 'layer4'):
        set_last_stride(model.layer4, last_stride)
    if stem_pool_padding is not None:
        pool = getattr(model, 'maxpool', None) or getattr(model, 'pool0')
        pool.padding = stem_pool_padding
    return model
