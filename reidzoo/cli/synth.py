"""``reidzoo synth``: generate SynthVID, a procedural video re-ID benchmark, in a real dataset's on-disk layout.

    reidzoo synth --layout mars --out /tmp/synth-mars --num-ids 100 --seed 0
"""
from __future__ import annotations

import argparse
import json
import os

from ..data.synthvid import LAYOUTS, MARKER, build_synthvid, colour_histogram_baseline, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--layout', default='mars', choices=[*sorted(LAYOUTS), 'video'],
                        help="on-disk layout to imitate, or 'video': multi-camera videos with ground truth and "
                             "tracker-like MOT tracks for `reidzoo match`; its --frame-size defaults to 240 320 "
                             "(default: mars)")
    parser.add_argument('--out', required=True, help='output folder (must not exist or be empty)')
    parser.add_argument('--num-ids', type=int, default=None, help='labelled identities (default: per layout)')
    parser.add_argument('--seed', type=int, default=0, help='random seed; the data is a function of it (default: 0)')
    parser.add_argument('--frame-size', type=int, nargs=2, default=(64, 32), metavar=('H', 'W'),
                        help='frame height and width in pixels (default: 64 32)')
    parser.add_argument('--lengths', type=float, nargs=3, default=None, metavar=('MIN', 'MAX', 'MEAN'),
                        help='tracklet length in frames (default: per layout)')
    parser.add_argument('--baseline', action='store_true', help='also parse it and score the colour-histogram matcher')
    parser.add_argument('--num-cameras', type=int, default=4, help='--layout video: cameras, 3-6 (default: 4)')
    parser.add_argument('--num-frames', type=int, default=300, help='--layout video: frames per camera (default: 300)')


def run(args: argparse.Namespace) -> int:
    if args.layout == 'video':  # frame size: the default (64 32) is a crop size; videos default to 240 x 320
        from ..data.synthvid_video import generate_video
        size = (240, 320) if tuple(args.frame_size) == (64, 32) else tuple(args.frame_size)
        root = generate_video(args.out, num_cameras=args.num_cameras, num_ids=args.num_ids or 12,
                              num_frames=args.num_frames, frame_size=size, seed=args.seed, progress=True)
        print(f'SynthVID videos written to {root}: <cam>.mp4, gt/<cam>.txt, tracks/<cam>.txt, synthvid_video.json')
        return 0
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
