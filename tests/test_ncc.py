"""Cross-frame normalised cross-correlation (reidzoo.layers.ncc) against a plain per-pair loop."""
import pytest
import torch

from reidzoo.layers import ncc_other_frames, other_frame_index, znorm


def _reference(x: torch.Tensor, eps: float = 1e-4, unbiased: bool = True) -> torch.Tensor:
    """One descriptor pair at a time, as COSAM's Eq. 1-2 read with the authors' normalisation."""
    b, t, c, n = x.shape
    out = torch.zeros(b, t, t - 1, n, n, dtype=x.dtype)
    for bi in range(b):
        for ti in range(t):
            others = [s for s in range(t) if s != ti]
            for j, s in enumerate(others):
                for m in range(n):
                    for p in range(n):
                        u, v = x[bi, s, :, m], x[bi, ti, :, p]
                        u = (u - u.mean()) / (u.std(unbiased=unbiased) + eps)
                        v = (v - v.mean()) / (v.std(unbiased=unbiased) + eps)
                        out[bi, ti, j, m, p] = (u * v).sum() / c
    return out


@pytest.mark.parametrize('t', [2, 3, 4])
@pytest.mark.parametrize('unbiased', [True, False])
def test_matches_per_pair_loop(t, unbiased):
    torch.manual_seed(t)
    x = torch.randn(2, t, 5, 6, dtype=torch.float64) * 3 + 1
    out = ncc_other_frames(x, unbiased=unbiased)
    assert out.shape == (2, t, t - 1, 6, 6)
    torch.testing.assert_close(out, _reference(x, unbiased=unbiased), rtol=1e-10, atol=1e-12)


def test_cosam_layout():
    """``view(B*T, (T-1)*N, h, w)``: channel = (other frame, its position), grid = the frame's own position."""
    torch.manual_seed(0)
    b, t, c, h, w = 1, 3, 4, 2, 3
    x = torch.randn(b, t, c, h * w, dtype=torch.float64)
    vol = ncc_other_frames(x).reshape(b * t, (t - 1) * h * w, h, w)
    z = znorm(x, dim=2)
    # frame 1's correlation with position 4 of frame 2 (its 2nd "other" frame), at its own position (1, 0)
    expected = (z[0, 2, :, 4] * z[0, 1, :, 1 * w + 0]).sum() / c
    torch.testing.assert_close(vol[1, 1 * h * w + 4, 1, 0], expected)


def test_self_correlation_bounds_and_identical_frames():
    x = torch.randn(1, 1, 16, 5).expand(2, 3, 16, 5)  # every frame identical
    out = ncc_other_frames(x, unbiased=False, eps=0.0)
    diag = out.diagonal(dim1=-2, dim2=-1)  # same position in an identical frame: correlation 1
    torch.testing.assert_close(diag, torch.ones_like(diag), rtol=1e-5, atol=1e-5)
    assert out.abs().max() <= 1 + 1e-5  # Cauchy-Schwarz with the population std


def test_other_frame_index():
    assert other_frame_index(4).tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    with pytest.raises(ValueError, match='at least 2 frames'):
        other_frame_index(1)


def test_bad_shape_and_dtype_and_grad():
    with pytest.raises(ValueError, match=r'\(B, T, C, N\).*\(2, 3, 4\)'):
        ncc_other_frames(torch.randn(2, 3, 4))
    x = torch.randn(2, 3, 8, 4, requires_grad=True)
    ncc_other_frames(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.isfinite(ncc_other_frames(x.detach()).float()).all()
