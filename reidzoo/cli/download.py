"""``reidzoo download NAME``: download published weights into the Hub cache and verify their sha256."""
from __future__ import annotations

import argparse

from ..hub import download_weights
from ..models import get_pretrained_cfg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('name', help='arch.tag with published weights (see `reidzoo list --pretrained`)')


def run(args: argparse.Namespace) -> int:
    cfg = get_pretrained_cfg(args.name)
    if not cfg.get('hf_hub_id'):
        raise ValueError(f'No published weights for {args.name}; `reidzoo list --pretrained` shows what exists.')
    print(download_weights(cfg))
    return 0
