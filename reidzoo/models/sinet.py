"""SINet, SBNet and IDNet: Salient-to-Broad transition for video person re-ID (Bai et al., CVPR 2022).

Paper: "Salient-to-Broad Transition for Video Person Re-identification" (Bai et al., CVPR 2022).
Official code: github.com/baist/SINet (``models/resnet.py``, ``salient_to_broad_module.py``,
``integration_distribution_module.py``); its released checkpoints load here through
:func:`convert_official_state_dict`.

The authors inflate a torchvision ResNet-50 to 3-D convolutions with ``(1, k, k)`` kernels. Those are 2-D
convolutions applied to every frame, so here the frames run as one ``(B*T, C, H, W)`` batch through an ordinary timm
ResNet, and only the plug-in modules see the clip ``(B, T, C, h, w)``:

* **IDM** (Integration and Distribution Module, paper Eq. 7) after layer2 blocks 1 and 3: a low-rank linear map
  over all ``t*h*w`` positions of the clip between a channel reduction and expansion. Built for one clip length and
  one map size (``num_frames``, ``img_size``).
* **SBM** (Salient-to-Broad Module, Eq. 1-6) after layer3 blocks 1, 3 and 5 with split positions 0, 1, 2: the
  former frames generate a dynamic ``k x k`` kernel (CAL + KGM), whose softmax response on the later frames is turned
  into a suppression map (SO); CPM exchanges information between the two groups. Works on 4-frame clips (``T=8``
  runs as two 4-frame halves, as the authors' code).
* Head: per-frame global *max* pooling, a BN neck (``BatchNorm1d``, trainable bias), a linear classifier, and for
  SINet/SBNet a ``Conv1d`` projection of the per-frame BN features for the InfoNCE (mutual-information) loss.

Timm differences that matter: the authors' stem max-pool has no padding (63x31 layer1 maps at 256x128, timm's
gives 64x32), and their convs carry a bias that is followed by a BN; the converter folds those 53 biases into the BN
running means (exact in eval mode; in train mode BN cancels a constant bias anyway). The entrypoints name timm's
``resnet50.tv_in1k``, torchvision's IMAGENET1K_V1 weights that the authors start from (``pretrained_backbone=True``).

Where paper and code differ, the default is the code (the released checkpoints were trained with it) and the
paper's reading is an option: IDM reduction (code 16; the paper's Fig. 5b best is 4, ``idm_reduction=4``, and its
"IDM adds 1.081 GFlops" is what two reduction-4 IDMs cost in multiply-adds at 4x256x128), the CPM formulas
(``cpm='paper'`` for Eq. 5/6) and the mutual-information loss weight (code 0.001, paper 0.01: a training setting,
see :data:`MI_LOSS_WEIGHT`).
"""
from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from ..spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.checkpoint import checkpoint

from ._backbone import backbone_stages, backbone_stem, create_backbone, stage_channels, stage_output_sizes
from ._base import ModelOutput, VideoReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model

__all__ = [
    'SINet', 'SalientToBroadModule', 'IntegrationDistributionModule', 'convert_official_state_dict',
    'official_model_args', 'MI_LOSS_WEIGHT',
]


# weight of the InfoNCE term in CE + triplet + w * InfoNCE: the authors' main.py uses 0.001, the paper states 0.01
MI_LOSS_WEIGHT = {'code': 0.001, 'paper': 0.01}

# frames per SBM clip: the authors' SBM is written for 4 frames and runs 8-frame clips as two halves
_SBM_CLIP = 4
_SBM_FRAMES = (4, 8)


class SalientToBroadModule(nn.Module):
    """SBM: suppress, in the later frames, what the former frames found salient (paper §3.1).

    Input and output ``(B, T, C, h, w)`` with ``T`` a multiple of 4 (each 4-frame group is processed on its own).
    Frames ``0..split_pos`` are the former frames, the rest the later frames.
    """

    def __init__(
            self,
            in_chs: int,
            split_pos: int,
            inter_chs: Optional[int] = None,
            kernel_size: int = 3,
            exp_beta: float = 5.0,
            cpm_alpha: float = 0.1,
            cpm: str = 'code',
    ):
        """
        Args:
            in_chs: channels of the feature maps.
            split_pos: index of the last former frame (the paper's ``s - 1``); 0..2 for 4-frame clips.
            inter_chs: SE bottleneck width (default ``in_chs // 4``).
            kernel_size: ``k`` of the generated ``k x k`` kernel.
            exp_beta: ``beta`` of the suppression transform (Eq. 4).
            cpm_alpha: ``alpha`` of the cross propagation (Eq. 5/6).
            cpm: ``'code'`` (the authors' code: clip averages, (1-S)-weighted mean of the later frames) or ``'paper'``
                (Eq. 5/6: sums of per-frame GAPs).
        """
        super().__init__()
        if not 0 <= split_pos < _SBM_CLIP - 1:
            raise ValueError(f'split_pos must be in 0..{_SBM_CLIP - 2} for {_SBM_CLIP}-frame clips, got {split_pos}.')
        if cpm not in ('code', 'paper'):
            raise ValueError(f"cpm must be 'code' or 'paper', got {cpm!r}.")
        self.split_pos = split_pos
        self.kernel_size = kernel_size
        self.exp_beta = exp_beta
        self.cpm_alpha = cpm_alpha
        self.cpm = cpm
        inter_chs = inter_chs or in_chs // 4
        k2 = kernel_size * kernel_size
        # KGM's multi-head spatial attention: one map per kernel tap
        self.kernel = nn.Sequential(nn.Conv2d(in_chs, k2, 1), nn.BatchNorm2d(k2), nn.ReLU())
        # CAL's squeeze-excitation, applied to the clip average
        self.se = nn.ModuleDict(dict(fc1=nn.Conv2d(in_chs, inter_chs, 1), fc2=nn.Conv2d(inter_chs, in_chs, 1)))
        for m in self.modules():  # the authors' init: N(0, sqrt(2 / (k*k*out))), default bias; BN 1/0
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """CAL (Eq. 1-2): SE weights times the detached centrality indicator, ``(B, 1, C, 1, 1)``."""
        full = x.mean(dim=(1, 3, 4))
        inner = x[:, :, :, 1:-1, 1:-1].mean(dim=(1, 3, 4))
        centre = (inner / (full + 1e-8) > 1).to(x.dtype)  # a comparison: no gradient, as the authors' detach
        se = self.se.fc2(F.relu(self.se.fc1(full[..., None, None]), inplace=True)).sigmoid().flatten(1)
        return (se * centre)[:, None, :, None, None]

    def _forward_clip(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        if b == 0:
            return x  # no clips: the per-clip grouped conv below cannot have zero groups
        k, pos = self.kernel_size, self.split_pos
        xf, xl = x[:, :pos + 1], x[:, pos + 1:]
        tf, tl = xf.shape[1], xl.shape[1]
        cal = self.channel_attention(x)

        # KGM: k*k attention maps over the former frames, L1-normalised over the taps, then over the positions
        pf = F.relu(xf * cal)
        att = self.kernel(pf.flatten(0, 1)).unflatten(0, (b, tf))  # (b, tf, k*k, h, w)
        att = att.transpose(1, 2).reshape(b, k * k, tf * h * w).transpose(1, 2)  # (b, tf*h*w, k*k)
        if k != 1:
            att = F.normalize(att, p=1, dim=-1)
        att = F.normalize(att, p=1, dim=1)
        pf = pf.transpose(1, 2).reshape(b, c, tf * h * w)
        kernel = torch.bmm(pf, att).reshape(b, c, k, k)  # K = P A^T, one c x k x k kernel per clip

        # SO (Eq. 3-4): per-clip dynamic conv over the later frames (frames as the batch, clips as groups)
        ql = F.relu(xl * cal).transpose(0, 1).reshape(tl, b * c, h, w)
        pad = (k - 1) // 2
        ql = F.pad(ql, [pad] * 4, mode='replicate')
        if torch.compiler.is_exporting():
            # ONNX's Conv needs a constant group count, and groups=b would pin the batch: the same sums as k*k
            # shifted products (equal up to float rounding; eager keeps the grouped conv, bit-identical to the
            # authors' code)
            qv = ql.view(tl, b, c, h + 2 * pad, w + 2 * pad)
            resp = sum(torch.einsum('tbchw,bc->tbhw', qv[..., i:i + h, j:j + w], kernel[:, :, i, j])
                       for i in range(k) for j in range(k))
        else:
            resp = F.conv2d(ql, kernel, groups=b)  # (tl, b, h, w)
        resp = resp.transpose(0, 1) / (k * k)
        resp = resp.reshape(b, tl, h * w).softmax(dim=-1).reshape(b, tl, 1, h, w).clamp_min(1e-4)
        inv = 1.0 / (resp * h * w)
        # S = exp(beta * min(inv - 1, 0)); masking before exp keeps the unused branch finite (no inf * 0 in backward)
        mask = (inv < 1).to(inv.dtype)
        sup = torch.exp((inv - 1) * mask * self.exp_beta) * mask + (1 - mask)

        # CPM: former frames get back what the later frames lost; later frames get the former frames' average
        if self.cpm == 'code':
            yl = xl * sup + self.cpm_alpha * xf.mean(dim=(1, 3, 4), keepdim=True)
            lost = ((1 - sup) * xl).mean(dim=(1, 3, 4), keepdim=True)
            # the authors divide by mean(1 - S) unguarded; the clamp only changes the 0/0 case (no suppression at all)
            weight = (1 - sup).mean(dim=(1, 3, 4), keepdim=True).clamp_min(torch.finfo(sup.dtype).tiny)
            zf = xf + self.cpm_alpha * lost / weight
        else:  # Eq. 5 and 6: sums over frames of per-frame GAPs
            yl = xl * sup + self.cpm_alpha * xf.mean(dim=(3, 4), keepdim=True).sum(dim=1, keepdim=True)
            zf = xf + self.cpm_alpha * ((1 - sup) * xl).mean(dim=(3, 4), keepdim=True).sum(dim=1, keepdim=True)
        return torch.cat([zf, yl], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        if t % _SBM_CLIP:
            raise ValueError(f'SBM takes clips of a multiple of {_SBM_CLIP} frames, got shape {tuple(x.shape)}.')
        if t == _SBM_CLIP:
            return self._forward_clip(x)
        # longer clips: consecutive 4-frame groups (the authors' code does exactly this for T=8); split the frame
        # axis only, so no size is computed from the batch (a traced graph keeps a symbolic batch)
        groups = x.unflatten(1, (t // _SBM_CLIP, _SBM_CLIP)).flatten(0, 1)
        return self._forward_clip(groups).unflatten(0, (b, t // _SBM_CLIP)).flatten(1, 2)


class IntegrationDistributionModule(nn.Module):
    """IDM: low-rank message passing over all ``t*h*w`` positions of a clip (paper §3.2, Eq. 7).

    Input and output ``(B, T, C, h, w)``; ``T`` and ``(h, w)`` are fixed at construction because the position
    transform is a ``(t*h*w) -> (t*h*w)/r`` linear map.
    """

    def __init__(self, in_chs: int, num_frames: int, feat_size: tuple[int, int], reduction: int = 16):
        """
        Args:
            in_chs: channels ``c``.
            num_frames: clip length ``t``.
            feat_size: map size ``(h, w)`` at the insertion point.
            reduction: ``c / c'`` and ``m / m'`` (the code's default 16; the paper found 4 best).
        """
        super().__init__()
        self.num_frames = num_frames
        self.feat_size = tuple(feat_size)
        positions = num_frames * feat_size[0] * feat_size[1]
        inter_chs, inter_pos = in_chs // reduction, positions // reduction
        if inter_chs < 1 or inter_pos < 1:
            raise ValueError(f'IDM reduction {reduction} leaves no channels/positions ({in_chs} channels, '
                             f'{positions} positions); use a smaller reduction or larger input.')
        self.chl_reduction = nn.Sequential(nn.Conv2d(in_chs, inter_chs, 1), nn.BatchNorm2d(inter_chs))
        # 1x1 convs over a (B, t*h*w, c', 1) view: linear maps on the position axis, as the authors' layout
        self.thw_reduction = nn.Sequential(nn.Conv2d(positions, inter_pos, 1), nn.BatchNorm2d(inter_pos))
        self.thw_expansion = nn.Sequential(nn.Conv2d(inter_pos, positions, 1))
        self.chl_expansion = nn.Sequential(nn.Conv2d(inter_chs, in_chs, 1))
        for m in self.modules():  # the authors' init: N(0, sqrt(2 / (k*k*out))); BN 1/0
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # zero-initialised expansion: the module starts as an identity (then ReLU) inside the pretrained backbone
        nn.init.zeros_(self.chl_expansion[0].weight)
        nn.init.zeros_(self.chl_expansion[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        if (t, h, w) != (self.num_frames, *self.feat_size):
            raise ValueError(
                f'IDM was built for {self.num_frames} frames of {self.feat_size[0]}x{self.feat_size[1]} maps, '
                f'got shape {tuple(x.shape)}.')
        x1 = self.chl_reduction(x.flatten(0, 1))
        ci = x1.shape[1]
        x1 = x1.unflatten(0, (b, t)).permute(0, 1, 3, 4, 2).reshape(b, t * h * w, ci, 1)  # positions (t, h, w)
        x3 = self.thw_expansion(self.thw_reduction(x1)) + x1
        x3 = x3.reshape(b, t, h, w, ci).permute(0, 1, 4, 2, 3).flatten(0, 1)
        return F.relu(x + self.chl_expansion(x3).unflatten(0, (b, t)))


class SINet(VideoReIDModel):
    """A timm ResNet with IDMs in layer2 and SBMs in layer3, per-frame max pooling and a BN neck.

    ``idm_after=()`` gives SBNet, ``sbm_after=()`` gives IDNet.
    """

    def __init__(
            self,
            backbone: str = 'resnet50',
            num_classes: int = 0,
            num_frames: int = 4,
            img_size: tuple[int, int] = (256, 128),
            idm_after: Sequence[int] = (1, 3),
            sbm_after: Sequence[int] = (1, 3, 5),
            idm_reduction: int = 16,
            sbm_kernel_size: int = 3,
            sbm_beta: float = 5.0,
            cpm_alpha: float = 0.1,
            cpm: str = 'code',
            frame_projection: bool = True,
            pretrained_backbone: bool = False,
            **backbone_kwargs: Any,
    ):
        """
        Args:
            backbone: timm ResNet-like model name (``resnet50``; ``resnet18``/``resnet34`` for tests).
            num_classes: identity classifier size (0: none).
            num_frames: clip length ``T``. IDM is built for this ``T``; SBM takes 4 or 8.
            img_size: input ``(H, W)``; IDM is built for its layer2 map size.
            idm_after: layer2 block indices followed by an IDM (the authors': 1 and 3).
            sbm_after: layer3 block indices followed by an SBM; the i-th SBM uses split position i (authors': 1, 3, 5).
            idm_reduction: IDM ``c/c'`` and ``m/m'`` (code 16; the paper's Fig. 5b best is 4).
            sbm_kernel_size: SBM's generated kernel size ``k``.
            sbm_beta: SBM suppression ``beta``.
            cpm_alpha: SBM cross-propagation ``alpha``.
            cpm: ``'code'`` or ``'paper'`` CPM formulas (see :class:`SalientToBroadModule`).
            frame_projection: add the ``Conv1d`` projection of per-frame features for the InfoNCE loss (SINet/SBNet).
            pretrained_backbone: start from timm's ImageNet weights (for training; the authors used torchvision's
                IMAGENET1K_V1, which is timm's ``resnet50.tv_in1k``).
        """
        super().__init__()
        self.num_frames = num_frames
        self.img_size = tuple(img_size)
        self.backbone = create_backbone(backbone, pretrained=pretrained_backbone, last_stride=1,
                                        stem_pool_padding=0, **backbone_kwargs)
        self.stage_channels = stage_channels(self.backbone)
        stages = backbone_stages(self.backbone)
        # the trunk's real map sizes: the unpadded stem pool gives 63x31 layer1 maps at 256x128
        self._map_sizes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.feat_sizes = self._stage_sizes(self.img_size)
        self.global_pool = 'max'  # per-frame global max pooling, then the BN neck and the mean over frames
        for stage, after, kw in ((1, idm_after, 'idm_after'), (2, sbm_after, 'sbm_after')):
            depth = len(stages[stage])
            if any(not 0 <= i < depth for i in after) or list(after) != sorted(after):
                raise ValueError(f'{kw}={tuple(after)}: layer{stage + 1} of {backbone} has blocks 0..{depth - 1}; '
                                 f'pass sorted block indices in that range.')
        if len(sbm_after) > _SBM_CLIP - 1:
            raise ValueError(f'At most {_SBM_CLIP - 1} SBMs (split positions 0..{_SBM_CLIP - 2}), got {sbm_after}.')

        self.idm = nn.ModuleList([
            IntegrationDistributionModule(self.stage_channels[1], num_frames, self.feat_sizes[1], idm_reduction)
            for _ in idm_after])
        self.sbm = nn.ModuleList([
            SalientToBroadModule(self.stage_channels[2], pos, kernel_size=sbm_kernel_size, exp_beta=sbm_beta,
                                 cpm_alpha=cpm_alpha, cpm=cpm)
            for pos in range(len(sbm_after))])
        # (stage, block) -> plug-ins run after that block, in order
        self._plugins: dict[tuple[int, int], list[nn.Module]] = {}
        for i, m in zip(idm_after, self.idm):
            self._plugins.setdefault((1, i), []).append(m)
        for i, m in zip(sbm_after, self.sbm):
            self._plugins.setdefault((2, i), []).append(m)

        if len(self.sbm) and num_frames not in _SBM_FRAMES:
            raise ValueError(f'SBM takes T in {list(_SBM_FRAMES)} frames per clip, got num_frames={num_frames}.')
        if len(self.idm):
            self.supported_num_frames = (num_frames,)
            self.fixed_input_size = self.img_size
        elif len(self.sbm):
            self.supported_num_frames = _SBM_FRAMES
        if len(self.sbm) and min(self._feat_size_for(self.img_size)) < 3:
            raise ValueError(f'img_size {self.img_size} gives {self._feat_size_for(self.img_size)} layer3 maps; SBM '
                             f'needs at least 3x3 (e.g. 128x64 or the default 256x128).')

        self.num_features = self.head_hidden_size = self.stage_channels[-1]
        self.bn = nn.BatchNorm1d(self.num_features)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)  # the authors' weights_init_kaiming for BN
        nn.init.zeros_(self.bn.bias)
        self.projection = None
        if frame_projection:
            self.projection = nn.Conv1d(self.num_features, self.num_features, 1)
            nn.init.kaiming_normal_(self.projection.weight, a=0, mode='fan_out')
            nn.init.zeros_(self.projection.bias)
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def _stage_sizes(self, hw: tuple[int, int]) -> list[tuple[int, int]]:
        """Stage map sizes for ``hw`` frames (cached: one meta forward per new frame size)."""
        hw = (int(hw[0]), int(hw[1]))
        if hw not in self._map_sizes:
            self._map_sizes[hw] = stage_output_sizes(self.backbone, hw)
        return self._map_sizes[hw]

    def _feat_size_for(self, hw: tuple[int, int]) -> tuple[int, int]:
        return self._stage_sizes(hw)[2]

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if torch.compiler.is_compiling():
            return  # traced at the example's (static) frame size, which eager use has checked
        if len(self.sbm) and self.fixed_input_size is None and min(self._feat_size_for(tuple(x.shape[-2:]))) < 3:
            raise ValueError(
                f'{type(self).__name__}: frames of shape {tuple(x.shape)} give {self._feat_size_for(x.shape[-2:])} '
                f'layer3 maps; SBM needs at least 3x3 maps (frames of at least 37x37; trained at '
                f'{self.img_size[0]}x{self.img_size[1]}).')

    def _run_stage(self, si: int, y: torch.Tensor, clip: tuple[int, int]) -> torch.Tensor:
        """Stage ``si`` on ``(B*T, C, h, w)`` frames, with its IDM / SBM plug-ins on the clip view."""
        for bi, block in enumerate(backbone_stages(self.backbone)[si]):
            y = block(y)
            for plugin in self._plugins.get((si, bi), ()):
                y = plugin(y.unflatten(0, clip)).flatten(0, 1)
        return y

    def forward_features(self, x: torch.Tensor, intermediates: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> last-stage maps ``(B, T, C, h, w)``."""
        b, t = x.shape[:2]
        y = backbone_stem(self.backbone)(x.flatten(0, 1))
        for si in range(4):
            if self.grad_checkpointing and torch.is_grad_enabled():
                y = checkpoint(self._run_stage, si, y, (b, t), use_reentrant=False)
            else:
                y = self._run_stage(si, y, (b, t))
            if intermediates is not None:
                intermediates.append(y.unflatten(0, (b, t)))
        return y.unflatten(0, (b, t))

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, T, C, h, w)`` -> per-frame global max pooled features ``(B, C, T)`` (before the BN neck)."""
        return x.amax(dim=(-2, -1)).transpose(1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        frames = self.frame_features(x)
        if self.training:
            emb = self.bn(frames.mean(dim=-1))
        else:
            emb = self.bn(frames).mean(dim=-1)  # BN per frame, then the average (the authors' test path)
        return emb if pre_logits else self.classifier(emb)

    def forward_train(self, x: torch.Tensor) -> ModelOutput:
        frames = self.frame_features(self.forward_features(x))
        emb = self.bn(frames.mean(dim=-1))
        logits = self.classifier(emb) if self.num_classes > 0 else None
        aux = {}
        if self.projection is not None:
            # the authors' second BN call (batch statistics over B and T; it updates the running stats too)
            aux['frame_projection'] = self.projection(self.bn(frames))
        return ModelOutput(logits=logits, embedding=emb, aux=aux)


# --- the authors' checkpoints ---------------------------------------------------------------------------------------
_OFFICIAL_ARCHS = {  # arch -> (has IDMs, has SBMs)
    'sinet_resnet50': (True, True),
    'sbnet_resnet50': (False, True),
    'idnet_resnet50': (True, False),
}
_LAYER_KEY = re.compile(r'^layer(\d)\.(\d+)\.(.+)$')
_CONV_BN = {'conv1': 'bn1', 'conv2': 'bn2', 'conv3': 'bn3', 'downsample.0': 'downsample.1'}


def _plugin_kind(subkeys: set[str]) -> str:
    if 'conv1.weight' in subkeys:
        return 'block'
    if 'thw_reduction.0.weight' in subkeys:
        return 'idm'
    if 'kernel.0.weight' in subkeys:
        return 'sbm'
    if 'down_channel.weight' in subkeys:
        raise ValueError('This is a SANet checkpoint (StatisticAttentionBlock, TCSVT 2021); reidzoo implements SINet, '
                         'SBNet and IDNet only.')
    raise ValueError(f'Unrecognised module in the checkpoint with keys {sorted(subkeys)[:5]}.')


def _normalise_arch(arch: Optional[str]) -> Optional[str]:
    if arch is None:
        return None
    name = arch if arch.endswith('_resnet50') else f'{arch}_resnet50'
    if name not in _OFFICIAL_ARCHS:
        raise ValueError(f'Unknown SINet-family architecture {arch!r}; choose one of {sorted(_OFFICIAL_ARCHS)}.')
    return name


def _squeeze_time(key: str, t: torch.Tensor) -> torch.Tensor:
    """An inflated ``(O, I, 1, k, k)`` conv weight -> ``(O, I, k, k)``."""
    if t.dim() != 5:
        return t
    if t.shape[2] != 1:
        raise ValueError(f'{key}: expected an inflated conv weight with time size 1 (O, I, 1, k, k), got shape '
                         f'{tuple(t.shape)}; temporally inflated kernels are not part of SINet.')
    return t.squeeze(2)


def convert_official_state_dict(
        state_dict: dict[str, torch.Tensor],
        arch: Optional[str] = None,
        **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Map a baist/SINet ``model.state_dict()`` (``checkpoint['state_dict']``) onto this module's key layout.

    The rules (derived from the authors' ``models/resnet.py`` module layout):

    1. Layer ``nn.Sequential`` indices hold the plug-ins too: blocks are renumbered ``0..n-1`` and the i-th IDM
       (SBM) becomes ``idm.i`` (``sbm.i``);
    2. inflated ``(O, I, 1, k, k)`` conv weights are squeezed to 2-D;
    3. each backbone conv bias is folded into the BN after it (``running_mean -= bias``), exact in eval mode;
    4. SBM's ``se.1``/``se.3`` become ``se.fc1``/``se.fc2``; head keys (``bn``, ``classifier``, ``projection``)
       keep their names.

    Args:
        state_dict: the authors' tensors, without ``module.`` prefixes (see :func:`reidzoo.convert.unwrap_state_dict`).
        arch: ``'sinet_resnet50'``, ``'sbnet_resnet50'``, ``'idnet_resnet50'`` (or ``'sinet'``...); ``None`` infers
            it from the plug-ins present. A given ``arch`` that disagrees with the checkpoint raises ``ValueError``.

    Returns:
        A state dict that loads strictly into ``create_model(arch, num_classes=..., num_frames=...)`` (the kwargs of
        :func:`official_model_args`).
    """
    if kwargs:
        raise TypeError(f'Unexpected arguments {sorted(kwargs)} for the SINet converter.')
    arch = _normalise_arch(arch)
    out: dict[str, torch.Tensor] = {}
    layers: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
    unknown = []
    for key, value in state_dict.items():
        m = _LAYER_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {}).setdefault(int(m.group(2)), {})[m.group(3)] = value
        elif key.startswith(('conv1.', 'bn1.')):
            out[f'backbone.{key}'] = value
        elif key.startswith(('bn.', 'classifier.', 'projection.')):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'Keys that are not part of a SINet-family checkpoint: {unknown[:10]}'
                         f'{" ..." if len(unknown) > 10 else ""}.')

    counts = {'idm': 0, 'sbm': 0}
    for layer, entries in sorted(layers.items()):
        block = 0
        for index in sorted(entries):
            sub = entries[index]
            kind = _plugin_kind(set(sub))
            if kind == 'block':
                prefix = f'backbone.layer{layer}.{block}.'
                block += 1
                out.update({prefix + k: v for k, v in sub.items()})
                continue
            if (kind, layer) not in (('idm', 2), ('sbm', 3)):
                raise ValueError(f'layer{layer}.{index}: a {kind.upper()} where SINet has none.')
            prefix = f'{kind}.{counts[kind]}.'
            counts[kind] += 1
            for k, v in sub.items():
                k = re.sub(r'^se\.1\.', 'se.fc1.', re.sub(r'^se\.3\.', 'se.fc2.', k))
                out[prefix + k] = v

    found = next((a for a, plugins in _OFFICIAL_ARCHS.items() if plugins == (counts['idm'] > 0, counts['sbm'] > 0)),
                 None)
    if found is None:
        raise ValueError('The checkpoint has neither IDM nor SBM modules: it is the plain ResNet-50 baseline, '
                         'which reidzoo does not register as a SINet-family model.')
    if arch is not None and arch != found:
        raise ValueError(f'The checkpoint is a {found} ({counts["idm"]} IDMs, {counts["sbm"]} SBMs), '
                         f'not {arch}: convert it with arch={found!r}.')

    # squeeze inflated conv weights, then fold the backbone conv biases into the BN that follows them
    out = {k: _squeeze_time(k, v) for k, v in out.items()}
    for key in [k for k in out if k.startswith('backbone.') and k.endswith('.bias')]:
        stem = key[:-len('.bias')]
        conv = next((c for c in _CONV_BN if stem == f'backbone.{c}' or stem.endswith(f'.{c}')), None)
        if conv is None:
            continue  # a BN bias
        bn = stem[:-len(conv)] + _CONV_BN[conv]
        mean_key = f'{bn}.running_mean'
        if mean_key not in out:
            raise ValueError(f'{key}: no BatchNorm {bn} follows this conv bias in the checkpoint; cannot fold it.')
        bias = out.pop(key)
        if bias.shape != out[mean_key].shape:
            raise ValueError(f'{key} has shape {tuple(bias.shape)} but {mean_key} has {tuple(out[mean_key].shape)}.')
        out[mean_key] = out[mean_key] - bias.to(out[mean_key].dtype)
    return out


def official_model_args(state_dict: dict[str, torch.Tensor], arch: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """The reidzoo architecture and kwargs that match an authors' (or converted) SINet-family state dict.

    ``num_frames`` and ``idm_reduction`` come from the IDM position-transform shapes at the default 256x128 input
    (``t * 32 * 16`` positions at layer2); ``num_classes`` from the classifier.
    """
    converted = any(k.startswith('backbone.') for k in state_dict)
    sd = state_dict if converted else convert_official_state_dict(state_dict, arch)
    has_idm, has_sbm = any(k.startswith('idm.') for k in sd), any(k.startswith('sbm.') for k in sd)
    found = next(a for a, plugins in _OFFICIAL_ARCHS.items() if plugins == (has_idm, has_sbm))
    arch = _normalise_arch(arch) or found
    args: dict[str, Any] = {'num_classes': sd['classifier.weight'].shape[0] if 'classifier.weight' in sd else 0,
                            'frame_projection': 'projection.weight' in sd}
    if has_idm:
        inter_pos, positions = sd['idm.0.thw_reduction.0.weight'].shape[:2]
        positions_per_frame = 32 * 16  # layer2 map at the authors' 256x128 input
        if positions % positions_per_frame:
            raise ValueError(f'IDM position transform for {positions} positions does not fit 256x128 input.')
        args['num_frames'] = positions // positions_per_frame
        args['idm_reduction'] = positions // inter_pos
    return arch, args


# --- registry -------------------------------------------------------------------------------------------------------
def _create_sinet(variant: str, pretrained: bool = False, **kwargs) -> SINet:
    return build_model_with_cfg(SINet, variant, pretrained, **kwargs)


_RELEASES = 'Google Drive checkpoints in the README of github.com/baist/SINet; `reidzoo convert --list`.'


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        'input_size': (3, 256, 128), 'num_frames': 4, 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'interpolation': 'bicubic', 'train_sampling': 'restricted', 'test_sampling': 'interleaved',
        'distance': 'cosine', 'first_conv': 'backbone.conv1', 'classifier': 'classifier',
        'paper_name': 'Salient-to-Broad Transition for Video Person Re-identification', 'paper_ids': 'CVPR 2022',
        'origin_url': 'https://github.com/baist/SINet', 'notes': _RELEASES,
        **kwargs,
    }


default_cfgs = {
    'sinet_resnet50': _cfg(),
    'sbnet_resnet50': _cfg(),
    'idnet_resnet50': _cfg(),
}


@register_model
def sinet_resnet50(pretrained: bool = False, **kwargs) -> SINet:
    """SINet: ResNet-50 + 2 IDMs (layer2) + 3 SBMs (layer3), InfoNCE projection."""
    model_args = dict(backbone='resnet50.tv_in1k', idm_after=(1, 3), sbm_after=(1, 3, 5), frame_projection=True)
    return _create_sinet('sinet_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def sbnet_resnet50(pretrained: bool = False, **kwargs) -> SINet:
    """SBNet: ResNet-50 + 3 SBMs (layer3), InfoNCE projection."""
    model_args = dict(backbone='resnet50.tv_in1k', idm_after=(), sbm_after=(1, 3, 5), frame_projection=True)
    return _create_sinet('sbnet_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def idnet_resnet50(pretrained: bool = False, **kwargs) -> SINet:
    """IDNet: ResNet-50 + 2 IDMs (layer2), no projection (trained without InfoNCE)."""
    model_args = dict(backbone='resnet50.tv_in1k', idm_after=(1, 3), sbm_after=(), frame_projection=False)
    return _create_sinet('idnet_resnet50', pretrained, **dict(model_args, **kwargs))
