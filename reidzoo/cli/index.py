"""``reidzoo index build|info``: store gallery embeddings with their metadata on disk for ``reidzoo search``.

    reidzoo index build MODEL TRACKLET_DIR... --out INDEX_DIR          # embed folders of frames, one tracklet each
    reidzoo index build MODEL --dataset synthvid --root DATA --out INDEX_DIR   # a benchmark gallery: pid, camid known
    reidzoo index build --embeddings emb.safetensors --out INDEX_DIR   # embeddings written by `reidzoo extract`
    reidzoo index info INDEX_DIR

Galleries below 50,000 tracklets are searched exactly; larger ones get a faiss HNSW index (``--kind`` to choose).
"""
from __future__ import annotations

import argparse
import json

from ..search import KINDS, GalleryIndex
from ..search.gallery import build_gallery_index, read_embeddings_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='action', metavar='ACTION', required=True)
    b = sub.add_parser('build', help='embed tracklets (or read embeddings) and write an index folder',
                       description=__doc__.split('\n\n')[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument('inputs', nargs='*', metavar='MODEL|DIR',
                   help='MODEL (arch.tag, hf-hub:org/repo@rev or local-dir:/path), then folders of frames, one '
                        'tracklet each; nothing with --embeddings')
    b.add_argument('--out', required=True, help='the index folder to write (replaced atomically if it is an index)')
    b.add_argument('--embeddings', default=None,
                   help='a .safetensors or .npy file from `reidzoo extract` instead of MODEL and folders '
                        '(default: none)')
    b.add_argument('--dataset', default=None, help='index a benchmark subset instead of folders, e.g. synthvid '
                                                   '(default: none)')
    b.add_argument('--root', default=None, help='the dataset folder for --dataset (default: none)')
    b.add_argument('--subset', default='gallery', choices=('gallery', 'query', 'train'),
                   help='which --dataset subset to index (default: gallery)')
    b.add_argument('--kind', default='auto', choices=KINDS,
                   help='exact, faiss ivf / hnsw, or auto: exact below 50,000 rows, else hnsw (default: auto)')
    b.add_argument('--metric', default=None, choices=('cosine', 'euclidean', 'sqeuclidean'),
                   help="distance (default: the model's, as recorded in its cfg or the embeddings file; else cosine)")
    b.add_argument('--nlist', type=int, default=None, help='IVF cells (default: ~sqrt(rows), a power of two)')
    b.add_argument('--nprobe', type=int, default=None, help='IVF cells probed per query (default: nlist/16, >= 8)')
    b.add_argument('--hnsw-m', type=int, default=None, help='HNSW neighbours per node (default: 32)')
    b.add_argument('--ef-search', type=int, default=None,
                   help='HNSW search beam width (default: 32 up to 150k rows, 64 up to 500k, then 128)')
    b.add_argument('--no-pretrained', action='store_true',
                   help='random weights, for testing the pipeline only: such an index cannot be queried by tracklet '
                        '(default: load the named weights)')
    b.add_argument('--model-kwargs', default='{}', help='JSON dict of architecture arguments (default: {})')
    b.add_argument('--batch-size', type=int, default=32, help='clips per forward pass (default: 32)')
    b.add_argument('--device', default=None, help='torch device (default: the model\'s, cpu)')
    b.add_argument('--test-sampling', default=None, help="override the model's test sampling (default: its cfg)")
    b.add_argument('--workers', type=int, default=0, help='data-loading worker processes (default: 0)')
    i = sub.add_parser('info', help='print what an index holds')
    i.add_argument('index_dir', help='an index folder written by `reidzoo index build`')
    i.add_argument('--no-verify', action='store_true', help='skip the sha256 check of the files (default: verify)')
    i.add_argument('--recall', action='store_true',
                   help='also measure a faiss index\'s recall@10 against exact search (default: off)')


def _index_kwargs(args: argparse.Namespace) -> dict:
    return {k: v for k, v in {'nlist': args.nlist, 'nprobe': args.nprobe, 'hnsw_m': args.hnsw_m,
                              'ef_search': args.ef_search}.items() if v is not None}


def _build(args: argparse.Namespace) -> int:
    if args.embeddings:
        if args.inputs or args.dataset:
            raise ValueError('--embeddings replaces MODEL and TRACKLET_DIRs / --dataset: give one or the other')
        emb, meta, provenance = read_embeddings_file(args.embeddings)
        metric = args.metric or provenance.get('distance') or 'cosine'
        index = GalleryIndex.build(emb, meta, metric=metric, kind=args.kind, model=provenance, **_index_kwargs(args))
    else:
        if not args.inputs:
            raise ValueError('give MODEL and TRACKLET_DIRs (or MODEL --dataset NAME --root DIR, or --embeddings FILE)')
        name, dirs = args.inputs[0], args.inputs[1:]
        if args.dataset:
            if dirs or not args.root:
                raise ValueError('--dataset takes MODEL only (no folders) and needs --root')
            from ..data import build_dataset
            tracklets = getattr(build_dataset(args.dataset, args.root), args.subset)
        elif not dirs:
            raise ValueError(f'no tracklet folders given after MODEL {name!r}')
        else:
            tracklets = dirs
        from ..models import create_model
        kwargs = json.loads(args.model_kwargs)
        model = create_model(name, pretrained=not args.no_pretrained, **kwargs)
        index = build_gallery_index(model, tracklets, kind=args.kind, metric=args.metric, name=name,
                                    pretrained=not args.no_pretrained, model_kwargs=kwargs,
                                    index_kwargs=_index_kwargs(args), batch_size=args.batch_size, device=args.device,
                                    test_sampling=args.test_sampling, num_workers=args.workers)
    out = index.save(args.out)
    print(f'wrote {index} to {out}')
    if index.kind != 'exact':
        print(f'recall@10 against exact search, on 200 gallery rows as queries: {index.estimate_recall():.3f} '
              f'(below 0.95: search with a larger --nprobe / --ef-search, or build with --kind hnsw)')
    return 0


def _info(args: argparse.Namespace) -> int:
    index = GalleryIndex.load(args.index_dir, verify=not args.no_verify)
    print(index)
    model = index.model or {}
    print(f'model: {model.get("name") or "unknown"} (architecture {model.get("architecture") or "?"}, '
          f'test sampling {model.get("test_sampling") or "?"})')
    cams = sorted({m.get('camid', -1) for m in index.metadata} - {-1})
    pids = {m.get('pid', -1) for m in index.metadata} - {-1}
    print(f'cameras: {cams or "unknown"}; identities: {len(pids) or "unknown"}')
    if args.recall and index.kind != 'exact':
        print(f'recall@10 against exact search, on 200 gallery rows as queries: {index.estimate_recall():.3f}')
    return 0


def run(args: argparse.Namespace) -> int:
    return _build(args) if args.action == 'build' else _info(args)
