"""Non-local relation blocks (Wang et al., "Non-local Neural Networks", CVPR 2018) in the two forms CSTNet's
spatial-temporal interaction module uses (Liu, Zha, Zhu & Jiang, "Co-Saliency Spatio-Temporal Interaction Network
for Person Re-Identification in Videos", IJCAI 2020, arXiv:2004.04979, §3.3, Eq. 4-5):

* :class:`SpatialRelation`: within each frame, every position attends to the positions of an adaptively
  average-pooled copy of the frame (query/key projection shared, keys and values pooled to at most
  ``pool_size``);
* :class:`TemporalRelation`: at each position, every frame attends to the same position in all frames of the clip.

Both return ``ReLU(G * (v · softmax(kᵀq)))``, the *primitive relation feature* with the input's channel count; the
caller adds it to its input (CSTNet gates it first). Softmax runs over the keys, so each output position is a convex
combination of values. All projections are 1x1 convolutions (the paper's ``1x1xC_1`` kernels) and everything is
batched over clips, frames and positions.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['SpatialRelation', 'TemporalRelation']


class SpatialRelation(nn.Module):
    """Spatial non-local block with a shared query/key projection and pooled keys/values (CSTNet Eq. 4-5).

    ``q = θ(x)`` at all ``N = h·w`` positions; ``k = θ(P(x))``, ``v = g(P(x))`` at the ``M`` positions of ``P``, an
    adaptive average pool to ``min(h, H_1) x min(w, W_1)``. Pooling the input before the 1x1 convolutions equals
    pooling their outputs (both are linear, and the average of a bias is the bias) and costs less.

    Complexity per frame: O(N·M·C_1 + (N + M)·C·C_1) time, O(N·M) memory for the relation map.

    Args:
        in_chs: ``C``, channels of the input and of the output.
        mid_chs: ``C_1``, channels of the query/key/value embeddings (CSTNet: 128).
        pool_size: ``(H_1, W_1)``, the largest key/value grid (CSTNet: 16 x 8); smaller maps are not pooled.
    """

    def __init__(self, in_chs: int, mid_chs: int = 128, pool_size: tuple[int, int] = (16, 8)):
        super().__init__()
        self.pool_size = tuple(pool_size)
        self.query_key = nn.Conv2d(in_chs, mid_chs, kernel_size=1)
        self.value = nn.Conv2d(in_chs, mid_chs, kernel_size=1)
        self.out = nn.Conv2d(mid_chs, in_chs, kernel_size=1)  # G_s of Eq. 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` frames -> primitive spatial relation features ``(N, C, h, w)``."""
        n, _, h, w = x.shape
        size = (min(h, self.pool_size[0]), min(w, self.pool_size[1]))
        pooled = F.adaptive_avg_pool2d(x, size) if size != (h, w) else x
        query = self.query_key(x).flatten(2)  # (N, C1, h·w)
        key = self.query_key(pooled).flatten(2)  # (N, C1, M)
        value = self.value(pooled).flatten(2)  # (N, C1, M)
        relation = torch.softmax(key.transpose(1, 2) @ query, dim=1)  # Eq. 4, (N, M, h·w), normalised over keys
        # explicit channel count, not -1: an empty batch must still reshape
        return F.relu(self.out((value @ relation).view(n, value.shape[1], h, w)))  # Eq. 5


class TemporalRelation(nn.Module):
    """Temporal non-local block: at each position, the ``T`` frames attend to each other (CSTNet §3.3).

    The paper reshapes ``(T, C, H, W)`` to ``(HW, C, T)`` and applies ``1x1xC_1`` convolutions; applying 1x1
    convolutions to the frames and contracting over frames per position is the same computation without the
    reshape copy.

    Complexity per clip: O(N·T²·C_1 + N·T·C·C_1) time, O(N·T²) memory for the relation maps (``N = h·w``).

    Args:
        in_chs: ``C``, channels of the input and of the output.
        mid_chs: ``C_1`` (CSTNet: 128).
    """

    def __init__(self, in_chs: int, mid_chs: int = 128):
        super().__init__()
        self.query = nn.Conv2d(in_chs, mid_chs, kernel_size=1)
        self.key = nn.Conv2d(in_chs, mid_chs, kernel_size=1)
        self.value = nn.Conv2d(in_chs, mid_chs, kernel_size=1)
        self.out = nn.Conv2d(mid_chs, in_chs, kernel_size=1)  # G_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` clips -> primitive temporal relation features ``(B, T, C, h, w)``."""
        b, t, c, h, w = x.shape
        frames = x.flatten(0, 1)
        mid = self.query.out_channels  # explicit sizes, not -1: an empty batch must still reshape
        query, key, value = (conv(frames).view(b, t, mid, h * w) for conv in (self.query, self.key, self.value))
        logits = torch.einsum('bkcn,bqcn->bnkq', key, query)  # (B, h·w, T_key, T_query)
        relation = torch.softmax(logits, dim=2)
        mixed = torch.einsum('bkcn,bnkq->bqcn', value, relation)  # (B, T, C1, h·w)
        return F.relu(self.out(mixed.reshape(b * t, mid, h, w))).view(b, t, c, h, w)
