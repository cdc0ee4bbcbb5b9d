"""evaluate_rank against a plain per-query loop written from the metric definitions, plus distances and re-ranking."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from reidzoo.eval import compute_distance, evaluate_rank, k_reciprocal_rerank, rerank_distances


# --- reference: one query at a time, exactly as docs/datasets-and-protocols.md defines --------------------------------------
def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, ap='step', skip=True, g_junk=None,
                   q_self=None):
    num_q, num_g = distmat.shape
    g_junk = np.zeros(num_g, bool) if g_junk is None else g_junk
    aps, inps, cmcs, num_valid = [], [], [], 0
    for i in range(num_q):
        order = np.argsort(distmat[i], kind='stable')  # tie rule: gallery order (NaN last)
        junk = ((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) | g_junk[order]
        if q_self is not None and q_self[i] >= 0:
            junk |= order == q_self[i]
        m = (g_pids[order] == q_pids[i])[~junk]
        if not m.any():
            if not skip:
                aps.append(0.)
                inps.append(0.)
                cmcs.append(np.zeros(max_rank))
            continue
        num_valid += 1
        num_good = m.sum()
        # walk the ranked list: step = precision at each hit; trapezoid = compute_AP.m (precision_0 = 1)
        hits, old_precision, total = 0, 1., 0.
        for j, good in enumerate(m, start=1):
            hits += good
            precision = hits / j
            if good:
                total += precision if ap == 'step' else (old_precision + precision) / 2
            old_precision = precision
            if hits == num_good:
                break
        aps.append(total / num_good)
        inps.append(num_good / (np.flatnonzero(m)[-1] + 1))
        cmc = np.zeros(max_rank)
        cmc[np.flatnonzero(m)[0]:] = 1  # 1 from the first hit on, also past the end of the kept list
        cmcs.append(cmc)
    if not aps:
        return None
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps)), num_valid, np.array(aps)


def random_problem(rng, ties):
    num_q, num_g = int(rng.integers(1, 10)), int(rng.integers(1, 45))
    num_pids, num_cams = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    q_pids, g_pids = rng.integers(0, num_pids, num_q), rng.integers(0, num_pids, num_g)
    q_cams, g_cams = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    if ties:  # few distinct values: many ties between positives, junk and negatives
        d = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    else:
        d = rng.random((num_q, num_g)).astype(np.float32)
    return d, q_pids, g_pids, q_cams, g_cams


def assert_same(result, expected):
    cmc, mAP, mINP, num_valid, all_ap = expected
    np.testing.assert_array_equal(result.cmc, cmc)  # ranks are integers: exact
    assert result.num_valid_queries == num_valid
    assert abs(result.mAP - mAP) < 1e-12 and abs(result.mINP - mINP) < 1e-12
    np.testing.assert_allclose(result.all_ap, all_ap, rtol=0, atol=1e-12)


@pytest.mark.parametrize('ap', ['step', 'trapezoid'])
@pytest.mark.parametrize('skip', [True, False])
@pytest.mark.parametrize('ties', [False, True])
def test_matches_reference_loop(ap, skip, ties):
    rng = np.random.default_rng(4 * (ap == 'step') + 2 * skip + ties)  # deterministic per case
    checked = 0
    for trial in range(60):
        d, qp, gp, qc, gc = random_problem(rng, ties)
        junk = rng.random(len(gp)) < 0.2 if trial % 3 == 0 else None
        q_self = np.where(rng.random(len(qp)) < .5, rng.integers(0, len(gp), len(qp)), -1) if trial % 4 == 0 else None
        max_rank = int(rng.integers(1, 60))  # often larger than the gallery
        expected = reference_rank(d, qp, gp, qc, gc, max_rank, ap, skip, junk, q_self)
        kwargs = dict(max_rank=max_rank, ap=ap, skip_no_positive=skip, g_junk=junk, q_indices_in_gallery=q_self)
        if expected is None:
            with pytest.raises(ValueError, match='no query has a positive'):
                evaluate_rank(d, qp, gp, qc, gc, **kwargs)
            continue
        for chunk_size in (None, 1, 3):
            assert_same(evaluate_rank(d, qp, gp, qc, gc, chunk_size=chunk_size, **kwargs), expected)
        checked += 1
    assert checked > 30


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_matches_reference_loop_hypothesis(seed):
    rng = np.random.default_rng(seed)
    d, qp, gp, qc, gc = random_problem(rng, ties=bool(seed % 2))
    expected = reference_rank(d, qp, gp, qc, gc, 10, 'trapezoid', False)
    result = evaluate_rank(torch.from_numpy(d).double(), qp, gp, qc, gc, max_rank=10, ap='trapezoid',
                           skip_no_positive=False)
    assert_same(result, expected)
    assert np.all(np.diff(result.cmc) >= 0) and result.cmc[-1] <= 1


@pytest.mark.parametrize('noise', [0.3, 30.0])
def test_matches_reference_loop_large_gallery(noise):
    # exercises the packed rows (useful features), full-width rows with the word-count path (>= 2040 columns),
    # the sorted path (a pid with > 96 positives) and the tie fallback (distances rounded to 2 decimals)
    rng = np.random.default_rng(7)
    g_pids = np.concatenate([np.full(300, 1), rng.integers(2, 40, 2500), np.zeros(1200, np.int64)])
    g_cams = rng.integers(0, 6, len(g_pids))
    q_pids, q_cams = np.concatenate([[1, 1], rng.integers(2, 41, 28)]), rng.integers(0, 6, 30)
    centers = rng.standard_normal((41, 8))
    feats = lambda p: np.where(p[:, None] > 0, centers[p], rng.standard_normal((len(p), 8))) + \
        noise * rng.standard_normal((len(p), 8))
    d = compute_distance(feats(q_pids), feats(g_pids), 'euclidean').numpy()
    for distmat in (d, np.round(d, 2)):
        for ap in ('step', 'trapezoid'):
            expected = reference_rank(distmat, q_pids, g_pids, q_cams, g_cams, 50, ap, False)
            for chunk_size in (None, 2):
                assert_same(evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, ap=ap, skip_no_positive=False,
                                          chunk_size=chunk_size), expected)


def test_accelerator_counting_matches_cpu():
    from reidzoo.eval.metrics import _count_below, _count_below_torch
    rng = np.random.default_rng(5)
    d = torch.from_numpy(np.round(rng.random((6, 3000)), 2))
    thresholds = torch.sort(torch.from_numpy(np.round(rng.random((6, 4)), 2))).values
    for got, want in zip(_count_below_torch(d, thresholds), _count_below(d, thresholds, torch.full((6,), 4))):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_hand_worked_example():
    # one query (pid 1, cam 0); gallery in distance order after removing junk (same pid and cam):
    #   index: 0     1      2     3     4     5
    #   pid:   1/c1  1/c0   2     1/c2  3     1/c1      distances 0.1 0.2 0.3 0.4 0.5 0.6
    #   kept:  hit   junk   miss  hit   miss  hit   -> hits at kept ranks 1, 3, 5
    # step AP = (1/1 + 2/3 + 3/5) / 3 = 0.755555...
    # trapezoid AP = [(1/1 + 1)/2 + (2/3 + 1/2)/2 + (3/5 + 2/4)/2] / 3 = (1 + 7/12 + 11/20) / 3 = 0.711111...
    # INP = 3 / 5; CMC = 1 from rank 1
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    g_pids, g_cams = np.array([1, 1, 2, 1, 3, 1]), np.array([1, 0, 0, 2, 1, 1])
    step = evaluate_rank(d, [1], g_pids, [0], g_cams, max_rank=8)
    assert step.mAP == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-15)
    assert step.mINP == pytest.approx(3 / 5, abs=1e-15)
    np.testing.assert_array_equal(step.cmc, np.ones(8))  # length max_rank although only 5 items are kept
    trap = evaluate_rank(d, [1], g_pids, [0], g_cams, ap='trapezoid')
    assert trap.mAP == pytest.approx((1 + 7 / 12 + 11 / 20) / 3, abs=1e-15)
    assert trap.mAP < step.mAP
    # the first item is junk for everyone: hits move to kept ranks 2, 4 -> AP = (1/2 + 2/4) / 2 = 0.5, CMC from rank 2
    junk = evaluate_rank(d, [1], g_pids, [0], g_cams, max_rank=3, g_junk=np.array([1, 0, 0, 0, 0, 0], bool))
    assert junk.mAP == pytest.approx(0.5)
    np.testing.assert_array_equal(junk.cmc, [0, 1, 1])


def test_no_positive_queries_and_averaging():
    # query 0 finds its positive at rank 2 (AP 1/2); query 1 (pid 9) has none
    d = np.array([[0.2, 0.1], [0.1, 0.2]])
    skip = evaluate_rank(d, [1, 9], [1, 2], [0, 0], [1, 1], max_rank=2)
    assert (skip.num_valid_queries, skip.num_queries, skip.mAP) == (1, 2, 0.5)
    np.testing.assert_array_equal(skip.cmc, [0, 1])
    every = evaluate_rank(d, [1, 9], [1, 2], [0, 0], [1, 1], max_rank=2, skip_no_positive=False)
    assert (every.num_valid_queries, every.mAP, every.mINP) == (1, 0.25, 0.25)
    np.testing.assert_array_equal(every.cmc, [0, 0.5])
    np.testing.assert_array_equal(every.all_ap, [0.5, 0.])
    with pytest.raises(ValueError, match='no query has a positive'):
        evaluate_rank(d[1:], [9], [1, 2], [0], [1, 1])


def test_tie_rule_is_gallery_order():
    # negative (index 0) and positive (index 1) at the same distance: the stable order puts the negative first
    d = np.array([[0.5, 0.5, 0.9]], np.float32)
    assert evaluate_rank(d, [1], [2, 1, 3], [0], [1, 1, 1]).mAP == 0.5
    assert evaluate_rank(d, [1], [1, 2, 3], [0], [1, 1, 1]).mAP == 1.0


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_distances_refused_anywhere(bad):
    # a NaN *negative* used to sort last and lift the positive behind it (issue: NaN negatives inflated mAP 0.52->0.73)
    d = np.array([[bad, 0.3, 0.2], [0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match='non-finite distances .* 1 query rows .*row 0'):
        evaluate_rank(d, [1, 1], [2, 1, 1], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match='non-finite'):
        evaluate_rank(np.array([[0.2, bad]]), [1], [1, 2], [0], [1, 1])


@pytest.mark.parametrize('dtype', [np.float32, np.float64])  # float64 takes the equal-count pass, not packed keys
def test_ties_with_duplicated_gallery_and_float16_match_stable_sort_loop(dtype):
    # the tie cliff's inputs: duplicated gallery tracklets and float16-quantised distances, many foreign ties
    rng = np.random.default_rng(3)
    num_q, num_pids = 60, 15
    q_pids, q_cams = rng.integers(0, num_pids, num_q), rng.integers(0, 3, num_q)
    g_pids, g_cams = rng.integers(0, num_pids, 300), rng.integers(0, 3, 300)
    d = rng.random((num_q, 300)).astype(np.float16).astype(np.float32)  # ~1000 levels: ties everywhere
    d = np.concatenate([d, d[:, :100]], 1).astype(dtype)  # each of the first 100 tracklets twice
    g_pids, g_cams = np.concatenate([g_pids, g_pids[:100]]), np.concatenate([g_cams, g_cams[:100]])
    for chunk in (None, 7):
        for ap in ('step', 'trapezoid'):
            ref_cmc, ref_map, ref_minp, ref_valid, ref_aps = reference_rank(d, q_pids, g_pids, q_cams, g_cams, ap=ap)
            r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, ap=ap, chunk_size=chunk)
            np.testing.assert_allclose(r.cmc, ref_cmc, rtol=0, atol=1e-12)
            np.testing.assert_allclose(r.all_ap, ref_aps, rtol=0, atol=1e-12)
            assert r.mINP == pytest.approx(ref_minp, abs=1e-12) and r.num_valid_queries == ref_valid
    assert r.num_gallery == 400


def test_rare_exact_ties_between_a_negative_and_a_positive():
    # continuous distances with a few injected exact ties: the default path plus its equal-count pass for tie rows
    rng = np.random.default_rng(7)
    q_pids, q_cams = rng.integers(0, 10, 40), rng.integers(0, 3, 40)
    g_pids, g_cams = rng.integers(0, 10, 500), rng.integers(0, 3, 500)
    d = rng.random((40, 500)).astype(np.float32)
    for i in range(0, 40, 3):  # copy a positive's distance onto negatives before and after it
        pos = np.flatnonzero((g_pids == q_pids[i]) & (g_cams != q_cams[i]))
        neg = np.flatnonzero(g_pids != q_pids[i])
        if len(pos):
            d[i, neg[[0, -1]]] = d[i, pos[0]]
    ref_cmc, ref_map, ref_minp, ref_valid, ref_aps = reference_rank(d, q_pids, g_pids, q_cams, g_cams)
    for chunk in (None, 5):
        r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, chunk_size=chunk)
        np.testing.assert_allclose(r.cmc, ref_cmc, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.all_ap, ref_aps, rtol=0, atol=1e-12)
        assert r.mINP == pytest.approx(ref_minp, abs=1e-12)


def test_input_types_and_errors():
    rng = np.random.default_rng(0)
    d, qp, gp, qc, gc = random_problem(rng, ties=False)
    while reference_rank(d, qp, gp, qc, gc) is None:
        d, qp, gp, qc, gc = random_problem(rng, ties=False)
    base = evaluate_rank(d, qp, gp, qc, gc)
    as_torch = evaluate_rank(torch.from_numpy(d), torch.from_numpy(qp), gp.tolist(), qc.astype(np.uint16), gc)
    np.testing.assert_array_equal(base.cmc, as_torch.cmc)
    assert base.mAP == as_torch.mAP
    assert evaluate_rank(d, qp.astype(float), gp, qc, gc).mAP == base.mAP  # float ids from .mat files
    assert base.as_dict()['rank1'] == base.cmc[0] and base.as_dict()['ap'] == 'step'
    with pytest.raises(ValueError, match=r'\(3, 4, 1\)'):
        evaluate_rank(np.zeros((3, 4, 1)), qp, gp, qc, gc)
    with pytest.raises(ValueError, match='q_pids'):
        evaluate_rank(d, qp[:-1] if len(qp) > 1 else [1, 2], gp, qc, gc)
    with pytest.raises(ValueError, match='ap must be'):
        evaluate_rank(d, qp, gp, qc, gc, ap='interpolated')
    with pytest.raises(ValueError, match='g_junk'):
        evaluate_rank(d, qp, gp, qc, gc, g_junk=np.zeros(len(gp) + 1, bool))


def test_protocol_name_recorded():
    r = evaluate_rank(np.array([[0.1]]), [1], [1], [0], [1], protocol='mars_torchreid')
    assert r.protocol == 'mars_torchreid' and r.ap == 'step'


# --- distances -------------------------------------------------------------------------------------------------------
def test_distances_match_direct_formulas():
    rng = np.random.default_rng(1)
    qf, gf = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    diff = qf[:, None, :] - gf[None, :, :]
    sq = (diff ** 2).sum(-1)
    qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
    expected = {'sqeuclidean': sq, 'euclidean': np.sqrt(sq), 'cosine': 1 - qn @ gn.T}
    for metric, want in expected.items():
        got = compute_distance(qf, gf, metric, dtype=torch.float64)
        assert got.dtype == torch.float64 and got.shape == (7, 11)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
        got32 = compute_distance(torch.from_numpy(qf).float(), torch.from_numpy(gf).float(), metric)
        assert got32.dtype == torch.float32
        np.testing.assert_allclose(got32.numpy(), want, atol=1e-5)
        for chunk_size in (1, 3):  # chunking changes nothing
            torch.testing.assert_close(compute_distance(qf, gf, metric, chunk_size=chunk_size, dtype=torch.float64),
                                       got, rtol=0, atol=1e-12)  # BLAS blocking: last-bit differences
    assert compute_distance(qf, qf, 'sqeuclidean').diagonal().min() >= 0  # clamped, no negative round-off


def test_distance_errors():
    with pytest.raises(ValueError, match=r'\(2, 3\).*\(2, 4\)'):
        compute_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match='metric'):
        compute_distance(np.zeros((2, 3)), np.zeros((2, 3)), 'manhattan')


# --- re-ranking ------------------------------------------------------------------------------------------------------
def reference_rerank(qf, gf, k1, k2, lambda_value):
    """Zhong et al. 2017 on dense matrices, one item at a time (squared Euclidean of raw features, as the authors)."""
    feats = np.concatenate([qf, gf]).astype(np.float64)
    num_all, num_q = len(feats), len(qf)
    d = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    d = d / d.max(axis=1, keepdims=True)  # = the reference's column normalisation + transpose (d is symmetric)
    rank = np.argsort(d, axis=1, kind='stable')

    def reciprocal(i, k):
        forward = rank[i, :k + 1]
        return forward[[i in rank[j, :k + 1] for j in forward]]

    v = np.zeros((num_all, num_all))
    for i in range(num_all):
        r = reciprocal(i, k1)
        expanded = list(r)
        for c in r:
            r_c = reciprocal(c, int(np.around(k1 / 2)))
            if len(np.intersect1d(r_c, r)) > 2 / 3 * len(r_c):
                expanded += list(r_c)
        expanded = np.unique(expanded)
        w = np.exp(-d[i, expanded])
        v[i, expanded] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(num_all)])
    jaccard = np.empty((num_q, num_all))
    for q in range(num_q):
        for g in range(num_all):
            m = np.minimum(v[q], v[g]).sum()
            jaccard[q, g] = 1 - m / (2 - m)
    return (jaccard * (1 - lambda_value) + d[:num_q] * lambda_value)[:, num_q:]


@pytest.mark.parametrize('k1,k2', [(20, 6), (5, 3), (4, 1)])
def test_rerank_matches_reference(k1, k2):
    rng = np.random.default_rng(k1 * 10 + k2)
    centers = rng.standard_normal((8, 6))
    qf = centers[rng.integers(0, 8, 12)] + 0.7 * rng.standard_normal((12, 6))
    gf = centers[rng.integers(0, 8, 40)] + 0.7 * rng.standard_normal((40, 6))
    expected = reference_rerank(qf, gf, k1, k2, 0.3)
    got = k_reciprocal_rerank(qf, gf, k1=k1, k2=k2, dtype=torch.float64, chunk_size=7)
    assert got.shape == (12, 40)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)
    got32 = k_reciprocal_rerank(torch.from_numpy(qf).float(), gf.astype(np.float32), k1=k1, k2=k2)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-5)
    # the same from precomputed distance blocks (used as given)
    feats = np.concatenate([qf, gf])
    full = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    blocks = rerank_distances(full[:12, 12:], full[:12, :12], full[12:, 12:], k1=k1, k2=k2, chunk_size=5)
    np.testing.assert_allclose(blocks.numpy(), expected, rtol=0, atol=1e-10)


def test_rerank_improves_clustered_retrieval_and_validates():
    rng = np.random.default_rng(3)
    centers = 3 * rng.standard_normal((10, 16))
    q_pids, g_pids = np.arange(10), np.repeat(np.arange(10), 6)
    qf = centers[q_pids] + rng.standard_normal((10, 16))
    gf = centers[g_pids] + rng.standard_normal((60, 16))
    cams = np.zeros(10), np.ones(60)
    before = evaluate_rank(compute_distance(qf, gf, 'sqeuclidean'), q_pids, g_pids, *cams)
    after = evaluate_rank(k_reciprocal_rerank(qf, gf, k1=6, k2=3), q_pids, g_pids, *cams)
    assert after.mAP >= before.mAP - 1e-6  # clean clusters: the neighbourhood structure only helps
    with pytest.raises(ValueError, match='k1'):
        k_reciprocal_rerank(qf[:2], gf[:3], k1=20)
