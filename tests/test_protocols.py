"""Named protocols on hand-made datasets, every number worked out by hand in the comments.

Each tracklet gets a 1-D feature x and the distance is Euclidean, so d(q, g) = |x_q - x_g| (exact in float32 for
these values) and every ranking below can be read off the number line.
"""
from collections import namedtuple
from types import SimpleNamespace

import numpy as np
import pytest

from reidzoo.eval import (
    Protocol, average_results, build_eval_sets, evaluate_protocol, get_protocol, list_protocols,
)

Tracklet = namedtuple('Tracklet', 'frames pid camid')
ALL = ['mars_official', 'mars_torchreid', 'mars_query_in_gallery', 'lsvid_official', 'dukev_standard',
       'ilidsvid_10split', 'prid2011_10split', 'synthvid_standard']


def tracklet(name, pid, cam, x, positions):
    t = Tracklet((f'{name}/f1.jpg', f'{name}/f2.jpg'), pid, cam)
    positions[t] = x
    return t


def features(sets, positions):
    return np.array([[positions[t]] for t in sets.unique_tracklets], dtype=np.float32)


@pytest.fixture
def mars_like():
    """MARS-shaped toy test set.

    queries (pid/cam @ x):  q0 1/c0 @0   q1 2/c1 @10   q2 3/c0 @30   q3 4/c0 @40   q4 4/c1 @42
    gallery (not queries):  g0 1/c1 @3   g1 1/c0 @1    g2 2/c0 @11   g3 0/c2 @2 (distractor)
                            g4 3/c0 @31  g5 0/c3 @41 (distractor)
    junk (pid -1):          j0 -1/c1 @0.5
    pid 4 (like MARS's 14 pids) has no tracklet outside the queries; pid 3 is seen by one camera only.
    """
    pos = {}
    q = [tracklet('q0', 1, 0, 0, pos), tracklet('q1', 2, 1, 10, pos), tracklet('q2', 3, 0, 30, pos),
         tracklet('q3', 4, 0, 40, pos), tracklet('q4', 4, 1, 42, pos)]
    g = [tracklet('g0', 1, 1, 3, pos), tracklet('g1', 1, 0, 1, pos), tracklet('g2', 2, 0, 11, pos),
         tracklet('g3', 0, 2, 2, pos), tracklet('g4', 3, 0, 31, pos), tracklet('g5', 0, 3, 41, pos)]
    junk = [tracklet('j0', -1, 1, 0.5, pos)]
    return SimpleNamespace(name='mars', query=q, gallery=g, junk=junk, train=[]), pos


def run(dataset, positions, protocol, **kwargs):
    sets = build_eval_sets(dataset, protocol)
    return sets, evaluate_protocol(features(sets, positions), sets, protocol, distance='euclidean', **kwargs)


def test_registry():
    assert list_protocols() == ALL
    assert list_protocols('mars') == ALL[:3]
    for name in ALL:
        p = get_protocol(name)
        assert isinstance(p, Protocol) and p.name == name and p.source and p.description
        assert p.ap in ('step', 'trapezoid')
    assert get_protocol(get_protocol('mars_official')) is get_protocol('mars_official')
    with pytest.raises(ValueError, match='unknown protocol'):
        get_protocol('market1501')


def test_mars_torchreid(mars_like):
    # gallery = g0..g5 (6). Kept lists (junk = same pid and camera):
    #   q0 @0:  g1(1, junk) g3(2) g0(3, hit) ...     -> hit at kept rank 2: AP 1/2, INP 1/2
    #   q1 @10: g2(1, hit)                           -> AP 1, INP 1
    #   q2: only g4, same camera (junk)              -> no positive, skipped
    #   q3, q4: pid 4 absent from the gallery        -> skipped
    # mAP = (1/2 + 1) / 2 = 0.75, mINP = 0.75, CMC = [1/2, 1, 1, ...], 2 valid of 5
    sets, r = run(*mars_like, 'mars_torchreid')
    assert (sets.num_query, sets.num_gallery, len(sets.unique_tracklets)) == (5, 6, 11)
    assert not sets.g_junk.any() and (sets.q_indices_in_gallery == -1).all()
    assert (r.num_valid_queries, r.num_queries) == (2, 5)
    assert r.mAP == pytest.approx(0.75) and r.mINP == pytest.approx(0.75)
    np.testing.assert_allclose(r.cmc[:3], [0.5, 1, 1])
    assert len(r.cmc) == 50 and r.protocol == 'mars_torchreid' and r.ap == 'step'


def test_mars_query_in_gallery(mars_like):
    # gallery = q0..q4 + g0..g5 (11); each query's own copy is junk (same pid and camera).
    #   q0 @0:  q0(0, self) g1(1, junk) g3(2) g0(3, hit)        -> AP 1/2
    #   q1 @10: q1(0, self) g2(1, hit)                          -> AP 1
    #   q2 @30: q2 self, g4 same camera                         -> no positive, skipped
    #   q3 @40: q3(0, self) g5(1) q4(2, hit)                    -> AP 1/2 (its only positive is another query)
    #   q4 @42: q4(0, self) g5(1) q3(2, hit)                    -> AP 1/2
    # mAP = (1/2 + 1 + 1/2 + 1/2) / 4 = 0.625; mINP = 0.625; rank-1 = 1/4, rank-2 = 1
    sets, r = run(*mars_like, 'mars_query_in_gallery')
    assert (sets.num_gallery, len(sets.unique_tracklets)) == (11, 11)  # queries embedded once
    np.testing.assert_array_equal(sets.gallery_index[:5], sets.query_index)
    np.testing.assert_array_equal(sets.q_indices_in_gallery, np.arange(5))
    assert (r.num_valid_queries, r.mAP, r.mINP) == (4, pytest.approx(0.625), pytest.approx(0.625))
    np.testing.assert_allclose(r.cmc[:3], [0.25, 1, 1])


def test_mars_official(mars_like):
    # gallery = queries + gallery + junk (12); j0 (pid -1) is junk for everyone. Trapezoid AP, all queries averaged:
    #   q0 @0:  q0(0, self) j0(0.5, junk) g1(1, junk) g3(2) g0(3, hit at kept rank 2)
    #           AP = (1/2 + precision_1 = 0/1) / 2 = 1/4           (without j0 as junk it would be ranked first)
    #   q1 @10: g2 hit at kept rank 1: AP = (1 + precision_0 = 1) / 2 = 1
    #   q2:     no positive -> AP 0, CMC 0, INP 0, still averaged
    #   q3, q4: hit at kept rank 2 behind g5: AP 1/4 each
    # mAP = (1/4 + 1 + 0 + 1/4 + 1/4) / 5 = 0.35; mINP = (1/2 + 1 + 0 + 1/2 + 1/2) / 5 = 0.5; CMC = [1/5, 4/5, 4/5]
    sets, r = run(*mars_like, 'mars_official')
    assert sets.num_gallery == 12 and sets.g_junk.tolist() == [False] * 11 + [True]
    assert (r.num_valid_queries, r.num_queries, r.ap) == (4, 5, 'trapezoid')
    assert r.mAP == pytest.approx(0.35) and r.mINP == pytest.approx(0.5)
    np.testing.assert_allclose(r.cmc[:3], [0.2, 0.8, 0.8])
    np.testing.assert_allclose(r.all_ap, [0.25, 1, 0, 0.25, 0.25])


def test_lsvid_official(mars_like):
    # same toy set without junk, named LS-VID: gallery = queries + gallery (11); trapezoid, all queries averaged.
    # Identical to the official MARS numbers above (j0 was junk there, so dropping it changes nothing): mAP 0.35
    dataset, pos = mars_like
    lsvid = SimpleNamespace(name='lsvid', query=dataset.query, gallery=dataset.gallery, junk=[], train=[])
    sets, r = run(lsvid, pos, 'lsvid_official')
    assert sets.num_gallery == 11 and not sets.g_junk.any()
    assert r.mAP == pytest.approx(0.35) and r.num_queries == 5 and r.num_valid_queries == 4
    np.testing.assert_allclose(r.cmc[:2], [0.2, 0.8])


def test_dukev_standard():
    # the on-disk gallery holds a copy of each query (other files, same pid and camera):
    #   q0 1/c0 @0, q1 2/c1 @10; gallery: q0' 1/c0 @0, g0 1/c1 @3, g3 0/c2 @2, q1' 2/c1 @10, g2 2/c0 @11
    #   q0: q0'(0, junk: same pid and camera) g3(2) g0(3, hit) -> AP 1/2;  q1: q1'(junk) g2(1, hit) -> AP 1
    # mAP 0.75, rank-1 0.5; 2 + 5 tracklets embedded (the copies are separate files)
    pos = {}
    q = [tracklet('query/q0', 1, 0, 0, pos), tracklet('query/q1', 2, 1, 10, pos)]
    g = [tracklet('gallery/q0', 1, 0, 0, pos), tracklet('g0', 1, 1, 3, pos), tracklet('g3', 0, 2, 2, pos),
         tracklet('gallery/q1', 2, 1, 10, pos), tracklet('g2', 2, 0, 11, pos)]
    dataset = SimpleNamespace(name='dukev', query=q, gallery=g, junk=[], train=[])
    sets, r = run(dataset, pos, 'dukev_standard')
    assert (sets.num_gallery, len(sets.unique_tracklets)) == (5, 7)
    assert (r.mAP, r.cmc[0], r.num_valid_queries) == (pytest.approx(0.75), 0.5, 2)


def test_synthvid_standard_shares_the_market_rule(mars_like):
    dataset, pos = mars_like
    synth = SimpleNamespace(name='synthvid', query=dataset.query, gallery=dataset.gallery, junk=[], train=[])
    _, r = run(synth, pos, 'synthvid_standard')
    assert (r.mAP, r.num_valid_queries) == (pytest.approx(0.75), 2)  # = mars_torchreid above


@pytest.mark.parametrize('name,cams', [('ilidsvid_10split', 'cam1/cam2'), ('prid2011_10split', 'cam_a/cam_b')])
def test_split_protocols_average_over_splits(name, cams):
    # per split: query = 3 identities in camera 0 at x = 0, 10, 20; gallery = the same identities in camera 1.
    #   split A gallery x = 1, 12, 15:  every query's nearest gallery item is its own identity -> mAP 1, rank-1 1
    #   split B gallery x = 1, 18, 12:  q1 @10 sees pid 2 (2) before pid 1 (8); q2 @20 sees pid 1 (2) before
    #                                   pid 2 (8) -> APs 1, 1/2, 1/2: mAP 2/3, rank-1 1/3, rank-2 1
    # mean over splits: mAP 5/6, rank-1 2/3, rank-2 1 (each split weighs the same)
    protocol = get_protocol(name)
    assert protocol.num_splits == 10 and protocol.max_rank == 20
    results = []
    for gallery_x in ([1, 12, 15], [1, 18, 12]):
        pos = {}
        q = [tracklet(f'{cams}/a{p}', p, 0, 10 * p, pos) for p in range(3)]
        g = [tracklet(f'{cams}/b{p}', p, 1, x, pos) for p, x in enumerate(gallery_x)]
        dataset = SimpleNamespace(name=protocol.dataset, query=q, gallery=g, junk=[], train=[])
        results.append(run(dataset, pos, name)[1])
    assert results[1].mAP == pytest.approx(2 / 3)
    mean = average_results(results)
    assert mean.mAP == pytest.approx(5 / 6) and len(mean.cmc) == 20
    np.testing.assert_allclose(mean.cmc[:3], [2 / 3, 1, 1])
    assert (mean.num_queries, mean.protocol, len(mean.all_ap)) == (6, name, 6)


def test_rerank_and_feature_checks(mars_like):
    dataset, pos = mars_like
    sets = build_eval_sets(dataset, 'mars_query_in_gallery')
    feats = features(sets, pos)
    r = evaluate_protocol(feats, sets, rerank={'k1': 3, 'k2': 1}, distance='euclidean')
    assert r.protocol == 'mars_query_in_gallery+rerank' and 0 < r.mAP <= 1
    with pytest.raises(ValueError, match=r'\(11, dim\).*\(10, 1\)'):
        evaluate_protocol(feats[:10], sets)


def test_warnings_for_mismatched_dataset(mars_like):
    dataset, _ = mars_like
    with pytest.warns(UserWarning, match="defined for 'lsvid'"):
        build_eval_sets(dataset, 'lsvid_official')
    no_junk = SimpleNamespace(name='mars', query=dataset.query, gallery=dataset.gallery, junk=[], train=[])
    with pytest.warns(UserWarning, match='junk'):
        sets = build_eval_sets(no_junk, 'mars_official')
    assert sets.num_gallery == 11
