"""Training losses against plain-loop references (reidzoo.train.losses)."""
import math

import pytest
import torch
import torch.nn.functional as F

from reidzoo.models import ModelOutput
from reidzoo.train.losses import ReIDLoss, batch_hard_triplet, cross_entropy, frame_info_nce, pairwise_distance


def _pk_labels(p: int, k: int) -> torch.Tensor:
    return torch.arange(p).repeat_interleave(k)


def _dist(a: torch.Tensor, b: torch.Tensor, distance: str) -> float:
    if distance == 'cosine':
        return -float(F.cosine_similarity(a, b, dim=0))
    d2 = float(((a - b) ** 2).sum())
    return d2 if distance == 'sqeuclidean' else math.sqrt(max(d2, 1e-12))


def _triplet_loop(x: torch.Tensor, y: torch.Tensor, margin: float, distance: str) -> float:
    """Hermans et al. batch-hard, one anchor at a time."""
    total = 0.0
    n = len(y)
    for a in range(n):
        pos = [_dist(x[a], x[j], distance) for j in range(n) if y[j] == y[a]]
        neg = [_dist(x[a], x[j], distance) for j in range(n) if y[j] != y[a]]
        total += max(0.0, max(pos) - min(neg) + margin) if neg else 0.0
    return total / n


@pytest.mark.parametrize('distance', ['euclidean', 'sqeuclidean', 'cosine'])
def test_batch_hard_triplet_matches_loop(distance):
    torch.manual_seed(0)
    x = torch.randn(12, 7, dtype=torch.float64)
    y = _pk_labels(4, 3)[torch.randperm(12)]
    got = batch_hard_triplet(x, y, margin=0.3, distance=distance)
    assert got.item() == pytest.approx(_triplet_loop(x.float(), y, 0.3, distance), rel=1e-5, abs=1e-6)


def test_batch_hard_triplet_zero_when_separated_and_single_identity():
    x = torch.tensor([[0., 0.], [0., 0.1], [10., 0.], [10., 0.1]])
    y = torch.tensor([0, 0, 1, 1])
    assert batch_hard_triplet(x, y, margin=0.3).item() == 0.0
    single = batch_hard_triplet(torch.randn(4, 3, requires_grad=True), torch.zeros(4, dtype=torch.long))
    assert single.item() == 0.0
    single.backward()  # no NaN from the +inf "closest negative"


def test_batch_hard_triplet_gradient_finite_for_identical_features():
    x = torch.ones(4, 5, requires_grad=True)  # all distances 0: sqrt at 0 must not give NaN gradients
    loss = batch_hard_triplet(x, torch.tensor([0, 0, 1, 1]), margin=0.3)
    loss.backward()
    assert loss.item() == pytest.approx(0.3, abs=1e-4)
    assert torch.isfinite(x.grad).all()


def test_part_triplet_is_mean_over_strips():
    """STMP's part-level ranking loss: mean over the 8 strips of the batch-hard loss on aux['part_features']."""
    torch.manual_seed(1)
    parts = torch.randn(6, 16, 8)
    y = _pk_labels(3, 2)
    got = batch_hard_triplet(parts, y, margin=0.4, distance='euclidean')
    per_strip = [_triplet_loop(parts[:, :, i], y, 0.4, 'euclidean') for i in range(8)]
    assert got.item() == pytest.approx(sum(per_strip) / 8, rel=1e-5)


def test_triplet_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r'\(5, 3\).*\(4,\)'):
        batch_hard_triplet(torch.randn(5, 3), torch.zeros(4, dtype=torch.long))


def test_pairwise_distance_matches_cdist():
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(pairwise_distance(x, 'euclidean'), torch.cdist(x, x).clamp_min(1e-6), atol=1e-6,
                               rtol=1e-6)


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_label_smoothing_formula(eps):
    """CrossEntropyLabelSmooth of the COSAM/SINet code: targets (1 - eps) * onehot + eps / K."""
    torch.manual_seed(2)
    logits, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    target = (1 - eps) * F.one_hot(y, 5).float() + eps / 5
    ref = (-target * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert cross_entropy(logits, y, label_smoothing=eps).item() == pytest.approx(ref.item(), rel=1e-6)


def _info_nce_official_order(features: torch.Tensor, num_instances: int, temperature: float) -> torch.Tensor:
    """The authors' InfoNCE written as loops: groups of num_instances consecutive clips, positives = same position."""
    b, c, t = features.shape
    if t == 8:
        features = features.reshape(b, c, 2, 4).transpose(1, 2).reshape(b * 2, c, 4)
        b, c, t = features.shape
    terms = []
    for g in range(b // num_instances):
        clips = F.normalize(features[g * num_instances:(g + 1) * num_instances], dim=1)  # (ni, c, t)
        rows = [(i, p) for p in range(t) for i in range(num_instances)]
        for (i, p) in rows:
            neg = sum(math.exp(float(clips[i, :, p] @ clips[j, :, q]) / temperature)
                      for (j, q) in rows if q != p)
            for (j, q) in rows:
                if q == p and j != i:
                    s = float(clips[i, :, p] @ clips[j, :, q]) / temperature
                    terms.append(s - math.log(neg + math.exp(s)))
    return -torch.tensor(terms).mean()


def test_info_nce_matches_authors_formula_and_shapes():
    torch.manual_seed(3)
    p, k, d, t = 2, 4, 16, 4
    feats = torch.randn(p * k, d, t, requires_grad=True)
    y = _pk_labels(p, k)
    loss = frame_info_nce(feats, y, temperature=0.07)
    assert loss.dim() == 0 and torch.isfinite(loss)
    ref = _info_nce_official_order(feats.detach(), k, 0.07)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4)
    loss.backward()
    assert feats.grad.shape == (p * k, d, t) and torch.isfinite(feats.grad).all()
    # grouping by label: shuffling the batch changes nothing
    perm = torch.randperm(p * k)
    assert frame_info_nce(feats.detach()[perm], y[perm]).item() == pytest.approx(loss.item(), rel=1e-5)


def test_info_nce_eight_frames_split_into_two_clips_of_four():
    torch.manual_seed(4)
    feats = torch.randn(4, 8, 8)
    y = torch.tensor([0, 0, 1, 1])
    got = frame_info_nce(feats, y)
    halves = feats.reshape(4, 8, 2, 4).permute(0, 2, 1, 3).reshape(8, 8, 4)
    assert got.item() == pytest.approx(frame_info_nce(halves, y.repeat_interleave(2)).item(), rel=1e-6)
    with pytest.raises(ValueError, match=r'\(4, 8\)'):
        frame_info_nce(torch.randn(4, 8), y)


def test_reid_loss_terms_weights_and_errors():
    torch.manual_seed(5)
    out = ModelOutput(logits=torch.randn(4, 3), embedding=torch.randn(4, 6),
                      aux={'part_features': torch.randn(4, 6, 8), 'aux_logits': torch.randn(4, 3)})
    y = torch.tensor([0, 0, 1, 1])
    loss = ReIDLoss({
        'ce': {'type': 'cross_entropy', 'label_smoothing': 0.1},
        'aux_ce': {'type': 'cross_entropy', 'input': 'aux.aux_logits', 'weight': 0.5},
        'triplet': {'margin': 0.4},
        'part_triplet': {'type': 'triplet', 'input': 'aux.part_features', 'margin': 0.4},
        'unused': {'type': 'infonce', 'weight': 0.0},
    })
    terms = loss(out, y)
    assert list(terms) == ['ce', 'aux_ce', 'triplet', 'part_triplet']
    assert terms['aux_ce'].item() == pytest.approx(0.5 * F.cross_entropy(out.aux['aux_logits'], y).item(), rel=1e-6)
    assert terms['part_triplet'].item() == pytest.approx(
        batch_hard_triplet(out.aux['part_features'], y, 0.4).item(), rel=1e-6)
    with pytest.raises(KeyError, match='frame_projection'):
        ReIDLoss({'infonce': {}})(out, y)
    with pytest.raises(ValueError, match='unknown type'):
        ReIDLoss({'focal': {}})


def test_sta_interframe_term_uses_the_model_regulariser():
    from reidzoo.models.sta import sta_interframe_regularizer
    att = torch.softmax(torch.randn(3, 4, 8), -1).reshape(3, 4, 4, 2)
    out = ModelOutput(logits=None, embedding=torch.randn(3, 2), aux={'attention': att})
    torch.manual_seed(6)
    got = ReIDLoss({'interframe': {'type': 'sta_interframe', 'weight': 2.0}})(out, torch.zeros(3))['interframe']
    torch.manual_seed(6)
    assert got.item() == pytest.approx(2.0 * sta_interframe_regularizer(att).item(), rel=1e-6)
