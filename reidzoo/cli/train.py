"""``reidzoo train``: train a model from a recipe (also ``python -m reidzoo.train`` and ``torchrun ... -m reidzoo.train``).

    reidzoo train --list
    reidzoo train --recipe tp_synthvid --output runs/tp
    reidzoo train --recipe sinet_resnet50_mars --set data.root=/data/MARS --output runs/sinet
    reidzoo train --resume --output runs/tp
"""
from __future__ import annotations

import argparse
import json
import os

import torch.distributed as dist

from ..train.recipes import list_recipes, load_recipe
from ..train.trainer import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--recipe', default=None,
                        help='shipped recipe name (see --list) or path to a YAML recipe; with --resume the run '
                             "directory's recipe.yaml is used (default: none)")
    parser.add_argument('--set', dest='overrides', action='append', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override recipe keys, e.g. --set optim.lr=1e-4 data.root=/data/mars; with --resume '
                             'only the keys that change nothing computed, plus optim.lr and train.grad_clip '
                             '(recorded in log.jsonl) (default: none)')
    parser.add_argument('--output', default=None,
                        help='run directory (recipe.yaml, checkpoint.pt, log.jsonl, metrics.json); required unless '
                             '--list/--show (default: none)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in --output from its checkpoint (default: off, start a new run)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='with --resume: unpickle the checkpoint without restrictions, for a checkpoint your own '
                             'run wrote with an older reidzoo (it can run code stored in the file; default: off, '
                             'tensors and plain values only)')
    parser.add_argument('--list', action='store_true', help='list the shipped recipes and exit (default: off)')
    parser.add_argument('--show', action='store_true', help='print the resolved recipe and exit (default: off)')


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_recipes():
            print(name)
        return 0
    overrides = [o for group in args.overrides for o in group]
    if args.show:
        print(load_recipe(args.recipe, overrides).dump(), end='')
        return 0
    if not args.output:
        raise ValueError('--output RUN_DIR is required (the run directory to write or, with --resume, to continue).')
    try:
        result = train(args.recipe, overrides, output_dir=args.output, resume=args.resume,
                       trust_pickle=args.trust_pickle)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if result.metrics and os.environ.get('RANK', '0') == '0':
        print(json.dumps(dict(result.metrics), indent=2))
    return 0
