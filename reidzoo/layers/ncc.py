"""Normalised cross-correlation (NCC) between the local descriptors of the frames of a clip.

COSAM (Subramaniam, Nambiar & Mittal, "Co-segmentation Inspired Attention Networks for Video-based Person
Re-identification", ICCV 2019, Eq. 1-2) correlates every local
descriptor of a frame with every local descriptor of the *other* ``T-1`` frames of its clip; CSTNet's CSL module uses
the same idea, both over positions (spatial branch) and over channels (channel branch: pass the maps transposed so
that the "descriptors" are the spatial responses of each channel).

The normalisation reproduces the COSAM authors' code (github.com/InnovArul/vidreid_cosegmentation,
``src/models/cosam.py``): each descriptor is z-normalised over its ``C`` entries with the *unbiased* standard deviation
and ``eps`` added to the std (not under the square root), and the dot product is divided by ``C``.
"""
from __future__ import annotations

import torch

__all__ = ['znorm', 'other_frame_index', 'ncc_other_frames']


def znorm(x: torch.Tensor, dim: int = 1, unbiased: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` along ``dim``.

    Args:
        x: any tensor.
        dim: the dimension holding the descriptor entries.
        unbiased: Bessel-corrected std (``torch.std``'s default, what COSAM uses).
        eps: added to the std, as COSAM (``1e-4``).
    """
    x = x - x.mean(dim=dim, keepdim=True)
    return x / (x.std(dim=dim, keepdim=True, unbiased=unbiased) + eps)


def other_frame_index(num_frames: int, device: torch.device | None = None) -> torch.Tensor:
    """``(T, T-1)`` long tensor; row ``t`` lists the frames other than ``t`` in increasing order.

    >>> other_frame_index(3).tolist()
    [[1, 2], [0, 2], [0, 1]]
    """
    if num_frames < 2:
        raise ValueError(f'Cross-frame correlation needs at least 2 frames per clip, got T={num_frames}.')
    # arithmetic instead of boolean-mask indexing (whose output size depends on the data: a torch.compile graph
    # break per call): the j-th other frame of frame t is j, shifted past t
    others = torch.arange(num_frames - 1, device=device)
    frames = torch.arange(num_frames, device=device).unsqueeze(1)
    return others + (others >= frames).long()


def ncc_other_frames(
        x: torch.Tensor,
        unbiased: bool = True,
        eps: float = 1e-4,
        normalized: bool = False,
) -> torch.Tensor:
    """NCC of every descriptor of every frame with every descriptor of the other ``T-1`` frames of its clip.

    ``out[b, t, j, m, n] = <z(x[b, s_j, :, m]), z(x[b, t, :, n])> / C`` where ``s_j`` is the ``j``-th frame other
    than ``t`` in increasing index order and ``z`` is :func:`znorm` over the ``C`` descriptor entries.

    The layout is the COSAM authors' one: ``out.view(B*T, (T-1)*N, h, w)`` is their correlation volume, channels
    ordered [other frame, then position in that frame] and the spatial grid being the position in frame ``t``.

    Complexity: O(B·T·(T-1)·N²·C) time and O(B·T·(T-1)·N²) memory for the output (plus O(B·T·C·N) for the
    normalised copy); one batched matmul, no loop over frames or positions.

    Args:
        x: ``(B, T, C, N)``: ``T`` frames, ``N`` local descriptors of ``C`` entries each (``N = h·w`` positions for
            spatial correlation; for correlating channels, pass ``(B, T, h·w, C)``).
        unbiased: unbiased std in the z-normalisation (COSAM: True).
        eps: added to the std (COSAM: ``1e-4``).
        normalized: ``x`` is already z-normalised over ``C`` (skip :func:`znorm`).

    Returns:
        ``(B, T, T-1, N, N)``: ``[batch, frame, other frame, position in the other frame, position in the frame]``.
    """
    if x.dim() != 4:
        raise ValueError(f'ncc_other_frames expects (B, T, C, N), got shape {tuple(x.shape)}.')
    b, t, c, n = x.shape
    index = other_frame_index(t, device=x.device)  # (T, T-1)
    z = x if normalized else znorm(x, dim=2, unbiased=unbiased, eps=eps)
    # all T x T frame pairs in one matmul, then keep the off-diagonal ones: cheaper than gathering T·(T-1) copies
    # of the C x N descriptors first, and only T/(T-1) times the output size
    zt = z.transpose(2, 3)  # (B, T, N, C)
    pairs = torch.matmul(zt.unsqueeze(1), z.unsqueeze(2)) / c  # (B, T_self, T_other, N_other, N_self)
    # a gather along the other-frame axis with a static-shape index (no advanced indexing: exports to ONNX as
    # one GatherElements and traces with a symbolic batch)
    gather_index = index.view(1, t, t - 1, 1, 1).expand(b, t, t - 1, n, n)
    return torch.gather(pairs, 2, gather_index)
