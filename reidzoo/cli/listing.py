"""``reidzoo list``: architectures (fnmatch filter, like ``timm.list_models``) or published weights (``--pretrained``)."""
# (named listing.py, not list.py: a submodule named `list` would shadow the builtin inside reidzoo.cli)
from __future__ import annotations

import argparse
import sys

from ..models import list_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('pattern', nargs='?', default='', help="fnmatch filter, e.g. 'cosam_*' (default: all)")
    parser.add_argument('--pretrained', action='store_true',
                        help='list published weights (arch.tag) instead (default: architectures)')


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, pretrained=args.pretrained)
    for name in names:
        print(name)
    if not names:
        what = 'published weights' if args.pretrained else 'architectures'
        hint = ('Weights are listed by weights_manifest.json and the manifests named in REIDZOO_MANIFESTS; publish '
                'yours with `reidzoo export RUN --out DIR` and `reidzoo push DIR --repo-id ORG/NAME`, then add the '
                'printed entry to a manifest.' if args.pretrained else '`reidzoo list` shows every architecture.')
        print(f'No {what} match {args.pattern or "*"!r}. {hint}', file=sys.stderr)
    return 0
