"""CSTNet: Co-Saliency Spatio-Temporal Interaction Network (Liu, Zha, Zhu, Jiang, IJCAI 2020).

Paper: "Co-Saliency Spatio-Temporal Interaction Network for Person Re-Identification in Videos" (IJCAI 2020,
arXiv:2004.04979). No code exists (official or third-party);
this is a re-implementation from the text, with COSAM's NCC (``reidzoo.layers.ncc``, the authors' normalisation of
the NCC of Subramaniam et al. 2016, which CSTNet cites) as the closest reference for the co-saliency module.

* A ResNet-50 runs per frame; after three of its stages a co-saliency learning (CSL) module is followed by a
  spatial-temporal interaction (STI) module, both working on the ``(B, T, C, h, w)`` clip.
* CSL (§3.2, Eq. 1-3): two reductions of the input, ``C_L = 256`` channels at full resolution (spatial branch) and
  ``C`` channels at ``H_L x W_L`` (channel branch); NCC of each position's descriptor with every position of the
  other ``T-1`` frames, summarised by a 1x1 convolution into ``Z_s (1, h, w)``; NCC of each channel's spatial
  response with every channel of the other frames, summarised into ``Z_c (C, 1, 1)``; ``Z = sigmoid(Z_s ⊙ Z_c)``
  multiplies the input.
* STI (§3.3, Eq. 4-7): a spatial relation block (non-local within a frame, shared query/key conv, keys and values
  pooled to ``H_1 x W_1 = 16 x 8``, ``C_1 = 128``), a temporal relation block (non-local across frames at each
  position), and a fusion block ``F_f = a_s ⊙ F_s + a_t ⊙ F_t`` with ``a_s = sigmoid(W_s GAP(F_t))`` and
  ``a_t = sigmoid(W_t GAP(F_s))``; ``F_f`` is added to the module's input.
* Average pooling over frames and positions gives the clip feature (the embedding); the classifier is two FC layers.

Where the paper is ambiguous, and the reading chosen:

* **Which "residual layers".** "The backbone contains five residual layers ... CSL modules are plugged after the
  second, third and fourth residual layers" and STI's output "is fed into the next residual layer". Counting conv1
  as the first layer would put them after ``layer1..layer3``, but ``layer1`` has 256 channels, which contradicts
  ``C_L = 256 << C``, and its 64x32 map makes the NCC volume ``(T-1)·HW x HW = 7·2048²`` values per frame (0.9 GB
  per 8-frame clip, 60 GB for the paper's 64-clip batch): we insert after ``layer2``, ``layer3``, ``layer4``
  (C = 512, 1024, 2048; ``stages=(1, 2, 3)`` is configurable). After ``layer4`` the output goes to the pooling
  instead of a next layer.
* **Last stride.** Not stated; we use 1 (16x8 ``layer4`` maps, as the ResNet-50 video re-ID baselines CSTNet compares
  with, and COSAM's TP): then ``H_1 x W_1 = 16 x 8`` is the ``layer3``/``layer4`` map size and ``H_L x W_L`` below
  is at least 4x smaller than every map it reduces (``H_L x W_L << H x W`` holds at all three stages).
* **The channel branch's reduced size** ``H_L x W_L`` is not given: we use ``H/32 x W/32`` of the input (8x4 at
  256x128) at every stage, the map size of a standard stride-32 ResNet-50. The "two convolution layers" of the
  dimension reduction are read as one per branch: 1x1 conv + BN + ReLU (``C -> C_L``) and adaptive average pooling
  to ``H_L x W_L`` + 1x1 conv + BN + ReLU (``C -> C``); pooling before the 1x1 conv is the cheaper order.
* **The summarising convolution** over the ``(T-1)·HW``-channel volume is one 1x1 conv (the paper says "a
  convolution layer"; COSAM used two). Its weights are **tied across the T-1 other frames** and the frames are
  averaged: the slot a frame takes in another frame's volume depends on both indices, so untied weights would
  learn an arbitrary order. Tied weights make CSL a function of the *set* of other frames (permuting the other
  frames leaves each frame's attention unchanged) and let a model trained with T=8 run with any T >= 2.
* **Not materialising the NCC volume.** NCC is a dot product of z-normalised descriptors and the summary is linear
  and immediately followed by Eq. 3, so ``conv(volume)`` equals ``<z_t(p), sum_{k!=t} u_k> / (C_L (T-1))`` with
  ``u_k = sum_q w_q z_k(q)``: O(T·C·N) instead of O(T²·C·N²) time and memory, the same numbers (tested against the
  volume from :func:`reidzoo.layers.ncc_other_frames`, used when ``fused_ncc=False``). This matters for the channel
  branch: its volume at ``layer4`` is ``T·(T-1)·2048²`` values (0.9 GB per clip).
* **The STI residual.** "F_f is added with the feature of the current residual layer": we add it to STI's input (the
  CSL output), as a non-local block adds to its input; adding the raw stage output would undo CSL's background
  suppression on the identity path.
* **Fusion gates.** Eq. 6 gives ``a_s = sigmoid(W_s Pooling(F_t))``; ``a_t`` is read symmetrically as
  ``sigmoid(W_t Pooling(F_s))``. ``a^c`` has only a channel index, so the pooling is global over frames and
  positions (one gate per clip and channel). ``W_s, W_t`` are ``C x C`` linear layers with bias.
* **Relation maps** use no ``1/sqrt(C_1)`` scaling (the non-local "embedded Gaussian" form Eq. 4 writes), softmax
  over the keys; Eq. 5's ``G`` is a 1x1 conv ``C_1 -> C`` followed by ReLU, without BN.
* **Classifier.** "Two fully connected layers" of unstated width: ``Linear(2048, 1024) + BN + ReLU + Linear``; the
  test embedding is the pooled clip feature (2048-d) that feeds it.
* **Input normalisation.** The paper scales pixels by 1/256 without mean/std; the cfg uses ImageNet mean/std, the
  statistics the ImageNet-initialised ResNet-50 expects (``pretrained_cfg_overlay`` can set mean 0 / std 1).
* **Test sampling** is not described: ``'dense'`` (all frames as consecutive 8-frame clips, averaged), the
  protocol of COSAM whose NCC CSL adopts. Distance: Euclidean (the triplet loss's).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from ..spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..layers.ncc import ncc_other_frames, znorm
from ..layers.non_local import SpatialRelation, TemporalRelation
from ._backbone import create_backbone, forward_frames, stage_channels, stage_output_sizes
from ._base import VideoReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model

__all__ = ['CSTNet', 'CoSaliencyLearning', 'SpatialTemporalInteraction', 'summarised_ncc']


def _conv_bn_relu(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size=1), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))


def summarised_ncc(descriptors: torch.Tensor, summary: nn.Linear, fused: bool = True) -> torch.Tensor:
    """A 1x1 convolution over the NCC volume of each frame against the other ``T-1`` frames, weights tied across them.

    ``out[b, t, n] = mean_{k != t} sum_m w[m] NCC(x[b, k, :, m], x[b, t, :, n]) + bias``.

    Args:
        descriptors: ``(B, T, D, N)``: ``N`` descriptors of ``D`` entries per frame.
        summary: ``Linear(N, 1)``, the convolution's weights over the other frame's ``N`` descriptors.
        fused: contract without building the volume (O(B·T·D·N) time and memory); ``False`` builds the
            ``(B, T, T-1, N, N)`` volume with :func:`reidzoo.layers.ncc_other_frames` (O(B·T²·D·N²) time,
            O(B·T²·N²) memory). Both give the same numbers.

    Returns:
        ``(B, T, N)``.
    """
    b, t, d, n = descriptors.shape
    weight, bias = summary.weight.view(n), summary.bias
    if not fused:
        volume = ncc_other_frames(descriptors)  # (B, T, T-1, N_other, N_self)
        return torch.einsum('btjmn,m->btn', volume, weight) / (t - 1) + bias
    z = znorm(descriptors, dim=2)
    weighted = torch.einsum('btdm,m->btd', z, weight)  # sum_m w[m] z_k(m), per frame k
    others = weighted.sum(dim=1, keepdim=True) - weighted  # sum over k != t
    return torch.einsum('btd,btdn->btn', others, z) / (d * (t - 1)) + bias


class CoSaliencyLearning(nn.Module):
    """CSL (§3.2): spatial-channel attention ``Z = sigmoid(Z_s ⊙ Z_c)`` from NCC with the other frames of the clip.

    Args:
        in_chs: ``C``.
        feat_size: ``(h, w)`` of the input maps (fixes the spatial summary's ``h·w`` weights).
        reduced_chs: ``C_L`` of the spatial branch (256).
        channel_pool_size: ``(H_L, W_L)`` of the channel branch (clamped to ``feat_size``).
        fused_ncc: compute the summarised NCC without materialising the volume (see :func:`summarised_ncc`).
    """

    def __init__(
            self,
            in_chs: int,
            feat_size: tuple[int, int],
            reduced_chs: int = 256,
            channel_pool_size: tuple[int, int] = (8, 4),
            fused_ncc: bool = True,
    ):
        super().__init__()
        self.feat_size = tuple(feat_size)
        self.fused_ncc = fused_ncc
        pool = (min(channel_pool_size[0], feat_size[0]), min(channel_pool_size[1], feat_size[1]))
        self.spatial_reduction = _conv_bn_relu(in_chs, reduced_chs)
        self.channel_reduction = nn.Sequential(nn.AdaptiveAvgPool2d(pool), *_conv_bn_relu(in_chs, in_chs))
        self.spatial_summary = nn.Linear(feat_size[0] * feat_size[1], 1)  # 1x1 conv over (T-1)·h·w, tied
        self.channel_summary = nn.Linear(in_chs, 1)  # 1x1 conv over (T-1)·C, tied

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> ``Z`` ``(B, T, C, h, w)`` in (0, 1)."""
        b, t, c, h, w = x.shape
        if t < 2:
            raise ValueError(f'CSTNet co-saliency compares each frame with the other frames of its clip: it needs '
                             f'T >= 2 frames, got shape {tuple(x.shape)}.')
        if (h, w) != self.feat_size:
            raise ValueError(f'CoSaliencyLearning was built for {self.feat_size[0]}x{self.feat_size[1]} maps, got '
                             f'{h}x{w} (shape {tuple(x.shape)}): build the model with the img_size you feed.')
        frames = x.flatten(0, 1)
        # explicit sizes, not -1: an empty batch (B=0) must still reshape
        reduced = self.spatial_reduction[0].out_channels
        spatial = self.spatial_reduction(frames).view(b, t, reduced, h * w)  # descriptors: C_L entries at h·w positions
        pooled = self.channel_reduction(frames)
        channel = pooled.view(b, t, c, pooled.shape[-2] * pooled.shape[-1]).transpose(2, 3)  # H_L·W_L entries
        z_s = summarised_ncc(spatial, self.spatial_summary, self.fused_ncc)  # (B, T, h·w)
        z_c = summarised_ncc(channel, self.channel_summary, self.fused_ncc)  # (B, T, C)
        return torch.sigmoid(z_c.unsqueeze(-1) * z_s.unsqueeze(2)).view(b, t, c, h, w)  # Eq. 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialTemporalInteraction(nn.Module):
    """STI (§3.3): spatial and temporal relation features, gated by each other's pooled response, added to the input.

    Args:
        in_chs: ``C``.
        mid_chs: ``C_1`` (128).
        pool_size: ``(H_1, W_1)`` of the spatial block's keys/values (16 x 8).
    """

    def __init__(self, in_chs: int, mid_chs: int = 128, pool_size: tuple[int, int] = (16, 8)):
        super().__init__()
        self.spatial = SpatialRelation(in_chs, mid_chs, pool_size)
        self.temporal = TemporalRelation(in_chs, mid_chs)
        self.spatial_gate = nn.Linear(in_chs, in_chs)  # W_s
        self.temporal_gate = nn.Linear(in_chs, in_chs)  # W_t

    def gates(self, spatial: torch.Tensor, temporal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6: ``a_s = sigmoid(W_s GAP(F_t))``, ``a_t = sigmoid(W_t GAP(F_s))``, each ``(B, C)``."""
        a_s = torch.sigmoid(self.spatial_gate(temporal.mean(dim=(1, 3, 4))))
        a_t = torch.sigmoid(self.temporal_gate(spatial.mean(dim=(1, 3, 4))))
        return a_s, a_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> same shape."""
        b, t = x.shape[:2]
        spatial = self.spatial(x.flatten(0, 1)).unflatten(0, (b, t))
        temporal = self.temporal(x)
        a_s, a_t = self.gates(spatial, temporal)
        fused = a_s[:, None, :, None, None] * spatial + a_t[:, None, :, None, None] * temporal  # Eq. 7
        return x + fused


class CSTNet(VideoReIDModel):
    """CSL + STI after three ResNet stages, average pooling, two-FC classifier.

    ``cstnet_resnet50`` (256x128, T=8) has 44,185,542 parameters without a classifier (ResNet-50 trunk 23,508,032;
    three CSL 6,439,942; three STI 14,237,568); the two-FC 625-way classifier adds 2,740,849.
    """

    def __init__(
            self,
            backbone: str = 'resnet50',
            num_classes: int = 0,
            num_frames: int = 8,
            img_size: tuple[int, int] = (256, 128),
            stages: Sequence[int] = (1, 2, 3),
            reduced_chs: int = 256,
            channel_pool_size: Optional[tuple[int, int]] = None,
            relation_chs: int = 128,
            relation_pool_size: Optional[tuple[int, int]] = None,
            classifier_hidden: int = 1024,
            last_stride: int = 1,
            fused_ncc: bool = True,
            pretrained_backbone: bool = False,
            **backbone_kwargs: Any,
    ):
        """
        Args:
            backbone: timm ResNet-like model name.
            num_classes: identity classifier size (0: none).
            num_frames: frames per clip the model is trained with (8; any T >= 2 runs).
            img_size: input ``(H, W)``; fixes CSL's spatial summary sizes.
            stages: indices (0..3 = ``layer1..layer4``) of the stages followed by CSL + STI.
            reduced_chs: ``C_L``.
            channel_pool_size: ``(H_L, W_L)``; default ``(H/32, W/32)`` (8x4 at 256x128).
            relation_chs: ``C_1``.
            relation_pool_size: ``(H_1, W_1)``; default ``(H/16, W/16)`` (16x8 at 256x128).
            classifier_hidden: width of the classifier's first FC.
            last_stride: stride of ``layer4``.
            fused_ncc: compute CSL's NCC summaries without materialising the volume (same result).
            pretrained_backbone: start from timm's ImageNet weights (for training).
        """
        super().__init__()
        self.num_frames = num_frames
        self.img_size = tuple(img_size)
        self.fixed_input_size = self.img_size
        self.global_pool = 'avg'
        self.stages = tuple(sorted(stages))
        h, w = self.img_size
        channel_pool_size = channel_pool_size or (max(1, h // 32), max(1, w // 32))
        relation_pool_size = relation_pool_size or (max(1, h // 16), max(1, w // 16))
        self.backbone = create_backbone(backbone, pretrained=pretrained_backbone, last_stride=last_stride,
                                        **backbone_kwargs)
        chs = stage_channels(self.backbone)
        self.stage_sizes = stage_output_sizes(self.backbone, self.img_size)  # the trunk's real map sizes
        self.co_saliency = nn.ModuleDict()
        self.interaction = nn.ModuleDict()
        for i in self.stages:
            size = self.stage_sizes[i]
            self.co_saliency[str(i)] = CoSaliencyLearning(chs[i], size, reduced_chs, channel_pool_size, fused_ncc)
            self.interaction[str(i)] = SpatialTemporalInteraction(chs[i], relation_chs, relation_pool_size)
        self.classifier_hidden = classifier_hidden
        self.num_features = self.head_hidden_size = chs[-1]
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        """Two FC layers (§3.1): ``Linear(D, hidden) + BN + ReLU + Linear(hidden, num_classes)``."""
        if num_classes <= 0:
            return nn.Identity()
        classifier = nn.Sequential(
            nn.Linear(self.num_features, self.classifier_hidden), nn.BatchNorm1d(self.classifier_hidden),
            nn.ReLU(inplace=True), nn.Linear(self.classifier_hidden, num_classes))
        nn.init.normal_(classifier[3].weight, std=0.001)
        nn.init.zeros_(classifier[3].bias)
        return classifier

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if x.shape[1] < 2:
            raise ValueError(f'CSTNet compares each frame with the other frames of its clip: it needs T >= 2 '
                             f'(trained with T={self.num_frames}), got shape {tuple(x.shape)}.')

    def forward_features(self, x: torch.Tensor, intermediates: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> per-frame maps ``(B, T, C, h, w)`` after the last stage."""
        return forward_frames(self.backbone, x, self._after_stage, grad_checkpointing=self.grad_checkpointing,
                              intermediates=intermediates)

    def _after_stage(self, index: int, clip: torch.Tensor) -> torch.Tensor:
        """CSL then STI on the clip maps after the stages the model was built with."""
        if index not in self.stages:
            return clip
        return self.interaction[str(index)](self.co_saliency[str(index)](clip))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        emb = x.mean(dim=(1, 3, 4))
        return emb if pre_logits else self.classifier(emb)


def _create_cstnet(variant: str, pretrained: bool = False, **kwargs) -> CSTNet:
    return build_model_with_cfg(CSTNet, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        'input_size': (3, 256, 128), 'num_frames': 8, 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'interpolation': 'bilinear', 'test_sampling': 'dense', 'distance': 'euclidean',
        'first_conv': 'backbone.conv1', 'classifier': 'classifier', 'license': 'apache-2.0',
        'paper_name': 'Co-Saliency Spatio-Temporal Interaction Network for Person Re-Identification in Videos',
        'paper_ids': 'arXiv:2004.04979',
        **kwargs,
    }


default_cfgs = {
    'cstnet_resnet50': _cfg(),
}


@register_model
def cstnet_resnet50(pretrained: bool = False, **kwargs) -> CSTNet:
    """CSTNet on ResNet-50: CSL + STI after layer2, layer3, layer4 (last stride 1), T=8, 256x128."""
    model_args = dict(backbone='resnet50')
    return _create_cstnet('cstnet_resnet50', pretrained, **dict(model_args, **kwargs))
