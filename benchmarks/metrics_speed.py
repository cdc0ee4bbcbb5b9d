"""Speed, memory and exactness of :func:`reidzoo.eval.evaluate_rank` at MARS scale and on a 10x larger gallery.

    python benchmarks/metrics_speed.py [--scale 1 10] [--ties none duplicates float16 uint8] [--dim 128]
                                       [--noise 1.2] [--threads N] [--skip-reference]

The problem mimics MARS under the torchreid protocol: 1,980 queries (one per pid and camera, 626 pids seen by 2-6 of
6 cameras), a 9,330-tracklet gallery of 6,082 real tracklets plus 3,248 distractors (pid 0), 14 query pids absent
from the gallery. Features are identity + camera bias + noise , cosine distance, float32, so
distances are realistic (mAP about 0.6-0.8) and tie-free. The larger problem keeps the queries and draws ``--scale``
times as many gallery tracklets per identity and distractors.

``--ties`` adds the cases with exact distance ties between positives and negatives, where a sort-free evaluator is
easiest to get slow: ``duplicates`` (every fourth gallery tracklet appears twice, as when a gallery holds copies of
the queries), ``float16`` (distances quantised to float16) and ``uint8`` (256 distance levels, as 8-bit features
give). Equal distances rank by gallery index, as a stable sort would; the reference loop checks exactly that.

Timed, in one run: ``evaluate_rank`` (default and trapezoid/all-queries), a plain per-query loop (stable argsort of
each row, the definition in docs/datasets-and-protocols.md) and a bare ``np.argsort`` of the whole matrix. torchreid's
Cython evaluator is not run here (never run reference code); the issue measured it at about 1.4-1.7x the bare
argsort, so ``ours / argsort`` below 0.7-0.85 means "2x faster than Cython"; the goal is <= 0.5 (2x faster than
argsort), with ties too. Peak memory is the growth of the
process's resident high-water mark during each step (Linux ``/proc/self/clear_refs``), which also counts torch
allocations.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from reidzoo.eval.distance import compute_distance
from reidzoo.eval.metrics import evaluate_rank


def make_problem(scale: int = 1, dim: int = 128, noise: float = 1.2, seed: int = 0):
    """MARS-like labels, identity + camera + noise features; returns ``(distmat, q_pids, g_pids, q_cams, g_cams)``."""
    rng = np.random.default_rng(seed)
    num_cams_per_pid = np.repeat([2, 3, 4, 5, 6], [213, 202, 132, 54, 25])  # MARS query counts per pid
    pids = np.arange(1, 627)
    q_pids, q_cams = [], []
    for pid, n in zip(pids, num_cams_per_pid):
        cams = rng.choice(6, n, replace=False)
        q_pids += [pid] * n
        q_cams += list(cams)
    q_pids, q_cams = np.array(q_pids), np.array(q_cams)
    # 6,082 real gallery tracklets over 612 pids (14 absent), in the cameras where the pid was seen
    present = rng.permutation(pids)[:612]
    owners = rng.choice(len(q_pids), 6082 * scale, p=np.isin(q_pids, present) / np.isin(q_pids, present).sum())
    g_pids = np.concatenate([q_pids[owners], np.zeros(3248 * scale, np.int64)])
    g_cams = np.concatenate([q_cams[owners], rng.integers(0, 6, 3248 * scale)])

    centers = rng.standard_normal((627, dim))
    cam_bias = 0.5 * rng.standard_normal((6, dim))

    def feats(p, c):
        # distractors (pid 0) each get their own identity
        ident = np.where(p[:, None] > 0, centers[p], rng.standard_normal((len(p), dim)))
        return (ident + cam_bias[c] + noise * rng.standard_normal((len(p), dim))).astype(np.float32)

    distmat = compute_distance(feats(q_pids, q_cams), feats(g_pids, g_cams), 'cosine').numpy()
    return distmat, q_pids, g_pids, q_cams, g_cams


def add_ties(problem, kind: str):
    """The problem with exact ties of the given ``kind`` (see the module docstring); ``'none'`` returns it as is."""
    distmat, q_pids, g_pids, q_cams, g_cams = problem
    if kind == 'none':
        return problem
    if kind == 'duplicates':
        dup = np.arange(0, distmat.shape[1], 4)
        return (np.concatenate([distmat, distmat[:, dup]], 1), q_pids, np.concatenate([g_pids, g_pids[dup]]),
                q_cams, np.concatenate([g_cams, g_cams[dup]]))
    if kind == 'float16':
        return distmat.astype(np.float16).astype(np.float32), q_pids, g_pids, q_cams, g_cams
    if kind == 'uint8':  # cosine distance in [0, 2] on 256 levels
        return np.round(distmat * 127.5).astype(np.float32) / 127.5, q_pids, g_pids, q_cams, g_cams
    raise ValueError(f'unknown --ties kind {kind!r}; expected none, duplicates, float16 or uint8')


def reference_loop(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """The Market-1501 rule per query (stable argsort; skip queries without a positive) plus mINP."""
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind='stable')
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        m = (g_pids[order] == q_pids[i])[keep]
        if not m.any():
            continue
        hits = np.cumsum(m)
        cmc = np.minimum(hits, 1)[:max_rank]
        cmcs.append(np.pad(cmc, (0, max_rank - len(cmc)), mode='edge'))
        aps.append((hits / np.arange(1, len(m) + 1))[m].mean())
        inps.append(hits[-1] / (np.flatnonzero(m)[-1] + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def _reset_peak() -> int:
    """Reset the resident high-water mark; return the current RSS in bytes (0 if unsupported)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _status('VmRSS')
    except OSError:
        return 0


def _status(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    return 0


def measure(fn, repeats: int = 1):
    """Best wall time and best process CPU time over ``repeats``, and peak RSS growth of the first call.

    On a shared machine the wall time also measures the neighbours' load; the CPU time (all threads of this process)
    measures the work done, so the ratios below are given for both."""
    base = _reset_peak()
    walls, cpus, out, peak = [], [], None, float('nan')
    for i in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if i == 0:
            out, peak = result, (_status('VmHWM') - base if base else float('nan'))
    return out, (min(walls), min(cpus)), peak


def run(scale: int, ties: str, args) -> None:
    distmat, qp, gp, qc, gc = add_ties(make_problem(scale, args.dim, args.noise), ties)
    nq, ng = distmat.shape
    distinct = np.mean([len(np.unique(row)) / len(row) for row in distmat[:200]])
    print(f'\n== {nq} queries x {ng} gallery ({len(np.unique(gp[gp > 0]))} gallery pids + distractors, '
          f'float32 distmat {distmat.nbytes / 2**20:.0f} MB), ties: {ties} '
          f'({100 * distinct:.0f}% distinct values per row) ==')
    rows = []
    ours, t_ours, m_ours = measure(lambda: evaluate_rank(distmat, qp, gp, qc, gc), args.repeats)
    rows.append(('evaluate_rank (step, skip)', t_ours, m_ours))
    _, t_trap, m_trap = measure(lambda: evaluate_rank(distmat, qp, gp, qc, gc, ap='trapezoid',
                                                      skip_no_positive=False), args.repeats)
    rows.append(('evaluate_rank (trapezoid, all q)', t_trap, m_trap))

    def bare_argsort():  # in row blocks so the int64 result of the 10x matrix does not dominate memory
        for s in range(0, nq, 256):
            np.argsort(distmat[s:s + 256], axis=1)
    _, t_sort, m_sort = measure(bare_argsort, args.repeats)
    rows.append(('np.argsort of the matrix (rows of 256)', t_sort, m_sort))
    if not args.skip_reference:
        ref, t_ref, m_ref = measure(lambda: reference_loop(distmat, qp, gp, qc, gc))
        rows.append(('per-query reference loop', t_ref, m_ref))

    print(f'{"step":42s} {"wall (s)":>9s} {"CPU (s)":>9s} {"peak RSS growth (MB)":>21s}')
    for name, (wall, cpu), m in rows:
        print(f'{name:42s} {wall:9.3f} {cpu:9.3f} {m / 2**20:21.1f}')
    print(f'mAP {ours.mAP:.4f}  mINP {ours.mINP:.4f}  rank-1 {ours.cmc[0]:.4f}  valid queries '
          f'{ours.num_valid_queries}/{ours.num_queries}')
    print(f'ours / argsort = {t_ours[0] / t_sort[0]:.2f} wall, {t_ours[1] / t_sort[1]:.2f} CPU (target <= 0.5; '
          f'torchreid Cython is about 1.4-1.7x argsort); trapezoid / argsort = {t_trap[0] / t_sort[0]:.2f} wall, '
          f'{t_trap[1] / t_sort[1]:.2f} CPU')
    if not args.skip_reference:
        cmc_ref, map_ref, minp_ref, nv_ref = ref
        exact = (np.array_equal(cmc_ref, ours.cmc) and nv_ref == ours.num_valid_queries)
        print(f'reference loop / ours = {t_ref[0] / t_ours[0]:.1f}x;  CMC identical: {exact};  '
              f'|dmAP| = {abs(map_ref - ours.mAP):.1e}  |dmINP| = {abs(minp_ref - ours.mINP):.1e}')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--scale', type=int, nargs='*', default=[1, 10],
                   help='gallery scales to run, 1 = MARS (default: 1 10)')
    p.add_argument('--ties', nargs='*', default=['none', 'duplicates', 'float16', 'uint8'],
                   help='tie cases to run: none duplicates float16 uint8 (default: all four)')
    p.add_argument('--dim', type=int, default=128, help='feature dimension (default: 128)')
    p.add_argument('--noise', type=float, default=1.2, help='feature noise (default 1.2: mAP ~0.7 at MARS scale)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--repeats', type=int, default=3, help='timed repeats, best kept (default: 3)')
    p.add_argument('--skip-reference', action='store_true', help='skip the slow per-query loop (default: run it)')
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} torch threads, '
          f'{os.cpu_count()} CPUs')
    for scale in args.scale:
        for ties in args.ties:
            run(scale, ties, args)


if __name__ == '__main__':
    main()
