"""timm backbones as re-ID trunks: staged access, "last stride 1", and the ImageNet starting weights.

Every family builds on a timm model chosen by name and keeps timm's parameter names under ``backbone.``, so
ImageNet weights load through timm's own Hub path and authors' checkpoints map onto timm keys with a rename.

"Last stride 1" here means what re-ID code means: the first block of the last stage gets stride 1 with no
dilation. timm's ``output_stride=16`` is *not* that (it dilates the later blocks), see
``../shared/design/conventions.md`` §6.
"""
from __future__ import annotations

from typing import Callable, Optional

import timm
import torch
import torch.nn as nn

__all__ = ['create_backbone', 'backbone_stem', 'backbone_stages', 'forward_frames', 'set_last_stride', 'stage_channels']


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
) -> torch.Tensor:
    """Run a clip batch ``(B, T, 3, H, W)`` through the trunk frame by frame (as one ``(B*T)`` image batch).

    Args:
        model: a ResNet-like timm trunk.
        x: the clips.
        after_stage: ``after_stage(i, maps)`` may rewrite the clip view ``(B, T, C, h, w)`` after stage ``i`` (0..3),
            where clip-level modules (COSAM, CSTNet's CSL + STI) sit.

    Returns:
        The last stage's per-frame maps ``(B, T, C, h, w)``.
    """
    b, t = x.shape[:2]
    y = backbone_stem(model)(x.flatten(0, 1))
    for i, stage in enumerate(backbone_stages(model)):
        y = stage(y)
        if after_stage is not None:
            y = after_stage(i, y.unflatten(0, (b, t))).flatten(0, 1)
    return y.unflatten(0, (b, t))


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
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool='', **kwargs)
    if last_stride is not None and hasattr(model, 'layer4'):
        set_last_stride(model.layer4, last_stride)
    if stem_pool_padding is not None:
        pool = getattr(model, 'maxpool', None) or getattr(model, 'pool0')
        pool.padding = stem_pool_padding
    return model
