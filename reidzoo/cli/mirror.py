"""``reidzoo mirror ROOT [--publish DIR ORG/NAME ...]``: serve local folders as Hugging Face Hub repos on loopback.

Runs a real Hub mirror (olah) over git repos under ROOT, publishes each ``--publish`` folder as a repo, prints its
manifest entry and ``HF_ENDPOINT=...``, then serves until interrupted (Ctrl-C or SIGTERM). Point ``HF_ENDPOINT`` at
it to load the published weights with ``create_model('hf-hub:ORG/NAME@<commit>', pretrained=True)``.
"""
from __future__ import annotations

import argparse

from ..hub_mirror import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('root', help='working folder for the git repos, olah config, cache and log')
    parser.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (default: 0, a free one)')
    parser.add_argument('--publish', nargs=2, action='append', default=[], metavar=('DIR', 'ORG/NAME'),
                        help='publish a folder (a save_pretrained folder prints its manifest entry); repeatable '
                             '(default: none)')


def run(args: argparse.Namespace) -> int:
    serve(args.root, port=args.port, publish=[tuple(p) for p in args.publish])
    return 0
