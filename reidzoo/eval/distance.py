"""Query x gallery distance matrices, computed in chunks of query rows.

``'cosine'`` is ``1 - q̂·ĝ`` on L2-normalised features (SINet, AP3D, BiCnet rank by ``-q̂·ĝ``: same order);
``'sqeuclidean'`` is ``‖q‖² + ‖g‖² - 2 q·g`` clamped at 0 (what torchreid and COSAM call "euclidean");
``'euclidean'`` is its square root. Ranking is invariant to the monotone variants but not to L2 normalisation
(see ``docs/datasets-and-protocols.md``). In float32 the expanded square loses relative precision for near-duplicate
pairs (cancellation); pass ``dtype=torch.float64`` when that matters.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['DISTANCES', 'compute_distance']

DISTANCES = ('cosine', 'euclidean', 'sqeuclidean')

_CHUNK_ELEMENTS = 1 << 24  # output entries per chunk (64 MB of float32 intermediates)


def _features(x: Union[np.ndarray, torch.Tensor], name: str, dtype: torch.dtype,
              device: Optional[torch.device]) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if x.dim() != 2:
        raise ValueError(f'{name} must be 2-D (num_items, feature_dim), got shape {tuple(x.shape)}')
    return x.to(device=device if device is not None else x.device, dtype=dtype)


@torch.no_grad()
def compute_distance(
        qf: Union[np.ndarray, torch.Tensor],
        gf: Union[np.ndarray, torch.Tensor],
        metric: str = 'cosine',
        *,
        chunk_size: Optional[int] = None,
        dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Distance matrix between query and gallery features.

    Args:
        qf: ``(num_query, dim)`` features (torch on any device, or numpy).
        gf: ``(num_gallery, dim)`` features.
        metric: ``'cosine'``, ``'euclidean'`` or ``'sqeuclidean'``.
        chunk_size: query rows per chunk (default: about 16M output entries per chunk); bounds the temporaries to
            ``chunk_size x num_gallery`` besides the output itself.
        dtype: dtype of the computation and of the result.

    Returns:
        ``(num_query, num_gallery)`` tensor of ``dtype`` on the device of ``qf``.
    """
    if metric not in DISTANCES:
        raise ValueError(f'metric must be one of {DISTANCES}, got {metric!r}')
    qf = _features(qf, 'qf', dtype, None)
    gf = _features(gf, 'gf', dtype, qf.device)
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f'qf and gf must have the same feature dim, got shapes {tuple(qf.shape)} and '
                         f'{tuple(gf.shape)}')
    num_q, num_g = qf.shape[0], gf.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(num_g, 1))
    out = torch.empty(num_q, num_g, dtype=dtype, device=qf.device)
    if metric == 'cosine':
        gf = F.normalize(gf, dim=1)
    else:
        g_sq = gf.pow(2).sum(1)
    for start in range(0, num_q, max(1, int(chunk_size))):
        q = qf[start:start + chunk_size]
        o = out[start:start + chunk_size]
        if metric == 'cosine':
            torch.mm(F.normalize(q, dim=1), gf.t(), out=o)
            o.neg_().add_(1)
        else:
            torch.mm(q, gf.t(), out=o)
            o.mul_(-2).add_(q.pow(2).sum(1, keepdim=True)).add_(g_sq).clamp_(min=0)
            if metric == 'euclidean':
                o.sqrt_()
    return out
