"""Gallery search at scale: faiss (IVF, HNSW) against exact chunked torch search, in the same run.

    python benchmarks/search_speed.py [--sizes 100000 1000000] [--queries 1000] [--dim 512] [--per-id 20]
                                      [--noise 1.0] [--latent-dim 0] [--nprobe 8 16 32] [--ef-search 16 32 64]
                                      [--hnsw-max 100000] [--repeats 3] [--out FILE.json]

Problem: ``--sizes`` gallery embeddings of ``--dim`` float32 with identity structure, the way a re-ID model's
tracklet embeddings look: identities with ``--per-id`` tracklets each, every embedding its identity's centre plus
isotropic noise of ``--noise`` times the centre's norm (1.0 makes two tracklets of one person about 0.5 cosine
similar and two people about 0 ± 0.05), cosine metric. The ``--queries`` queries are fresh draws of random gallery
identities, so each query's true top-10 are tracklets of its own identity.

Per gallery size, every method answers the same queries with k=10:

* ``exact``: :class:`reidzoo.search.GalleryIndex` kind ``'exact'`` (chunked torch matmul + running top-k; one
  query-chunk x gallery-chunk block of 64 MB at a time, never the full 1000 x N matrix). It is the ground truth.
* ``ivf``: faiss ``IndexIVFFlat`` with reidzoo's default nlist (:func:`reidzoo.search.ivf_defaults`), at several
  ``nprobe``; ``hnsw``: faiss ``IndexHNSWFlat`` (M=32) at several efSearch, up to ``--hnsw-max`` rows (its build is
  the slow part on 2 cores).

Reported: build time, search time for all queries (wall and CPU seconds, fastest of ``--repeats``), speed-up over
exact in CPU seconds (immune to other jobs on a shared machine), recall@10 against exact (share of the exact
top-10 found), and memory: the resident size the index keeps (growth of RSS across the build) and the peak growth of
RSS during the search (Linux ``/proc/self/clear_refs`` resets the high-water mark; it counts torch, numpy and faiss
allocations alike).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import time
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from reidzoo.search import GalleryIndex, hnsw_defaults, ivf_defaults


def make_problem(size: int, num_queries: int, dim: int, per_id: int, noise: float, latent_dim: int = 0,
                 seed: int = 0):
    """Clustered gallery and queries (float32, built in chunks so 1M x 512 needs no float64 temporaries).

    Identity centres are isotropic in ``dim`` dimensions (``latent_dim`` 0), or unit vectors in a random
    ``latent_dim``-dimensional subspace (``latent_dim`` > 0: the low intrinsic dimension of deep features).
    """
    rng = np.random.default_rng(seed)
    num_ids = max(1, size // per_id)
    if latent_dim:
        basis = rng.standard_normal((latent_dim, dim), dtype=np.float32)
        centres = rng.standard_normal((num_ids, latent_dim), dtype=np.float32) @ basis
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    else:
        centres = rng.standard_normal((num_ids, dim), dtype=np.float32) / np.sqrt(dim, dtype=np.float32)
    gallery = np.empty((size, dim), np.float32)
    ids = rng.permutation(np.arange(size) % num_ids)
    scale = np.float32(noise / np.sqrt(dim))
    for start in range(0, size, 1 << 16):
        sl = slice(start, start + (1 << 16))
        gallery[sl] = centres[ids[sl]] + scale * rng.standard_normal((len(ids[sl]), dim), dtype=np.float32)
    q_ids = rng.integers(0, num_ids, num_queries)
    queries = centres[q_ids] + scale * rng.standard_normal((num_queries, dim), dtype=np.float32)
    return gallery, queries


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (0 where /proc is missing)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> int:
    """Reset the resident high-water mark and return the current RSS."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    return _status('VmRSS')


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float, float, int]:
    """``(result, wall seconds, CPU seconds, peak RSS growth in bytes)`` of ``fn``: the fastest of ``repeats`` calls
    (other processes only ever add time, so the minimum is the least disturbed measurement) and the largest peak.

    CPU seconds (all threads of this process) are what the speed-up is computed from: on a machine shared with other
    jobs, wall time measures the neighbours' load as much as the search, CPU time measures the search's work."""
    wall, cpu, peak = float('inf'), float('inf'), 0
    for _ in range(max(1, repeats)):
        gc.collect()
        base = _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        peak = max(peak, _status('VmHWM') - base)
    return out, wall, cpu, peak


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k that the approximate search returned."""
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, truth)]))


def run_size(size: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    gallery, queries = make_problem(size, args.queries, args.dim, args.per_id, args.noise, args.latent_dim,
                                   args.seed)
    rows: list[dict[str, Any]] = []
    gib = 1024 ** 3

    def build(source: np.ndarray, **kw) -> tuple[GalleryIndex, float, int]:
        rss0 = _status('VmRSS')
        index, seconds, _, _ = timed(lambda: GalleryIndex.build(source, metric='cosine', **kw))
        return index, seconds, _status('VmRSS') - rss0

    exact, t_build, kept = build(gallery, kind='exact')
    del gallery  # later builds read the exact index's normalised copy: one 2 GB array fewer at 1M
    gallery = exact.embeddings
    exact.search(queries[:8], args.k)  # warm-up: first torch matmul sets up threads
    (truth_d, truth, _), t_exact, c_exact, peak = timed(partial(exact.search, queries, args.k), args.repeats)
    rows.append({'size': size, 'method': 'exact (torch, chunked)', 'build_s': t_build, 'search_s': t_exact,
                 'search_cpu_s': c_exact, 'speedup': 1.0, 'recall@10': 1.0, 'index_gib': kept / gib,
                 'search_peak_gib': peak / gib})
    print(f'{size:>9,d} exact: {t_exact:.2f} s ({c_exact:.2f} CPU s) for {len(queries)} queries', flush=True)
    del exact
    gc.collect()

    if 'ivf' in args.methods:
        run_faiss('ivf', size, gallery, queries, truth, c_exact, rows, build, args)
    if 'hnsw' in args.methods and size <= args.hnsw_max:
        run_faiss('hnsw', size, gallery, queries, truth, c_exact, rows, build, args)
    return rows


# faiss index kind -> (its search-time knob: search() keyword, index.params key, CLI values, label in the table)
FAISS_KNOBS = {
    'ivf': ('nprobe', 'nprobe', lambda args: args.nprobe, lambda p: f'faiss IVF nlist={p["nlist"]} nprobe'),
    'hnsw': ('ef_search', 'ef_search', lambda args: args.ef_search, lambda p: f'faiss HNSW M={p["M"]} efSearch'),
}


def run_faiss(kind, size, gallery, queries, truth, c_exact, rows, build, args) -> None:
    """Build one faiss index and time its search at each value of its search-time knob, against exact search."""
    gib = 1024 ** 3
    keyword, param, values, label = FAISS_KNOBS[kind]
    index, t_build, kept = build(gallery, kind=kind)
    print(f'{size:>9,d} {kind} built in {t_build:.1f} s: {index}', flush=True)
    for value in values(args):
        index.search(queries[:8], args.k, **{keyword: value})  # warm-up
        (_, found, _), seconds, cpu, peak = timed(lambda: index.search(queries, args.k, **{keyword: value}),
                                                  args.repeats)
        default = ' (default)' if value == index.params[param] else ''
        rows.append({'size': size, 'method': f'{label(index.params)}={value}{default}',
                     'build_s': t_build, 'search_s': seconds, 'search_cpu_s': cpu, 'speedup': c_exact / cpu,
                     'recall@10': recall_at_k(found, truth), 'index_gib': kept / gib, 'search_peak_gib': peak / gib})
        print(f'  {rows[-1]["method"]}: {seconds:.3f} s ({cpu:.3f} CPU s), recall@10 {rows[-1]["recall@10"]:.4f}',
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[100_000, 1_000_000],
                        help='gallery sizes (default: 100000 1000000)')
    parser.add_argument('--queries', type=int, default=1000, help='number of queries (default: 1000)')
    parser.add_argument('--dim', type=int, default=512, help='embedding dim (default: 512)')
    parser.add_argument('--per-id', type=int, default=20, help='gallery tracklets per identity (default: 20)')
    parser.add_argument('--noise', type=float, default=1.0, help='noise norm / centre norm (default: 1.0)')
    parser.add_argument('--latent-dim', type=int, default=0,
                        help='identity centres in a random subspace of this dim; 0 = isotropic, the hardest case for '
                             'IVF (default: 0)')
    parser.add_argument('--k', type=int, default=10, help='results per query (default: 10)')
    parser.add_argument('--nprobe', type=int, nargs='+', default=[8, 16, 32],
                        help='IVF nprobe values to time (default: 8 16 32)')
    parser.add_argument('--ef-search', type=int, nargs='+', default=[16, 32, 64],
                        help='HNSW efSearch values to time (default: 16 32 64)')
    parser.add_argument('--methods', nargs='+', default=['ivf', 'hnsw'], choices=('ivf', 'hnsw'),
                        help='faiss indexes to compare with exact search (default: ivf hnsw)')
    parser.add_argument('--hnsw-max', type=int, default=100_000,
                        help='largest gallery to build HNSW for (default: 100000; at 1M its build takes 10+ min)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='time each search this many times and keep the fastest (default: 3)')
    parser.add_argument('--threads', type=int, default=None, help='torch and faiss threads (default: all cores)')
    parser.add_argument('--seed', type=int, default=0, help='data seed (default: 0)')
    parser.add_argument('--out', default=None, help='also write the rows as JSON (default: none)')
    args = parser.parse_args()
    if args.threads:
        import faiss
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    print(f'torch {torch.__version__} ({torch.get_num_threads()} threads), cpus {os.cpu_count()}, '
          f'defaults: ivf {ivf_defaults(args.sizes[-1])}, hnsw {hnsw_defaults(args.sizes[-1])}', flush=True)
    rows = []
    for size in args.sizes:
        rows += run_size(size, args)
        gc.collect()
    print()
    print(f'{args.queries} queries, k={args.k}, {args.dim}-d float32, cosine, {args.per_id} tracklets per identity, '
          f'noise {args.noise}, identity centres '
          f'{f"in a {args.latent_dim}-d subspace" if args.latent_dim else "isotropic"}')
    print()
    print('| gallery | method | build (s) | search (s) | search CPU (s) | speed-up vs exact (CPU) | recall@10 '
          '| index RSS (GiB) | search peak RSS (GiB) |')
    print('|---:|---|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f'| {r["size"]:,d} | {r["method"]} | {r["build_s"]:.1f} | {r["search_s"]:.3f} | {r["search_cpu_s"]:.3f} '
              f'| {r["speedup"]:.1f}x | {r["recall@10"]:.4f} | {r["index_gib"]:.2f} | {r["search_peak_gib"]:.3f} |')
    if args.out:
        from reidzoo._atomic import atomic_write_text
        atomic_write_text(args.out, json.dumps(rows, indent=1))


if __name__ == '__main__':
    main()
