"""``reidzoo synth``: generate SynthVID, a procedural video re-ID benchmark, in a real dataset's on-disk layout.

    reidzoo synth --layout mars --out /tmp/synth-mars --num-ids 100 --seed 0
"""
from __future__ import annotations

import argparse
import json
import os

from ..data.synthvid import LAYOUTS, MARKER, build_synthvid, colour_histogram_baseline, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--layout', default='mars', choices=sorted(LAYOUTS), help='on-disk layout to imitate '
                        '(default: mars)')
    parser.add_argument('--out', required=True, help='output folder (must not exist or be empty)')
    parser.add_argument('--num-ids', type=int, default=None, help='labelled identities (default: per layout)')
    parser.add_argument('--seed', type=int, default=0, help='random seed; the data is a function of it (default: 0)')
    parser.add_argument('--frame-size', type=int, nargs=2, default=(64, 32), metavar=('H', 'W'),
                        help='frame height and width in pixels (default: 64 32)')
    parser.add_argument('--lengths', type=float, nargs=3, default=None, metavar=('MIN', 'MAX', 'MEAN'),
                        help='tracklet length in frames (default: per layout)')
    parser.add_argument('--baseline', action='store_true', help='also parse it and score the colour-histogram matcher')


def run(args: argparse.Namespace) -> int:
    root = generate(args.out, layout=args.layout, num_ids=args.num_ids, seed=args.seed, frame_size=args.frame_size,
                    lengths=args.lengths)
    with open(os.path.join(root, MARKER)) as f:
        meta = json.load(f)
    print(f'SynthVID ({args.layout} layout) written to {root} in {meta["seconds"]} s: {meta["counts"]}')
    if args.baseline:
        dataset = build_synthvid(root, layout=args.layout, num_ids=args.num_ids, seed=args.seed,
                                 frame_size=args.frame_size, lengths=args.lengths)
        print(dataset.summary())
        r = colour_histogram_baseline(dataset)
        print(f"colour-histogram baseline: rank-1 {r['rank1']:.3f}, mAP {r['mAP']:.3f} "
              f"({r['num_valid_queries']} queries)")
    return 0
