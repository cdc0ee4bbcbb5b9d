"""``reidzoo convert``: the authors' released checkpoints, converted to reidzoo's safetensors layout.

    reidzoo convert --list
    reidzoo convert --from sinet-official sinet_mars.pth.tar out/sinet_mars --dataset mars
"""
from __future__ import annotations

import argparse

from ..convert import FAMILIES, NOT_RELEASED, RELEASED_CHECKPOINTS, convert_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--list', action='store_true',
                        help="list the checkpoints the authors released, and exit (default: off)")
    parser.add_argument('--from', dest='source', choices=[f'{f}-official' for f in FAMILIES],
                        help="whose checkpoint layout IN has (required unless --list; default: none)")
    parser.add_argument('input', nargs='?', metavar='IN', help="the authors' checkpoint (.pth / .pth.tar)")
    parser.add_argument('output', nargs='?', metavar='OUT', help='folder to write (model.safetensors, config.json)')
    parser.add_argument('--arch', default=None, help='reidzoo architecture (default: inferred from the checkpoint)')
    parser.add_argument('--dataset', default=None,
                        help="training dataset of the checkpoint, e.g. 'mars' (default: none)")
    parser.add_argument('--trust-pickle', action='store_true',
                        help='load IN with an unrestricted unpickler (can run code: only for files you trust; '
                             'default: off, tensors, containers and numpy scalars only)')


def _print_releases() -> None:
    print(f'{"arch":<16} {"dataset":<7} {"paper mAP/R1":<13} {"README mAP/R1":<14} url')
    for r in RELEASED_CHECKPOINTS:
        paper, readme = '/'.join(map(str, r['paper'])), '/'.join(map(str, r['readme']))
        print(f'{r["arch"]:<16} {r["dataset"]:<7} {paper:<13} {readme:<14} {r["url"]}')
    print('\nConvert a downloaded file with: reidzoo convert --from sinet-official FILE OUT_DIR')
    for note in NOT_RELEASED.values():
        print(f'- {note}')


def run(args: argparse.Namespace) -> int:
    if args.list:
        _print_releases()
        return 0
    if not (args.source and args.input and args.output):
        raise ValueError('usage: reidzoo convert --from {sinet,cosam,stmp}-official IN OUT [--arch NAME], or --list')
    model = convert_checkpoint(args.source.removesuffix('-official'), args.input, args.output, arch=args.arch,
                               dataset=args.dataset, trust_pickle=args.trust_pickle)
    arch = model.pretrained_cfg['architecture']
    print(f'{args.input} -> {args.output} ({arch}, {model.num_classes} classes, '
          f'{sum(p.numel() for p in model.parameters()):,} parameters). '
          f'Load it with reidzoo.create_model("local-dir:{args.output}", pretrained=True).')
    return 0
