"""``reidzoo benchmark``: score models on benchmarks with each dataset's standard protocol, beside the papers' numbers.

    reidzoo benchmark --models sinet_resnet50.mars --dataset mars --root /data/MARS
    torchrun --nproc_per_node 4 -m reidzoo benchmark --models MODEL --dataset lsvid --root /data/LS-VID   # sharded
"""
from __future__ import annotations

import argparse
import json

from ..eval.distributed import init_distributed
from ..eval.leaderboard import format_markdown, run_leaderboard
from ..spec.datasets import DATASET_NAMES


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {value}')
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be 0 or more, got {value}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--models', nargs='+', required=True,
                        help='models to score: arch.tag, hf-hub:org/repo@rev, local-dir:PATH (required)')
    parser.add_argument('--dataset', nargs='+', required=True, choices=DATASET_NAMES, metavar='DATASET',
                        help=f'datasets to score on: {" ".join(DATASET_NAMES)} (required)')
    parser.add_argument('--root', nargs='+', default=[None],
                        help='dataset roots, one per --dataset or one for all; a SynthVID folder is read with its '
                             'own generation record (default: none, SynthVID then uses its cache folder)')
    parser.add_argument('--dataset-kwargs', default='{}',
                        help='JSON build_dataset kwargs, e.g. {"split_id": 0} (default: {})')
    parser.add_argument('--protocol', nargs='+', default=None, help="protocol names, e.g. mars_official (default: each dataset's own)")
    parser.add_argument('--rerank', action='store_true', help='also report k-reciprocal re-ranking rows (default: off)')
    parser.add_argument('--model-kwargs', default='{}', help='JSON architecture arguments (default: {})')
    parser.add_argument('--batch-size', type=positive_int, default=32, help='clips per forward pass (default: 32)')
    parser.add_argument('--workers', type=non_negative_int, default=2,
                        help='data-loading worker processes (default: 2)')
    parser.add_argument('--device', default=None, help='torch device (default: cuda if available, else cpu)')
    parser.add_argument('--output', default='output/leaderboard',
                        help='folder for leaderboard.json/.md and plots (default: output/leaderboard)')
    parser.add_argument('--cache-dir', default=None,
                        help='feature cache folder, safe to share between runs (default: OUTPUT/features)')
    parser.add_argument('--no-plots', action='store_true', help='write no PNG plots (default: write them)')


def run(args: argparse.Namespace) -> int:
    roots = args.root * len(args.dataset) if len(args.root) == 1 else args.root
    if len(roots) != len(args.dataset):
        raise ValueError(f'--root takes one path or one per --dataset ({len(args.dataset)}), got {len(roots)}.')
    ds_kwargs = json.loads(args.dataset_kwargs)
    rows = run_leaderboard(args.models, [(d, r, ds_kwargs) for d, r in zip(args.dataset, roots)],
                           protocols=args.protocol, output_dir=args.output, cache_dir=args.cache_dir,
                           rerank=args.rerank, batch_size=args.batch_size, device=args.device,
                           model_kwargs=json.loads(args.model_kwargs), num_workers=args.workers,
                           plots=not args.no_plots)
    if init_distributed(args.device).rank == 0:
        print(format_markdown(rows))
        pictures = '' if args.no_plots else ', cmc_*.png, ranked_results.png'
        print(f'written to {args.output}/ (leaderboard.json, leaderboard.md{pictures})')
    return 0
