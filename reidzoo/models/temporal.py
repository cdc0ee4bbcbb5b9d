"""Temporal pooling baselines: TP, TA and RNN over an image CNN (Gao & Nevatia 2018).

These are the baselines of COSAM's Tables 2 and 4 (Subramaniam, Nambiar & Mittal, "Co-segmentation Inspired
Attention Networks for Video-based Person Re-identification", ICCV 2019; Gao & Nevatia, "Revisiting Temporal Modeling
for Video-based Person ReID", arXiv:1805.02104), built the way the COSAM authors' code builds them (github.com/InnovArul/vidreid_cosegmentation, ``src/models/ResNet.py``):

* frames run through the backbone as a batch of images ``(B*T, 3, H, W)``;
* ``tp`` and ``rnn`` set the last stride to 1 (16x8 maps at 256x128); ``ta`` keeps stride 2 (8x4 maps), because its
  attention conv kernel is the whole 8x4 map (at other frame sizes, the map the trunk really gives:
  :func:`~reidzoo.models._backbone.stage_output_sizes`);
* no BN neck and no embedding FC: the classifier is one linear layer on the pooled vector, which is also the
  retrieval embedding (squared Euclidean distance at test time);
* test time averages the embeddings of consecutive 4-frame chunks of the whole tracklet (``dense`` sampling).

``seresnet50`` means timm's ``legacy_seresnet50`` (Cadene's layout, which the COSAM authors trained); timm's
``seresnet50`` places the stride on another conv and gives different outputs from the same weights.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from ..spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..layers.temporal_pool import create_temporal_pool
from ._backbone import create_backbone, forward_frames, stage_channels, stage_output_sizes
from ._base import VideoReIDModel
from ._builder import build_model_with_cfg
from ._registry import register_model

__all__ = ['TemporalPoolingNet']


class TemporalPoolingNet(VideoReIDModel):
    """A timm ResNet-like backbone applied per frame, then TP / TA / RNN temporal aggregation and a classifier.

    Subclasses (COSAM) insert modules after stages through :meth:`after_stage`.
    """

    def __init__(
            self,
            backbone: str = 'resnet50',
            aggregation: str = 'tp',
            num_classes: int = 0,
            num_frames: int = 4,
            img_size: tuple[int, int] = (256, 128),
            last_stride: Optional[int] = None,
            rnn_hidden_size: int = 512,
            pretrained_backbone: bool = False,
            **backbone_kwargs: Any,
    ):
        """
        Args:
            backbone: timm model name (ResNet-like: ``resnet50``, ``legacy_seresnet50``, ``resnet18``, ...).
            aggregation: ``'tp'``, ``'ta'`` or ``'rnn'``.
            num_classes: identity classifier size (0: none).
            num_frames: frames per clip the model was designed for (recorded in the cfg; TP/TA/RNN take any T).
            img_size: input ``(H, W)``; fixes the TA attention kernel.
            last_stride: stride of the last stage; default 1 for tp/rnn and 2 (timm's) for ta, as the references.
            rnn_hidden_size: LSTM width for ``rnn``.
            pretrained_backbone: start from timm's ImageNet weights (for training).
        """
        super().__init__()
        self.aggregation_kind = aggregation
        self.num_frames = num_frames
        self.img_size = tuple(img_size)
        if last_stride is None:
            last_stride = 2 if aggregation == 'ta' else 1
        self.backbone = create_backbone(backbone, pretrained=pretrained_backbone, last_stride=last_stride,
                                        **backbone_kwargs)
        self.stage_channels = stage_channels(self.backbone)
        # the trunk's real map sizes (ResNet convs pad: 224x112 gives 7x4 at stride 32, not 224//32 x 112//32 = 7x3)
        self.stage_sizes = stage_output_sizes(self.backbone, self.img_size)
        self.feat_size = self.stage_sizes[-1]
        self.global_pool = aggregation
        kwargs = {'hidden_size': rnn_hidden_size} if aggregation == 'rnn' else {}
        self.aggregation = create_temporal_pool(aggregation, self.stage_channels[-1], self.feat_size, **kwargs)
        if aggregation == 'ta':
            self.fixed_input_size = self.img_size
        self.num_features = self.head_hidden_size = self.aggregation.out_features
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def after_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Hook on the clip maps ``(B, T, C, h, w)`` after stage ``index`` (0..3); identity here."""
        return x

    def forward_features(self, x: torch.Tensor, intermediates: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> per-frame maps ``(B, T, C, h, w)``."""
        return forward_frames(self.backbone, x, self.after_stage, grad_checkpointing=self.grad_checkpointing,
                              intermediates=intermediates)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        emb = self.aggregation(x)
        return emb if pre_logits else self.classifier(emb)


def _create_temporal(variant: str, pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    return build_model_with_cfg(TemporalPoolingNet, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        'input_size': (3, 256, 128), 'num_frames': 4, 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'interpolation': 'bilinear', 'test_sampling': 'dense', 'distance': 'sqeuclidean',
        'first_conv': 'backbone.conv1', 'classifier': 'classifier', 'license': 'apache-2.0',
        'paper_name': 'Revisiting Temporal Modeling for Video-based Person ReID', 'paper_ids': 'arXiv:1805.02104',
        **kwargs,
    }


_SE_NOTE = {'first_conv': 'backbone.layer0.conv1'}
default_cfgs = {
    'tp_resnet50': _cfg(),
    'ta_resnet50': _cfg(),
    'rnn_resnet50': _cfg(),
    'tp_seresnet50': _cfg(**_SE_NOTE),
    'ta_seresnet50': _cfg(**_SE_NOTE),
    'rnn_seresnet50': _cfg(**_SE_NOTE),
}


@register_model
def tp_resnet50(pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    """ResNet-50 + temporal average pooling (TP), last stride 1."""
    model_args = dict(backbone='resnet50', aggregation='tp')
    return _create_temporal('tp_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def ta_resnet50(pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    """ResNet-50 + temporal attention (TA) on 8x4 maps."""
    model_args = dict(backbone='resnet50', aggregation='ta')
    return _create_temporal('ta_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def rnn_resnet50(pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    """ResNet-50 + LSTM (RNN) over frame vectors, last stride 1."""
    model_args = dict(backbone='resnet50', aggregation='rnn')
    return _create_temporal('rnn_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def tp_seresnet50(pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    """SE-ResNet-50 (timm ``legacy_seresnet50``) + TP, last stride 1."""
    model_args = dict(backbone='legacy_seresnet50', aggregation='tp')
    return _create_temporal('tp_seresnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def ta_seresnet50(pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    """SE-ResNet-50 (timm ``legacy_seresnet50``) + TA on 8x4 maps."""
    model_args = dict(backbone='legacy_seresnet50', aggregation='ta')
    return _create_temporal('ta_seresnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def rnn_seresnet50(pretrained: bool = False, **kwargs) -> TemporalPoolingNet:
    """SE-ResNet-50 (timm ``legacy_seresnet50``) + RNN, last stride 1."""
    model_args = dict(backbone='legacy_seresnet50', aggregation='rnn')
    return _create_temporal('rnn_seresnet50', pretrained, **dict(model_args, **kwargs))
