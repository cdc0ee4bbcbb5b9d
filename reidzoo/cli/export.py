"""``reidzoo export RUN_DIR --out DIR``: a finished run as a Hub repo folder (weights, config, model card, recipe)."""
from __future__ import annotations

import argparse

from ..train.export import export_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('run_dir', help='run directory written by `reidzoo train`')
    parser.add_argument('--out', required=True, help='folder to write the Hub repo layout into (required)')
    parser.add_argument('--checkpoint', default=None,
                        help='another checkpoint file of the run (default: RUN_DIR/checkpoint.pt)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='unpickle the checkpoint without restrictions, for a checkpoint your own run wrote with '
                             'an older reidzoo (it can run code stored in the file; default: off, tensors and plain '
                             'values only)')


def run(args: argparse.Namespace) -> int:
    print(export_run(args.run_dir, args.out, args.checkpoint, trust_pickle=args.trust_pickle))
    return 0
