"""The model contract shared by every reidzoo architecture (see ``docs/deployment.md`` for the deployment side).

A model takes ``x`` of shape ``(B, T, 3, H, W)``:

* ``eval()``  -> the retrieval embedding ``(B, D)``, ``D == model.num_features``;
* ``train()`` -> :class:`ModelOutput` with ``logits (B, num_classes)``, ``embedding (B, D)`` and the family's
  auxiliary loss inputs in ``aux``.

Families implement ``forward_features`` (clip -> family features) and ``forward_head`` (features -> embedding, or
logits), and override :meth:`VideoReIDModel.forward_train` when their losses need more than logits and embedding.

Every family sets ``img_size`` (the ``(H, W)`` it was built for) and ``num_frames`` (the clip length it was built for)
in ``__init__``; the builder derives ``pretrained_cfg['input_size']`` and ``['num_frames']`` from them. The timm
model API is kept where it means something for clips: ``reset_classifier(num_classes, global_pool)``,
``set_grad_checkpointing``, ``forward_intermediates``, and every family traces with a dynamic batch
(``torch.export``, the ONNX exporter) and compiles with ``fullgraph=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

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

    Subclasses set ``num_features``, ``num_classes``, ``self.classifier``, ``img_size``, ``num_frames`` and
    ``global_pool`` (the name of their clip aggregation), and may restrict the inputs they accept through
    ``supported_num_frames`` (a tuple of allowed ``T``; ``None`` = any) and ``fixed_input_size`` (``(H, W)``;
    ``None`` = any size the backbone reduces to a non-empty map).
    """
    num_features: int
    num_classes: int
    img_size: tuple[int, int]
    num_frames: int
    global_pool: str = 'avg'
    grad_checkpointing: bool = False
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
        ref = next(self.parameters(), None)
        if (ref is not None and x.is_floating_point() and x.dtype != ref.dtype
                and not torch.is_autocast_enabled(x.device.type)):
            # conv/linear would raise a bare "Input type and bias type should be the same" deep inside the trunk
            raise ValueError(
                f'{name} has {ref.dtype} weights but got a {x.dtype} clip batch of shape {tuple(x.shape)}: cast the '
                f'input with x.to({ref.dtype}) (the model dtype), or run under torch.autocast(...) for mixed '
                f'precision.')

    # --- timm-style head API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the identity classifier (``num_classes=0`` removes it: the model then only embeds).

        timm's two-argument form. ``global_pool`` may only name the family's own clip aggregation
        (``model.global_pool``): in these architectures the pooling is part of the published model (TA's attention
        conv, SINet's per-frame max, STA's block fusion, STMP's STIM), not an interchangeable head.
        """
        if global_pool is not None and global_pool != self.global_pool:
            raise ValueError(
                f'{type(self).__name__} aggregates clips with {self.global_pool!r}, which is part of the architecture; '
                f'reset_classifier cannot switch it to {global_pool!r}. Pass global_pool=None (or '
                f'{self.global_pool!r}), or pick the architecture with the aggregation you want (reidzoo.list_models()).')
        self.num_classes = num_classes
        ref = next(self.parameters())
        self.classifier = self._make_classifier(num_classes).to(device=ref.device, dtype=ref.dtype)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the trunk's stages in the backward pass instead of storing their activations (timm API).

        Trades about one extra forward of the trunk for the memory of its intermediate activations while
        training; eval and ``torch.no_grad`` forwards are unchanged.
        """
        self.grad_checkpointing = enable

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Union[int, Sequence[int], None] = None,
            intermediates_only: bool = False,
    ) -> Union[list[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
        """timm's ``forward_intermediates`` for clips: the per-frame maps ``(B, T, C, h, w)`` after each trunk stage.

        Args:
            x: clips ``(B, T, 3, H, W)``.
            indices: ``None`` (all four stages), an int ``n`` (the last ``n``) or stage indices ``0..3``.
            intermediates_only: return only the list of maps.

        Returns:
            ``(forward_features(x), maps)``, or ``maps`` when ``intermediates_only``.
        """
        self.check_input(x)
        maps: list[torch.Tensor] = []
        final = self.forward_features(x, intermediates=maps)
        n = len(maps)
        if indices is None:
            take = list(range(n))
        elif isinstance(indices, int):
            take = list(range(n - indices, n))
        else:
            take = [i if i >= 0 else n + i for i in indices]
        if any(not 0 <= i < n for i in take):
            raise ValueError(f'{type(self).__name__} has {n} intermediate stages (0..{n - 1}); got indices={indices}.')
        picked = [maps[i] for i in take]
        return picked if intermediates_only else (final, picked)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        """The family's classifier over the embedding; the default is one linear layer (std 0.001, bias 0)."""
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, std=0.001)
        nn.init.zeros_(fc.bias)
        return fc

    def forward_features(self, x: torch.Tensor, intermediates: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """Clip ``(B, T, 3, H, W)`` -> the family's unpooled features.

        Args:
            x: clips.
            intermediates: if given, each stage's clip maps are appended to it (see :meth:`forward_intermediates`).
        """
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

