"""The model contract shared by every reidzoo architecture (``../shared/design/contracts.md``).

A model takes ``x`` of shape ``(B, T, 3, H, W)``:

* ``eval()``  -> the retrieval embedding ``(B, D)``, ``D == model.num_features``;
* ``train()`` -> :class:`ModelOutput` with ``logits (B, num_classes)``, ``embedding (B, D)`` and the family's
  auxiliary loss inputs in ``aux``.

Families implement ``forward_features`` (clip -> family features) and ``forward_head`` (features -> embedding, or
logits), and override :meth:`VideoReIDModel.forward_train` when their losses need more than logits and embedding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

__all__ = ['ModelOutput', 'VideoReIDModel']


@dataclass
class ModelOutput:
    """What a model returns in ``train()`` mode.

    Attributes:
        logits: identity logits ``(B, num_classes)``; ``None`` when the model has no classifier.
        embedding: the retrieval embedding ``(B, D)`` (what ``eval()`` returns).
        aux: family-specific loss inputs (``'frame_features'``, ``'attention'``, ``'part_features'``, ...).
    """
    logits: Optional[torch.Tensor]
    embedding: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class VideoReIDModel(nn.Module):
    """Base class: input checks, the train/eval forward contract and timm-style head methods.

    Subclasses set ``num_features``, ``num_classes``, ``self.classifier`` and may restrict the inputs they accept
    through ``supported_num_frames`` (a tuple of allowed ``T``; ``None`` = any) and ``fixed_input_size``
    (``(H, W)``; ``None`` = any size the backbone reduces to a non-empty map).
    """
    num_features: int
    num_classes: int
    supported_num_frames: Optional[tuple[int, ...]] = None
    fixed_input_size: Optional[tuple[int, int]] = None
    pretrained_cfg: dict[str, Any]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the expected and the actual shape if ``x`` is not a clip this model takes."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise ValueError(f'{name} expects a tensor of shape (B, T, 3, H, W), got {type(x).__name__}.')
        if x.dim() != 5:
            raise ValueError(
                f'{name} expects a 5-D clip batch of shape (B, T, 3, H, W), got shape {tuple(x.shape)}. '
                f'For a single clip use x.unsqueeze(0); for images use x.unsqueeze(1) (T=1).')
        _, t, c, h, w = x.shape
        if c != 3:
            raise ValueError(f'{name} expects 3 channels at dim 2 of (B, T, 3, H, W), got shape {tuple(x.shape)} '
                             f'(channels-first per frame; (B, 3, T, H, W) inputs need x.transpose(1, 2)).')
        if self.supported_num_frames is not None and t not in self.supported_num_frames:
            raise ValueError(
                f'{name} takes T in {list(self.supported_num_frames)} frames per clip, got shape {tuple(x.shape)} '
                f'(T={t}). Split long tracklets into clips of a supported length.')
        if self.fixed_input_size is not None and (h, w) != tuple(self.fixed_input_size):
            eh, ew = self.fixed_input_size
            raise ValueError(
                f'{name} takes frames of exactly {eh}x{ew} (H x W): expected (B, T, 3, {eh}, {ew}), '
                f'got {tuple(x.shape)}. Resize the frames (see model.pretrained_cfg["input_size"]).')

    # --- timm-style head API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the identity classifier (``num_classes=0`` removes it: the model then only embeds)."""
        self.num_classes = num_classes
        ref = next(self.parameters())
        self.classifier = self._make_classifier(num_classes).to(device=ref.device, dtype=ref.dtype)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        """The family's classifier over the embedding; the default is one linear layer (std 0.001, bias 0)."""
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, std=0.001)
        nn.init.zeros_(fc.bias)
        return fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``(B, T, 3, H, W)`` -> the family's unpooled features."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> embedding ``(B, D)`` (``pre_logits=True``) or logits ``(B, num_classes)``."""
        raise NotImplementedError

    def forward_train(self, x: torch.Tensor) -> ModelOutput:
        """Train-mode outputs; families with auxiliary losses override this."""
        embedding = self.forward_head(self.forward_features(x), pre_logits=True)
        logits = self.classifier(embedding) if self.num_classes > 0 else None
        return ModelOutput(logits=logits, embedding=embedding)

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        if self.training:
            return self.forward_train(x)
        return self.forward_head(self.forward_features(x), pre_logits=True)

