"""STA: Spatial-Temporal Attention for video person re-ID (Fu, Wang, Wei, Huang, AAAI 2019).

Paper: "STA: Spatial-Temporal Attention for Large-Scale Video-based Person Re-Identification" (AAAI 2019,
arXiv:1811.04129). There is no official code; the only re-implementation
(github.com/weleen/AGRL.pytorch, ``torchreid/models/sta.py``) departs from Eq. 1 and has no regulariser, so this
file follows the paper's equations:

* ResNet-50 with the last stride 1: ``N`` frames -> 16x8 maps ``f_n`` with ``D = 2048`` channels at 256x128;
* Eq. 1: attention map ``g_n = s_n / sum_hw s_n`` with ``s_n(h, w) = sum_d f_n(h, w, d)^2``;
* Eq. 2-3: ``K = 4`` horizontal blocks; block score ``s_nk = sum of g_n over block k``;
* Eq. 4: ``S(n, k) = s_nk / sum_n s_nk`` (L1 over frames);
* Algorithm 1: per block the frame with the highest score (``F_1``) and the score-weighted sum over frames
  (``F_2``), concatenated along channels, global average pooling, then the FC whose output is the test embedding;
* Eq. 6: inter-frame regulariser ``||g_i - g_j||_F`` between two random frames of each clip: the model returns the
  maps in ``aux['attention']`` and :func:`sta_interframe_regularizer` computes the term (the trainer weights it).

The attention has no parameters, so any ``T`` works at test time (Table 2 evaluates N = 2..8), and a tracklet can
be embedded from all its frames at once (``test_sampling='all'``).

Where the paper is ambiguous, and the reading chosen:

* **Eq. 1** writes ``||sum_d f^2||_2`` for a scalar, i.e. its absolute value; sums of squares are >= 0, so ``g`` is
  the channel-wise sum of squares L1-normalised over positions ("l2 normalisation on the square sum" in the text).
  AGRL's per-position L2 norm, L2-normalised, is *not* used.
* **Block height.** Algorithm 1 uses ``floor(H / 4)`` rows per block and leaves any remainder rows at zero; we
  require ``h % K == 0`` (16 rows / 4 blocks at 256x128; ``h`` is the trunk's real map height,
  :func:`~reidzoo.models._backbone.stage_output_sizes`) and raise ``ValueError`` otherwise rather than silently
  dropping rows. Algorithm 1's ``F_1(H_s : H_s + H_s)`` is a typo for block ``k``'s rows.
* **argmax ties** pick the first of the tied frames (``torch.argmax``); for identical frames the choice does not
  matter, so a clip of ``T`` copies of one frame embeds like that frame alone.
* **The FC.** Its size and form are not given. We use ``Linear(2D -> 1024, no bias) + BN1d + ReLU`` (the
  reduction form of the part-based models STA builds on, PCB and the same first author's HPM, at the size AGRL
  chose), and its output is the test embedding ("the feature vector after the first fully connected layer"); the
  identity classifier is a second linear layer.
* **lambda** of Eq. 7 is not given. :data:`STA_REG_WEIGHT` = 1.0: both maps are distributions over positions so
  ``Reg`` is bounded by sqrt(2), the same scale as the triplet margin (0.3) and the losses it is added to.
* **"Two random frames"**: two *distinct* frames, drawn independently for each clip (Eq. 6 is zero otherwise).
  The text calls Eq. 6 the "square Frobenius norm" but the formula takes the square root; we follow the formula.
* **Test length.** Table 4 is "tested with sequence length of 4"; the cfg uses ``'all'`` frames (Table 2 shows
  N = 6, 8 at least as good, and STA has no parameter tied to ``T``). Distance: Euclidean, as Eq. 9.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
from ..spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ._backbone import create_backbone, forward_frames, stage_channels, stage_output_sizes
from ._base import ModelOutput, VideoReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model

__all__ = ['STA', 'sta_attention_maps', 'sta_block_scores', 'sta_fuse', 'sta_interframe_regularizer',
           'STA_REG_WEIGHT']


#: lambda of Eq. 7 (not stated in the paper; see the module docstring).
STA_REG_WEIGHT = 1.0


def sta_attention_maps(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 1: per-frame spatial attention ``g = s / sum_hw s`` with ``s = sum_d f^2``.

    Args:
        x: frame maps ``(B, T, D, h, w)``.
        eps: guards an all-zero map (its attention is then zero instead of NaN).

    Returns:
        ``(B, T, h, w)``, each map summing to 1 over its positions.
    """
    energy = x.square().sum(dim=2)
    return energy / energy.sum(dim=(-2, -1), keepdim=True).clamp_min(eps)


def sta_block_scores(attention: torch.Tensor, num_blocks: int = 4, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 2-4: sum the attention of each of ``K`` horizontal blocks, then L1-normalise over the frames.

    Args:
        attention: ``(B, T, h, w)`` from :func:`sta_attention_maps`; ``h`` must be a multiple of ``num_blocks``.
        num_blocks: ``K``.

    Returns:
        ``S`` of shape ``(B, T, K)``; ``S[b, :, k]`` sums to 1.
    """
    b, t, h, w = attention.shape
    block = attention.unflatten(2, (num_blocks, h // num_blocks)).sum(dim=(-2, -1))  # Eq. 3, (B, T, K)
    return block / block.sum(dim=1, keepdim=True).clamp_min(eps)  # Eq. 4


def sta_fuse(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Algorithm 1: highest-scoring frame per block (``F_1``) and the score-weighted sum (``F_2``).

    One gather and one einsum over all blocks and frames: O(B·T·D·h·w) time, O(B·D·h·w) extra memory.

    Args:
        x: frame maps ``(B, T, D, h, w)``.
        scores: ``S`` ``(B, T, K)`` from :func:`sta_block_scores`.

    Returns:
        ``F_fuse = [F_1, F_2]`` concatenated along channels, ``(B, 2D, h, w)``.
    """
    b, t, d, h, w = x.shape
    k = scores.shape[-1]
    blocks = x.unflatten(3, (k, h // k))  # (B, T, D, K, h/K, w)
    best = scores.argmax(dim=1)  # (B, K)
    # gather with an explicitly expanded index (take_along_dim's broadcasting pins the batch size when traced)
    index = best.view(b, 1, 1, k, 1, 1).expand(b, 1, d, k, h // k, w)
    f1 = torch.gather(blocks, 1, index).squeeze(1)
    f2 = torch.einsum('btk,btdkhw->bdkhw', scores.to(x.dtype), blocks)
    return torch.cat([f1, f2], dim=1).flatten(2, 3)


def sta_interframe_regularizer(attention: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Eq. 6: ``||g_i - g_j||_F`` for two distinct random frames ``i != j`` of each clip, averaged over the batch.

    The trainer adds ``STA_REG_WEIGHT * sta_interframe_regularizer(out.aux['attention'])`` to the loss (Eq. 7).

    Args:
        attention: ``aux['attention']``, ``(B, T, h, w)``.
        generator: a CPU ``torch.Generator`` for reproducible frame choices.

    Returns:
        A scalar with ``attention``'s dtype and device (zero when ``T == 1``).
    """
    if attention.dim() != 4:
        raise ValueError(f'sta_interframe_regularizer expects aux["attention"] of shape (B, T, h, w), '
                         f'got {tuple(attention.shape)}.')
    b, t = attention.shape[:2]
    if t < 2:
        return attention.sum() * 0
    first = torch.randint(t, (b,), generator=generator)
    second = (first + torch.randint(1, t, (b,), generator=generator)) % t  # distinct from ``first``
    rows = torch.arange(b)
    first, second, rows = (v.to(attention.device) for v in (first, second, rows))
    diff = attention[rows, first] - attention[rows, second]
    # sqrt of a sum of squares with a zero-safe gradient (identical frames are the regulariser's optimum)
    sq = diff.square().sum(dim=(-2, -1))
    return torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), sq).mean()


class STA(VideoReIDModel):
    """Parameter-free spatial-temporal attention over a last-stride-1 ResNet, fused as Algorithm 1.

    ``sta_resnet50`` has 27,704,384 parameters without a classifier (ResNet-50 trunk 23,508,032 + FC 4096x1024 +
    BN 2x1024); a 625-way classifier adds 640,625.
    """

    def __init__(
            self,
            backbone: str = 'resnet50',
            num_classes: int = 0,
            num_frames: int = 4,
            img_size: tuple[int, int] = (256, 128),
            num_blocks: int = 4,
            embed_dim: int = 1024,
            last_stride: int = 1,
            pretrained_backbone: bool = False,
            **backbone_kwargs: Any,
    ):
        """
        Args:
            backbone: timm ResNet-like model name.
            num_classes: identity classifier size (0: none).
            num_frames: ``N`` used in training (recorded in the cfg; any ``T`` works).
            img_size: the ``(H, W)`` the model is trained and evaluated at (recorded in the cfg); the attention has
                no parameters, so any size whose map height splits into ``num_blocks`` works.
            num_blocks: ``K`` horizontal blocks; the frame map height must be a multiple of it.
            embed_dim: output size of the FC after pooling (the test embedding).
            last_stride: stride of the last stage (1: 16x8 maps at 256x128, as the paper).
            pretrained_backbone: start from timm's ImageNet weights (for training).
        """
        super().__init__()
        self.num_frames = num_frames
        self.img_size = tuple(img_size)
        self.num_blocks = num_blocks
        self.global_pool = 'sta'
        self.backbone = create_backbone(backbone, pretrained=pretrained_backbone, last_stride=last_stride,
                                        **backbone_kwargs)
        self._map_sizes: dict[tuple[int, int], tuple[int, int]] = {}
        fh = self._map_size(self.img_size)[0]
        if fh % num_blocks:
            raise ValueError(f'img_size {self.img_size} gives {fh}-row frame maps, which do not split into '
                             f'K={num_blocks} equal blocks: choose a height whose map has a multiple of {num_blocks} '
                             f'rows (e.g. 256 or 64 with a last stride of 1).')
        in_chs = stage_channels(self.backbone)[-1]
        self.fc = nn.Sequential(nn.Linear(2 * in_chs, embed_dim, bias=False), nn.BatchNorm1d(embed_dim), nn.ReLU())
        nn.init.kaiming_normal_(self.fc[0].weight, mode='fan_out')
        self.num_features = self.head_hidden_size = embed_dim
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def _map_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The last-stage map size for ``hw`` frames (cached: one meta forward per new frame size)."""
        hw = (int(hw[0]), int(hw[1]))
        if hw not in self._map_sizes:
            self._map_sizes[hw] = stage_output_sizes(self.backbone, hw)[-1]
        return self._map_sizes[hw]

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if torch.compiler.is_compiling():
            return  # traced at the example's (static) frame size, which eager use has checked
        h, w = x.shape[-2:]
        fh = self._map_size((h, w))[0]
        if fh % self.num_blocks:
            # the trunk's overall reduction, measured at the built size (16 with a last stride of 1)
            step = max(1, round(self.img_size[0] / self._map_size(self.img_size)[0])) * self.num_blocks
            nearest = max(1, round(h / step)) * step
            raise ValueError(
                f'STA splits the {fh}-row frame map into K={self.num_blocks} equal blocks: H must give a map height '
                f'divisible by {self.num_blocks} (a multiple of {step} pixels), got shape {tuple(x.shape)}; '
                f'expected e.g. (B, T, 3, {nearest}, {w}).')

    def forward_features(self, x: torch.Tensor, intermediates: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> per-frame maps ``(B, T, D, h, w)``."""
        return forward_frames(self.backbone, x, grad_checkpointing=self.grad_checkpointing,
                              intermediates=intermediates)

    def _fuse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = sta_attention_maps(x)
        fused = sta_fuse(x, sta_block_scores(attention, self.num_blocks))
        return fused.mean(dim=(-2, -1)), attention

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        emb = self.fc(self._fuse(x)[0])
        return emb if pre_logits else self.classifier(emb)

    def forward_train(self, x: torch.Tensor) -> ModelOutput:
        pooled, attention = self._fuse(self.forward_features(x))
        embedding = self.fc(pooled)
        logits = self.classifier(embedding) if self.num_classes > 0 else None
        return ModelOutput(logits=logits, embedding=embedding, aux={'attention': attention})


def _create_sta(variant: str, pretrained: bool = False, **kwargs) -> STA:
    return build_model_with_cfg(STA, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        'input_size': (3, 256, 128), 'num_frames': 4, 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'interpolation': 'bilinear', 'test_sampling': 'all', 'distance': 'euclidean',
        'first_conv': 'backbone.conv1', 'classifier': 'classifier', 'license': 'apache-2.0',
        'paper_name': 'STA: Spatial-Temporal Attention for Large-Scale Video-based Person Re-Identification',
        'paper_ids': 'arXiv:1811.04129', 'interframe_reg_weight': STA_REG_WEIGHT,
        **kwargs,
    }


default_cfgs = {
    'sta_resnet50': _cfg(),
}


@register_model
def sta_resnet50(pretrained: bool = False, **kwargs) -> STA:
    """STA on ResNet-50 (last stride 1, K=4 blocks, N=4 training frames, 1024-d embedding)."""
    model_args = dict(backbone='resnet50')
    return _create_sta('sta_resnet50', pretrained, **dict(model_args, **kwargs))
