"""``reidzoo export RUN_DIR --out DIR``: a finished run as a Hub repo folder (weights, config, model card, recipe)."""
from __future__ import annotations

import argparse

from ..train.export import export_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('run_dir', help='run directory written by `reidzoo train`')
    parser.add_argument('--out', required=True, help='folder to write the Hub repo layout into')
    parser.add_argument('--checkpoint', default=None, help='checkpoint file (default: RUN_DIR/checkpoint.pt)')


def run(args: argparse.Namespace) -> int:
    print(export_run(args.run_dir, args.out, args.checkpoint))
    return 0
