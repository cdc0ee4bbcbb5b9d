"""Training losses of the reidzoo families, and the recipe-driven loss that combines them.

* label-smoothed cross-entropy (Szegedy et al. 2016; the ``CrossEntropyLabelSmooth`` of the COSAM/SINet code is
  ``(1 - eps) * onehot + eps / K``, which is exactly ``F.cross_entropy(label_smoothing=eps)``);
* batch-hard triplet (Hermans et al. 2017, arXiv:1703.07737) with Euclidean, squared Euclidean or cosine distance,
  and its part-level form (STMP Eq. 13: the mean over the horizontal strips of the per-strip batch-hard loss);
* SINet's frame InfoNCE ("mutual information loss", CVPR'22 supplementary; ``utils/losses.py::InfoNce`` of
  github.com/baist/SINet): frames at the same temporal position in different clips of one identity are positives,
  the other positions of that identity's clips are negatives;
* STA's inter-frame regulariser (AAAI'19 Eq. 6), delegated to :func:`reidzoo.models.sta.sta_interframe_regularizer`.

A recipe's ``loss:`` section names the terms; :class:`ReIDLoss` evaluates them on a :class:`~reidzoo.models.ModelOutput`
and returns every weighted term separately, so logs and the non-finite check can name the one that failed.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import ModelOutput

__all__ = [
    'cross_entropy', 'pairwise_distance', 'batch_hard_triplet', 'frame_info_nce', 'sta_interframe',
    'LOSS_TYPES', 'register_loss', 'ReIDLoss', 'total_loss',
]

DISTANCES = ('euclidean', 'sqeuclidean', 'cosine')


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with the smoothed target ``(1 - eps) * onehot + eps / num_classes``, averaged over the batch."""
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def pairwise_distance(x: torch.Tensor, distance: str = 'euclidean') -> torch.Tensor:
    """Distances between the rows of ``x``: ``(..., N, D)`` -> ``(..., N, N)``.

    ``'cosine'`` is the negative cosine similarity (as SINet's triplet): it ranks as ``1 - cos`` and triplet
    differences are identical. ``'euclidean'`` clamps the squared distance at 1e-12 before the square root so the
    gradient of the zero self-distance stays finite (as open-reid).
    """
    if distance == 'cosine':
        x = F.normalize(x, dim=-1)
        return -(x @ x.transpose(-1, -2))
    if distance not in ('euclidean', 'sqeuclidean'):
        raise ValueError(f'Unknown distance {distance!r}; expected one of {DISTANCES}.')
    sq = (x * x).sum(-1)
    d2 = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * (x @ x.transpose(-1, -2))).clamp_min(1e-12)
    return d2 if distance == 'sqeuclidean' else d2.sqrt()


def batch_hard_triplet(
        features: torch.Tensor,
        targets: torch.Tensor,
        margin: float = 0.3,
        distance: str = 'euclidean',
) -> torch.Tensor:
    """Batch-hard triplet loss: for each anchor, the farthest positive against the closest negative.

    Args:
        features: ``(B, D)`` embeddings, or ``(B, D, P)`` part features; parts are scored independently and the
            loss is averaged over them (STMP's part-level ranking constraint).
        targets: ``(B,)`` identity labels.
        margin: hinge margin ``m`` in ``max(0, d(a, p) - d(a, n) + m)``.
        distance: ``'euclidean'``, ``'sqeuclidean'`` or ``'cosine'``.

    Anchors without a negative in the batch contribute 0 (a batch of one identity has no triplet).
    """
    if features.dim() not in (2, 3) or features.shape[0] != targets.shape[0]:
        raise ValueError(f'batch_hard_triplet expects features (B, D) or (B, D, P) and targets (B,), got '
                         f'{tuple(features.shape)} and {tuple(targets.shape)}.')
    x = features.float()
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)  # (P, B, D)
    dist = pairwise_distance(x, distance)
    same = targets.unsqueeze(0) == targets.unsqueeze(1)
    inf = torch.finfo(dist.dtype).max
    d_ap = torch.where(same, dist, torch.full_like(dist, -inf)).amax(-1)
    d_an = torch.where(same, torch.full_like(dist, inf), dist).amin(-1)
    has_neg = (~same).any(-1)
    loss = torch.where(has_neg, F.relu(d_ap - d_an + margin), torch.zeros_like(d_ap))
    return loss.mean()


def frame_info_nce(
        frame_features: torch.Tensor,
        targets: torch.Tensor,
        temperature: float = 0.07,
        clip_len: int = 4,
) -> torch.Tensor:
    """SINet's InfoNCE over projected per-frame features (temperature-scaled cosine logits).

    For every identity in the batch, the frames of its clips are samples whose class is their temporal position:
    the anchor ``(clip i, position t)`` has as positives ``(clip j != i, position t)`` and as negatives all frames of
    that identity at other positions. Per positive pair, ``log p = s_ap - log(exp(s_ap) + sum_neg exp(s_an))``; the
    loss is the negative mean over all positive pairs of the batch.

    The authors group clips by their position in the batch (``num_instances`` consecutive clips); grouping by the
    identity label gives the same groups with a P x K sampler and does not depend on the batch order. Clips longer
    than ``clip_len`` are cut into ``T // clip_len`` sub-clips first, as the authors do for T=8.

    Args:
        frame_features: ``(B, D, T)`` (``ModelOutput.aux['frame_projection']``).
        targets: ``(B,)`` identity labels.
        temperature: softmax temperature (0.07 in the authors' code).
        clip_len: frames per sub-clip (4).
    """
    if frame_features.dim() != 3 or frame_features.shape[0] != targets.shape[0]:
        raise ValueError(f'frame_info_nce expects frame features (B, D, T) and targets (B,), got '
                         f'{tuple(frame_features.shape)} and {tuple(targets.shape)}.')
    b, d, t = frame_features.shape
    x = frame_features.float()
    if t > clip_len and t % clip_len == 0:
        n = t // clip_len
        x = x.reshape(b, d, n, clip_len).permute(0, 2, 1, 3).reshape(b * n, d, clip_len)
        targets = targets.repeat_interleave(n)
        b, t = b * n, clip_len
    x = F.normalize(x.transpose(1, 2).reshape(b * t, d), dim=-1)  # rows: (clip, position)
    logits = (x @ x.t()) / temperature
    pid = targets.repeat_interleave(t)
    pos = torch.arange(t, device=x.device).repeat(b)
    clip = torch.arange(b, device=x.device).repeat_interleave(t)
    same_id = pid.unsqueeze(0) == pid.unsqueeze(1)
    same_pos = pos.unsqueeze(0) == pos.unsqueeze(1)
    positive = same_id & same_pos & (clip.unsqueeze(0) != clip.unsqueeze(1))
    negative = same_id & ~same_pos
    if not positive.any():
        return x.sum() * 0.0  # no identity with two clips: nothing to contrast
    # log-sum-exp over (negatives + this positive) without overflow at temperature 0.07
    neg_logits = logits.masked_fill(~negative, float('-inf'))
    neg_lse = torch.logsumexp(neg_logits, dim=1, keepdim=True).expand_as(logits)
    log_prob = logits - torch.logaddexp(neg_lse, logits)
    return -log_prob[positive].mean()


def sta_interframe(attention: torch.Tensor) -> torch.Tensor:
    """STA's inter-frame regulariser (Eq. 6) on the normalised attention maps ``(B, T, h, w)``."""
    from ..models.sta import sta_interframe_regularizer  # the model family owns its equation
    return sta_interframe_regularizer(attention)


# --- recipe-driven loss ---------------------------------------------------------------------------------------------
# type -> (function(input, [targets,] **params), default input, whether it takes the identity labels)
LOSS_TYPES: dict[str, tuple[Callable[..., torch.Tensor], str, bool]] = {}


def register_loss(name: str, fn: Callable[..., torch.Tensor], default_input: str, uses_targets: bool = True) -> None:
    """Make ``fn(input, [targets,] **params) -> scalar`` available to recipes as ``loss.<term>.type: name``."""
    LOSS_TYPES[name] = (fn, default_input, uses_targets)


register_loss('cross_entropy', cross_entropy, 'logits')
register_loss('triplet', batch_hard_triplet, 'embedding')
register_loss('infonce', frame_info_nce, 'aux.frame_projection')
register_loss('sta_interframe', sta_interframe, 'aux.attention', uses_targets=False)


def _select(output: ModelOutput, key: str) -> torch.Tensor:
    """``'logits'`` / ``'embedding'`` / ``'aux.<name>'`` of a model output."""
    if key.startswith('aux.'):
        name = key[len('aux.'):]
        if name not in output.aux:
            raise KeyError(f'The loss needs aux[{name!r}], but the model returned aux keys {sorted(output.aux)}. '
                           f'Remove the term from the recipe or use a model that provides it.')
        return output.aux[name]
    value = getattr(output, key, None)
    if value is None:
        raise KeyError(f'The loss needs ModelOutput.{key}, which the model returned as None '
                       f'(a model built with num_classes=0 has no logits).')
    return value


class ReIDLoss(nn.Module):
    """The weighted sum of a recipe's loss terms.

    ``terms`` maps a term name to its spec: ``weight`` (default 1), ``type`` (default: the name; one of
    :data:`LOSS_TYPES`), ``input`` (default: the type's: ``logits``, ``embedding`` or ``aux.<key>``) and the
    function's own parameters, e.g. ``{'ce': {'label_smoothing': 0.1}, 'triplet': {'margin': 0.3}}``.
    """

    def __init__(self, terms: dict[str, dict[str, Any]]):
        super().__init__()
        self.terms: dict[str, tuple[Callable, str, bool, float, dict[str, Any]]] = {}
        for name, spec in terms.items():
            spec = dict(spec or {})
            kind = spec.pop('type', name)
            if kind not in LOSS_TYPES:
                raise ValueError(f'Loss term {name!r}: unknown type {kind!r}; expected one of {sorted(LOSS_TYPES)} '
                                 f'(set loss.{name}.type).')
            fn, default_input, uses_targets = LOSS_TYPES[kind]
            weight = float(spec.pop('weight', 1.0))
            key = spec.pop('input', default_input)
            if weight != 0:
                self.terms[name] = (fn, key, uses_targets, weight, spec)

    def forward(self, output: ModelOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted terms by name (each a scalar); their sum is the training loss."""
        losses = {}
        for name, (fn, key, uses_targets, weight, params) in self.terms.items():
            value = _select(output, key)
            term = fn(value, targets, **params) if uses_targets else fn(value, **params)
            losses[name] = weight * term
        return losses


def total_loss(losses: dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
    """Sum of the weighted terms."""
    return sum(losses.values()) if losses else None
