"""Temporal sampling modes: hand-worked indices on short, exact-multiple and long tracklets, and the P x K sampler."""
import numpy as np
import pytest

from reidzoo.data.samplers import RandomIdentitySampler
from reidzoo.data.sampling import SAMPLING_MODES, TEST_MODES, TRAIN_MODES, sample_train_indices, test_clip_indices


def test_modes_documented():
    assert set(SAMPLING_MODES) == set(TRAIN_MODES) | set(TEST_MODES)
    assert all(len(doc) > 40 for doc in SAMPLING_MODES.values())


# --- test-time modes: exact expected arrays -----------------------------------------------------------------------
@pytest.mark.parametrize('n, t, expected', [
    (2, 4, [[0, 1, 1, 1]]),  # short: padded with the last frame, block size 1
    (8, 4, [[0, 2, 4, 6]]),  # exact multiple
    (11, 4, [[0, 2, 4, 6]]),  # block = 11 // 4 = 2, the remainder is in the last chunk
    (17, 4, [[0, 4, 8, 12]]),
])
def test_restricted_begin(n, t, expected):
    np.testing.assert_array_equal(test_clip_indices(n, 'restricted_begin', t), expected)


@pytest.mark.parametrize('n, t, expected', [
    (3, 5, [[0, 1, 2, 2, 2]]),  # torchreid: 0..n-1 then the last index repeated
    (10, 5, [[0, 2, 4, 6, 8]]),
    (13, 5, [[0, 2, 4, 6, 8]]),  # n -= n % T -> 10
    (17, 4, [[0, 4, 8, 12]]),  # 16 / 4 = 4
])
def test_evenly(n, t, expected):
    np.testing.assert_array_equal(test_clip_indices(n, 'evenly', t), expected)


@pytest.mark.parametrize('n, t, expected', [
    (1, 4, [[0, 0, 0, 0]]),
    (2, 4, [[0, 1, 0, 1]]),  # COSAM cycles the last clip's own frames
    (4, 4, [[0, 1, 2, 3]]),
    (8, 4, [[0, 1, 2, 3], [4, 5, 6, 7]]),  # exact multiple: the last clip is full, no extra clip
    (9, 4, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 8, 8, 8]]),
    (11, 4, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 8]]),
])
def test_dense(n, t, expected):
    np.testing.assert_array_equal(test_clip_indices(n, 'dense', t), expected)


@pytest.mark.parametrize('n, t, expected', [
    # n=1: [0] -> [0, 0] -> [0, 0, 0, 0]
    (1, 4, [[0, 0, 0, 0]]),
    # n=2: lack 2, len 2 is not > 2 -> extend with all -> sorted [0, 0, 1, 1]; m = 1
    (2, 4, [[0, 0, 1, 1]]),
    # n=3: lack 1 -> append [2] -> [0, 1, 2, 2]
    (3, 4, [[0, 1, 2, 2]]),
    (4, 4, [[0, 1, 2, 3]]),
    # n=5: target 8, append the last 3 -> sorted [0 1 2 2 3 3 4 4], m = 2: clip j = {j, j+2, j+4, j+6}
    (5, 4, [[0, 2, 3, 4], [1, 2, 3, 4]]),
    # n=8: m = 2
    (8, 4, [[0, 2, 4, 6], [1, 3, 5, 7]]),
    # n=3, T=8: [0 1 2] -> [0 1 2 0 1 2] (len 3 <= lack 5) -> + last 2 [1 2] -> sorted [0 0 1 1 1 2 2 2]; m = 1
    (3, 8, [[0, 0, 1, 1, 1, 2, 2, 2]]),
    # n=10, T=4: target 12, append [8, 9] -> sorted [0..7, 8, 8, 9, 9], m = 3
    (10, 4, [[0, 3, 6, 8], [1, 4, 7, 9], [2, 5, 8, 9]]),
])
def test_interleaved(n, t, expected):
    np.testing.assert_array_equal(test_clip_indices(n, 'interleaved', t), expected)


def test_all_and_shapes():
    np.testing.assert_array_equal(test_clip_indices(5, 'all', 4), [[0, 1, 2, 3, 4]])
    for mode in TEST_MODES:
        for n in (1, 3, 4, 7, 8, 50):
            clips = test_clip_indices(n, mode, 4)
            assert clips.dtype == np.int64 and clips.ndim == 2 and clips.min() >= 0 and clips.max() < n
            assert clips.shape[1] == (n if mode == 'all' else 4)
            if mode in ('dense', 'interleaved', 'all'):  # every frame is used
                assert set(clips.ravel().tolist()) == set(range(n))


def test_bad_mode_and_input():
    with pytest.raises(ValueError, match='train mode'):
        test_clip_indices(10, 'random', 4)
    with pytest.raises(ValueError, match='test mode'):
        sample_train_indices(10, 'dense', 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match='at least one frame'):
        test_clip_indices(0, 'dense', 4)


# --- train modes -----------------------------------------------------------------------------------------------------
def _draws(n, mode, t, k=300):
    rng = np.random.default_rng(0)
    return np.stack([sample_train_indices(n, mode, t, rng) for _ in range(k)])


def test_random():
    long = _draws(20, 'random', 4)
    assert (np.diff(long, axis=1) > 0).all()  # sorted, no repeats when n >= T
    assert len(np.unique(long)) == 20
    short = _draws(3, 'random', 5)
    assert (np.diff(short, axis=1) >= 0).all() and short.max() == 2 and short.min() == 0


def test_restricted():
    # n=11, T=4: chunks [0,1] [2,3] [4,5] [6..10] (the last absorbs the remainder)
    d = _draws(11, 'restricted', 4)
    for j, allowed in enumerate([{0, 1}, {2, 3}, {4, 5}, {6, 7, 8, 9, 10}]):
        assert set(d[:, j].tolist()) == allowed
    # exact multiple n=8: chunks of 2
    d = _draws(8, 'restricted', 4)
    for j in range(4):
        assert set(d[:, j].tolist()) == {2 * j, 2 * j + 1}
    # short: padded with the last frame, deterministic
    assert (_draws(2, 'restricted', 4) == [0, 1, 1, 1]).all()


def test_consecutive():
    d = _draws(10, 'consecutive', 4)
    assert (np.diff(d, axis=1) == 1).all()
    # COSAM draws begin in [0, n - T - 1]
    assert set(d[:, 0].tolist()) == set(range(0, 6))
    assert (_draws(3, 'consecutive', 7) == [0, 1, 2, 0, 1, 2, 0]).all()  # short tracklets are cycled
    assert (_draws(4, 'consecutive', 4) == [0, 1, 2, 3]).all()
    assert (_draws(5, 'consecutive', 4) == [0, 1, 2, 3]).all()  # n - T - 1 = 0


def test_train_sampling_is_a_function_of_the_generator():
    a = [sample_train_indices(30, m, 4, np.random.default_rng([1, 2, 3])) for m in TRAIN_MODES]
    b = [sample_train_indices(30, m, 4, np.random.default_rng([1, 2, 3])) for m in TRAIN_MODES]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --- P x K identity sampler -------------------------------------------------------------------------------------------
def _pids():
    rng = np.random.default_rng(5)
    # 13 identities with 1..7 tracklets each (some fewer than K=4), in an unsorted order
    pids = np.concatenate([np.full(int(rng.integers(1, 8)), p) for p in range(13)])
    return rng.permutation(pids).tolist()


def test_pk_structure():
    pids = _pids()
    sampler = RandomIdentitySampler(pids, batch_size=12, num_instances=4, seed=1)
    indices = list(sampler)
    assert len(indices) == len(sampler) and len(indices) % 12 == 0 and len(indices) > 0
    for batch in np.asarray(indices).reshape(-1, 12):
        groups = np.asarray([pids[i % len(pids)] for i in batch]).reshape(3, 4)
        assert (groups == groups[:, :1]).all()  # K consecutive indices of one identity
        assert len(set(groups[:, 0].tolist())) == 3  # P distinct identities
    # no index repeats within the epoch: an identity with n >= K never reuses a tracklet, and the draws with replacement
    # of an identity with n < K come as i + j * len(data) (j-th repeat of tracklet i) so each gets its own random clip
    assert len(set(indices)) == len(indices)
    counts = np.bincount(pids)
    repeats = [i for i in indices if i >= len(pids)]
    assert repeats and all(counts[pids[i % len(pids)]] < 4 for i in repeats)
    assert all(0 <= i < 4 * len(pids) for i in indices)


def test_pk_tracklets_input_and_determinism():
    tracklets = [(('f',), p, 0) for p in _pids()]
    a = RandomIdentitySampler(tracklets, 8, 4, seed=3)
    b = RandomIdentitySampler([t[1] for t in tracklets], 8, 4, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    with pytest.raises(ValueError, match='multiple'):
        RandomIdentitySampler(tracklets, 10, 4)


def test_rank_sharding():
    pids = _pids()
    full = RandomIdentitySampler(pids, 8, 4, seed=0)
    ranks = [RandomIdentitySampler(pids, 8, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    for s in (full, *ranks):
        s.set_epoch(4)
    per_rank = [s.batches() for s in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    flat = [set(b.ravel().tolist()) for b in per_rank]
    assert not flat[0] & flat[1]  # disjoint batches (no tracklet on both ranks)
    global_batches = full.batches()
    usable = len(global_batches) - len(global_batches) % 2
    np.testing.assert_array_equal(np.stack([per_rank[0], per_rank[1]], 1).reshape(-1, 8), global_batches[:usable])


def test_resume_mid_epoch():
    pids = _pids()
    ref = RandomIdentitySampler(pids, 8, 4, seed=7)
    ref.set_epoch(2)
    expected = list(ref)

    run = RandomIdentitySampler(pids, 8, 4, seed=7)
    run.set_epoch(2)
    it = iter(run)
    consumed = [next(it) for _ in range(16)]  # two batches, then the run is killed
    state = run.state_dict(batches_consumed=2)
    assert state['epoch'] == 2 and state['position'] == 16

    resumed = RandomIdentitySampler(pids, 8, 4, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the training loop calls this again on resume; it must not restart the epoch
    assert len(resumed) == len(expected) - 16
    assert consumed + list(resumed) == expected
    resumed.set_epoch(3)
    fresh = RandomIdentitySampler(pids, 8, 4, seed=7)
    fresh.set_epoch(3)
    assert list(resumed) == list(fresh)
    with pytest.raises(ValueError, match='seed'):
        RandomIdentitySampler(pids, 8, 4, seed=8).load_state_dict(state)
