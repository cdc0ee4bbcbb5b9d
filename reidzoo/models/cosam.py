"""COSAM: Co-segmentation inspired attention for video re-ID (Subramaniam, Nambiar & Mittal, ICCV 2019).

Paper: "Co-segmentation Inspired Attention Networks for Video-based Person Re-identification" (ICCV 2019); official
code: github.com/InnovArul/vidreid_cosegmentation
(``src/models/{cosam,ResNet,SE_ResNet,aggregation_layers}.py``). The authors released no weights; models here load
checkpoints trained with their code through :func:`convert_official_state_dict`.

A COSAM module sits after a backbone stage and sees the ``T`` frames of a clip together:

* spatial step: a 1x1 conv reduces the maps to ``D_R`` channels; every local descriptor is compared by normalised
  cross-correlation (NCC, :func:`reidzoo.layers.ncc_other_frames`) with every descriptor of the other ``T-1`` frames;
  this ``(T-1)·h·w``-channel cost volume is summarised into a spatial mask (sigmoid) that multiplies the input;
* channel step: an MLP on the global average of the masked maps gives per-frame channel importances, averaged over
  the ``T`` frames of the clip.

COSAM_{4,5} (after the 4th and 5th CNN blocks = timm stages ``layer3`` and ``layer4``) is the paper's default and
the only configuration of the authors' factory; TP / TA / RNN aggregation, last stride and the classifier are those
of :class:`~reidzoo.models.temporal.TemporalPoolingNet`.

Where paper and code differ, this follows the code (what checkpoints were trained with):

* the cost-volume summary is Conv1x1-BN-ReLU-Conv1x1 (paper: one 1x1 conv), then sigmoid;
* NCC z-normalises with the unbiased std plus ``1e-4`` and divides the dot product by ``D_R``;
* the channel step outputs ``x + x·m_c`` (paper: ``x·m_c``);
* ``D_R`` is 64 instead of 256 for stages with at most 256 channels.

A COSAM module is built for one ``T`` and one map size: its summary conv has ``(T-1)·h·w`` input channels.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from ..spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..layers.ncc import ncc_other_frames
from ._builder import build_model_with_cfg
from ._registry import register_model
from .temporal import TemporalPoolingNet

__all__ = ['COSAM', 'CosamNet', 'convert_official_state_dict', 'official_model_args']


class COSAM(nn.Module):
    """Co-segmentation attention over the ``T`` frames of each clip (spatial NCC mask, then clip-shared channel gate).

    Args:
        in_chs: channels of the stage output.
        num_frames: ``T``; fixes the summary conv's ``(T-1)·h·w`` input channels.
        feat_size: ``(h, w)`` of the stage output.
        reduced_chs: ``D_R``; default 256, or 64 when ``in_chs <= 256`` (the authors' rule).
        summary_chs: hidden channels of the cost-volume summary (64).
        eps: added to the std in the NCC normalisation (``1e-4``).
    """

    def __init__(
            self,
            in_chs: int,
            num_frames: int,
            feat_size: tuple[int, int],
            reduced_chs: int | None = None,
            summary_chs: int = 64,
            eps: float = 1e-4,
    ):
        super().__init__()
        if num_frames < 2:
            raise ValueError(f'COSAM correlates each frame with the others: num_frames must be >= 2, got {num_frames}.')
        self.num_frames = num_frames
        self.feat_size = tuple(feat_size)
        self.eps = eps
        reduced_chs = reduced_chs or (64 if in_chs <= 256 else 256)
        h, w = self.feat_size
        # layer names and Sequential indices follow the authors' module so their checkpoints map by prefix
        self.dim_reduction = nn.Sequential(
            nn.Conv2d(in_chs, reduced_chs, kernel_size=1), nn.BatchNorm2d(reduced_chs), nn.ReLU())
        self.spatial_mask_summary = nn.Sequential(
            nn.Conv2d((num_frames - 1) * h * w, summary_chs, kernel_size=1), nn.BatchNorm2d(summary_chs), nn.ReLU(),
            nn.Conv2d(summary_chs, 1, kernel_size=1))
        self.channelwise_attention = nn.Sequential(
            nn.Linear(in_chs, reduced_chs), nn.Tanh(), nn.Linear(reduced_chs, in_chs), nn.Sigmoid())

    def spatial_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*T, C, h, w)`` -> the co-segmentation mask ``(B*T, 1, h, w)`` in ``(0, 1)``."""
        r = self.dim_reduction(x)
        bt, _, h, w = r.shape
        t = self.num_frames
        cost = ncc_other_frames(r.flatten(2).unflatten(0, (bt // t, t)), eps=self.eps)  # (B, T, T-1, hw, hw)
        return self.spatial_mask_summary(cost.reshape(bt, (t - 1) * h * w, h, w)).sigmoid()

    def channel_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*T, C, h, w)`` -> channel importances shared by the frames of a clip, ``(B*T, C, 1, 1)``."""
        m = self.channelwise_attention(x.mean(dim=(2, 3))).unflatten(0, (-1, self.num_frames))
        return m.mean(dim=1, keepdim=True).expand_as(m).flatten(0, 1)[..., None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*T, C, h, w)`` frames of ``B`` clips of ``T = num_frames`` -> same shape."""
        bt, _, h, w = x.shape
        if (h, w) != self.feat_size or bt % self.num_frames:
            raise ValueError(
                f'COSAM was built for clips of {self.num_frames} frames with {self.feat_size[0]}x{self.feat_size[1]} '
                f'maps, i.e. input (B*{self.num_frames}, C, {self.feat_size[0]}, {self.feat_size[1]}); got '
                f'{tuple(x.shape)}. Build the model with the num_frames and img_size you feed.')
        x = x * self.spatial_mask(x)
        return x + x * self.channel_mask(x)


class CosamNet(TemporalPoolingNet):
    """A ResNet-like timm backbone with COSAM modules after chosen CNN blocks, then TP / TA / RNN aggregation.

    Takes clips of exactly ``num_frames`` frames of exactly ``img_size`` (the COSAM summary convs depend on both).
    """

    def __init__(
            self,
            backbone: str = 'resnet50',
            aggregation: str = 'tp',
            num_classes: int = 0,
            num_frames: int = 4,
            img_size: tuple[int, int] = (256, 128),
            cosam_blocks: Sequence[int] = (4, 5),
            **kwargs: Any,
    ):
        """
        Args:
            backbone: timm ResNet-like model name (``resnet50``, ``legacy_seresnet50``, ``resnet18``, ...).
            aggregation: ``'tp'``, ``'ta'`` or ``'rnn'``.
            num_classes: identity classifier size (0: none).
            num_frames: ``T`` the COSAM modules are built for (4 in the paper).
            img_size: input ``(H, W)``; fixes the COSAM and TA map sizes.
            cosam_blocks: the paper's CNN block indices after which COSAM is plugged (block ``i`` = timm stage
                ``layer{i-1}``, ``i`` in 2..5); ``(4, 5)`` = COSAM_{4,5}, the paper's default.
            **kwargs: :class:`~reidzoo.models.temporal.TemporalPoolingNet` arguments (``last_stride``,
                ``rnn_hidden_size``, ``pretrained_backbone``, timm backbone kwargs).
        """
        super().__init__(backbone=backbone, aggregation=aggregation, num_classes=num_classes, num_frames=num_frames,
                         img_size=img_size, **kwargs)
        if any(i not in (2, 3, 4, 5) for i in cosam_blocks):
            raise ValueError(f'cosam_blocks are CNN block indices 2..5 (block i follows timm stage layer{{i-1}}), '
                             f'got {tuple(cosam_blocks)}.')
        self.cosam_blocks = tuple(sorted(set(cosam_blocks)))
        # the trunk's real map sizes (TemporalPoolingNet.stage_sizes), so any frame size the trunk takes works
        self.cosam = nn.ModuleDict({
            f'layer{i - 1}': COSAM(self.stage_channels[i - 2], num_frames, self.stage_sizes[i - 2])
            for i in self.cosam_blocks})
        self.supported_num_frames = (num_frames,)
        self.fixed_input_size = self.img_size

    def after_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        name = f'layer{index + 1}'
        return self.cosam[name](x.flatten(0, 1)).unflatten(0, x.shape[:2]) if name in self.cosam else x


def _infer_arch(state_dict: dict[str, torch.Tensor], prefix: str) -> str:
    """The architecture of a COSAM state dict: SE trunk if ``{prefix}layer0.`` keys exist, aggregation from its keys."""
    keys = [k[len('module.'):] if k.startswith('module.') else k for k in state_dict]
    se = any(k.startswith(f'{prefix}layer0.') for k in keys)
    aggregation = 'ta' if 'aggregation.attention_conv.weight' in keys else \
        'rnn' if 'aggregation.lstm.weight_ih_l0' in keys else 'tp'
    return f'cosam_{"seresnet50" if se else "resnet50"}_{aggregation}'


def official_model_args(state_dict: dict[str, torch.Tensor], arch: Optional[str] = None) -> tuple[str, dict]:
    """``(arch, model kwargs)`` that a *converted* state dict loads into: the trunk and aggregation from its keys,
    ``num_classes`` from the classifier, ``num_frames`` from the layer3 COSAM summary conv (``(T-1)·16·8`` input
    channels at the authors' 256x128)."""
    arch = arch or _infer_arch(state_dict, 'backbone.')
    kwargs: dict[str, Any] = {}
    classifier = state_dict.get('classifier.weight')
    kwargs['num_classes'] = int(classifier.shape[0]) if classifier is not None else 0
    summary = state_dict.get('cosam.layer3.spatial_mask_summary.0.weight')
    if summary is not None:
        kwargs['num_frames'] = summary.shape[1] // (16 * 8) + 1
    return arch, kwargs


def _parse_arch(arch: str) -> tuple[bool, str]:
    """(is SE-ResNet, aggregation) from a reidzoo (``cosam_seresnet50_tp``) or an authors' name."""
    m = re.fullmatch(r'cosam_(resnet50|seresnet50)_(tp|ta|rnn)', arch) or \
        re.fullmatch(r'(resnet50|se_resnet50)_cosam45_(tp|ta|rnn)', arch)
    if m is None:
        raise ValueError(f'Unknown COSAM architecture {arch!r}: use cosam_{{resnet50,seresnet50}}_{{tp,ta,rnn}} or the '
                         f'authors\' {{resnet50,se_resnet50}}_cosam45_{{tp,ta,rnn}}.')
    return m.group(1) != 'resnet50', m.group(2)


def convert_official_state_dict(
        state_dict: dict[str, torch.Tensor],
        arch: Optional[str] = None,
        **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Rename a state dict saved by the authors' code to this module's keys.

    The authors save ``{'state_dict': model.state_dict(), 'rank1': ..., 'epoch': ...}`` with no ``module.`` prefix
    (a ``module.`` prefix or the wrapping dict is accepted too). Their ResNet-50 trunk is torchvision's as an
    ``nn.Sequential`` (``base.0`` conv1, ``base.1`` bn1, ``base.4..7`` layer1..4); their SE-ResNet-50 trunk is
    Cadene's, whose names equal timm ``legacy_seresnet50``'s. COSAM modules live at
    ``attention_modules.attention_modules.{i}`` with ``i`` = their stage index (ResNet: 2, 3; SE: 3, 4).

    Args:
        state_dict: the authors' state dict (or their checkpoint dict holding it under ``'state_dict'``).
        arch: ``cosam_{resnet50,seresnet50}_{tp,ta,rnn}`` or the authors' ``{resnet50,se_resnet50}_cosam45_*``;
            ``None`` infers it from the keys (SE trunk: ``base.layer0.*``; TA / RNN: their aggregation keys).

    Returns:
        A state dict for ``create_model(<arch>)`` that loads strictly.
    """
    if isinstance(state_dict.get('state_dict'), dict):
        state_dict = state_dict['state_dict']
    is_se, _ = _parse_arch(arch or _infer_arch(state_dict, 'base.'))
    # authors' attention-list index -> our stage name: ResNet [stem+layer1, layer2, layer3, layer4]; SE [layer0..4]
    attention_offset = 0 if is_se else 1
    resnet_base = {'0': 'conv1', '1': 'bn1', '4': 'layer1', '5': 'layer2', '6': 'layer3', '7': 'layer4'}
    out = {}
    for key, value in state_dict.items():
        k = key[len('module.'):] if key.startswith('module.') else key
        if k.startswith('base.'):
            rest = k[len('base.'):]
            if not is_se:
                idx, _, tail = rest.partition('.')
                if idx not in resnet_base:
                    raise KeyError(f'Unexpected ResNet-50 trunk key {key!r} in the COSAM checkpoint.')
                rest = f'{resnet_base[idx]}.{tail}'
            new = f'backbone.{rest}'
        elif k.startswith('attention_modules.attention_modules.'):
            idx, _, tail = k[len('attention_modules.attention_modules.'):].partition('.')
            new = f'cosam.layer{int(idx) + attention_offset}.{tail}'
        elif k.startswith(('aggregation.', 'classifier.')):
            new = k
        else:
            raise KeyError(f'Unexpected key {key!r} in the COSAM checkpoint (arch {arch}).')
        out[new] = value
    return out


def _create_cosam(variant: str, pretrained: bool = False, **kwargs) -> CosamNet:
    return build_model_with_cfg(CosamNet, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        'input_size': (3, 256, 128), 'num_frames': 4, 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'interpolation': 'bilinear', 'test_sampling': 'dense', 'distance': 'sqeuclidean',
        'first_conv': 'backbone.conv1', 'classifier': 'classifier', 'license': 'apache-2.0',
        'paper_name': 'Co-segmentation Inspired Attention Networks for Video-based Person Re-identification',
        'paper_ids': 'ICCV 2019',
        'origin_url': 'https://github.com/InnovArul/vidreid_cosegmentation',
        **kwargs,
    }


_SE = {'first_conv': 'backbone.layer0.conv1'}
default_cfgs = {
    'cosam_resnet50_tp': _cfg(),
    'cosam_resnet50_ta': _cfg(),
    'cosam_resnet50_rnn': _cfg(),
    'cosam_seresnet50_tp': _cfg(**_SE),
    'cosam_seresnet50_ta': _cfg(**_SE),
    'cosam_seresnet50_rnn': _cfg(**_SE),
}


@register_model
def cosam_resnet50_tp(pretrained: bool = False, **kwargs) -> CosamNet:
    """ResNet-50 + COSAM_{4,5} + temporal average pooling, last stride 1 (authors' ``resnet50_cosam45_tp``)."""
    model_args = dict(backbone='resnet50', aggregation='tp')
    return _create_cosam('cosam_resnet50_tp', pretrained, **dict(model_args, **kwargs))


@register_model
def cosam_resnet50_ta(pretrained: bool = False, **kwargs) -> CosamNet:
    """ResNet-50 + COSAM_{4,5} + temporal attention on 8x4 maps (authors' ``resnet50_cosam45_ta``)."""
    model_args = dict(backbone='resnet50', aggregation='ta')
    return _create_cosam('cosam_resnet50_ta', pretrained, **dict(model_args, **kwargs))


@register_model
def cosam_resnet50_rnn(pretrained: bool = False, **kwargs) -> CosamNet:
    """ResNet-50 + COSAM_{4,5} + LSTM aggregation, last stride 1 (authors' ``resnet50_cosam45_rnn``)."""
    model_args = dict(backbone='resnet50', aggregation='rnn')
    return _create_cosam('cosam_resnet50_rnn', pretrained, **dict(model_args, **kwargs))


@register_model
def cosam_seresnet50_tp(pretrained: bool = False, **kwargs) -> CosamNet:
    """SE-ResNet-50 (``legacy_seresnet50``) + COSAM_{4,5} + TP: the paper's best model (``se_resnet50_cosam45_tp``)."""
    model_args = dict(backbone='legacy_seresnet50', aggregation='tp')
    return _create_cosam('cosam_seresnet50_tp', pretrained, **dict(model_args, **kwargs))


@register_model
def cosam_seresnet50_ta(pretrained: bool = False, **kwargs) -> CosamNet:
    """SE-ResNet-50 (``legacy_seresnet50``) + COSAM_{4,5} + TA (authors' ``se_resnet50_cosam45_ta``)."""
    model_args = dict(backbone='legacy_seresnet50', aggregation='ta')
    return _create_cosam('cosam_seresnet50_ta', pretrained, **dict(model_args, **kwargs))


@register_model
def cosam_seresnet50_rnn(pretrained: bool = False, **kwargs) -> CosamNet:
    """SE-ResNet-50 (``legacy_seresnet50``) + COSAM_{4,5} + RNN (authors' ``se_resnet50_cosam45_rnn``)."""
    model_args = dict(backbone='legacy_seresnet50', aggregation='rnn')
    return _create_cosam('cosam_seresnet50_rnn', pretrained, **dict(model_args, **kwargs))
