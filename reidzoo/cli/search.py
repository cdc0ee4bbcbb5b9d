"""``reidzoo search INDEX_DIR --query TRACKLET_DIR...``: the top-k gallery tracklets for each query, with thumbnails.

    reidzoo search gallery_index --query cam2/track17 -k 10 --out results.json --thumbnails results.png

Queries are embedded by the model that built the index (recorded in ``index.json``; ``--model`` if it was built from
an embeddings file), with the same test sampling.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .._atomic import atomic_write_text
from ..search import GalleryIndex
from ..search.gallery import embed_tracklets, query_model_spec, read_embeddings_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('index_dir', help='an index folder written by `reidzoo index build`')
    parser.add_argument('--query', nargs='+', default=None, metavar='TRACKLET_DIR',
                        help='query tracklets, one folder of frames each (default: none; or --query-embeddings)')
    parser.add_argument('--query-embeddings', default=None,
                        help='query embeddings from `reidzoo extract` instead of --query folders (default: none)')
    parser.add_argument('--model', default=None,
                        help='the model that built the index (default: the one recorded in the index)')
    parser.add_argument('--model-kwargs', default=None,
                        help='JSON dict of architecture arguments (default: those recorded in the index)')
    parser.add_argument('-k', '--k', type=int, default=10, help='results per query (default: 10)')
    parser.add_argument('--out', default=None, help='write the results as JSON (default: print only)')
    parser.add_argument('--thumbnails', default=None,
                        help='write a PNG: per query, its middle frame and the top-k middle frames (default: none)')
    parser.add_argument('--nprobe', type=int, default=None, help='IVF cells to probe (default: the index\'s)')
    parser.add_argument('--ef-search', type=int, default=None, help='HNSW beam width (default: the index\'s)')
    parser.add_argument('--exact', action='store_true', help='search every row exactly, ignoring faiss '
                                                              '(default: use the index\'s kind)')
    parser.add_argument('--no-verify', action='store_true', help='skip the sha256 check of the index files '
                                                                  '(default: verify)')
    parser.add_argument('--batch-size', type=int, default=32, help='clips per forward pass (default: 32)')
    parser.add_argument('--device', default=None, help='torch device (default: cpu)')


def _query_embeddings(args: argparse.Namespace, index: GalleryIndex):
    if bool(args.query) == bool(args.query_embeddings):
        raise ValueError('give the queries as --query TRACKLET_DIR... or as --query-embeddings FILE (one of them)')
    if args.query_embeddings:
        emb, meta, _ = read_embeddings_file(args.query_embeddings)
        return emb, meta
    spec = query_model_spec(index, args.model, model_kwargs=None if args.model_kwargs is None
                            else json.loads(args.model_kwargs))
    if not spec['pretrained']:
        raise ValueError(f'{args.index_dir} was built with random weights (--no-pretrained), which cannot be '
                         f'recreated to embed queries: rebuild it from a saved model (local-dir:/path) or published '
                         f'weights, or pass --query-embeddings')
    from ..models import create_model
    model = create_model(spec['name'], pretrained=True, **spec['model_kwargs'])
    return embed_tracklets(model, args.query, test_sampling=spec['test_sampling'], batch_size=args.batch_size,
                           device=args.device)


def run(args: argparse.Namespace) -> int:
    index = GalleryIndex.load(args.index_dir, verify=not args.no_verify)
    q_emb, q_meta = _query_embeddings(args, index)
    distances, indices, rows = index.search(q_emb, args.k, nprobe=args.nprobe, ef_search=args.ef_search,
                                            exact=args.exact)
    report = {'index': str(Path(args.index_dir).resolve()), 'metric': index.metric, 'kind': index.kind, 'k': args.k,
              'model': index.model.get('name', ''), 'queries': []}
    for qm, dist, idx, meta in zip(q_meta, distances.tolist(), indices.tolist(), rows):
        results = [{'rank': r, 'row': i, 'distance': d, **m} for r, (d, i, m) in enumerate(zip(dist, idx, meta), 1)
                   if m is not None]
        report['queries'].append({'query': qm.get('name'), 'thumbnail': qm.get('thumbnail'), 'results': results})
        print(f'query {qm.get("name")}:')
        for r in results:
            print(f'  {r["rank"]:>3d}  {r["distance"]:.4f}  {r.get("name")}  cam {r.get("camid", -1)}  '
                  f'pid {r.get("pid", -1)}')
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1))
        print(f'wrote {args.out}')
    if args.thumbnails:
        from ..search.thumbnails import render_result_strips
        render_result_strips(q_meta, rows, distances.tolist(), args.thumbnails)
        print(f'wrote {os.fspath(args.thumbnails)}')
    return 0
