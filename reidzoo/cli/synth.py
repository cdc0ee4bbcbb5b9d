"""``reidzoo synth``: generate SynthVID, a procedural video re-ID benchmark, in a real dataset's on-disk layout.

    reidzoo synth --layout mars --out /tmp/synth-mars --num-ids 100 --seed 0
    reidzoo benchmark --models MODEL --dataset synthvid --root /tmp/synth-mars   # parameters read from the folder
"""
from __future__ import annotations

import argparse
from typing import Any, Optional

from ..data.synthvid import LAYOUTS, SynthVID, colour_histogram_features, generate, read_record
from ..eval.metrics import RankResult
from ..eval.pipeline import evaluate_features

__all__ = ['add_arguments', 'run', 'colour_histogram_baseline']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--layout', default='mars', choices=[*sorted(LAYOUTS), 'video'],
                        help="on-disk layout to imitate, or 'video': multi-camera videos with ground truth and "
                             "tracker-like MOT tracks for `reidzoo match`, whose --frame-size defaults to 240 320 "
                             "(default: mars)")
    parser.add_argument('--out', required=True, help='output folder; must be new or empty (no default)')
    parser.add_argument('--num-ids', type=int, default=None,
                        help='labelled identities (default: per layout, 100; iLIDS-VID exactly 300)')
    parser.add_argument('--seed', type=int, default=0, help='random seed; the data is a function of it (default: 0)')
    parser.add_argument('--frame-size', type=int, nargs=2, default=(64, 32), metavar=('H', 'W'),
                        help='frame height and width in pixels (default: 64 32)')
    parser.add_argument('--lengths', type=float, nargs=3, default=None, metavar=('MIN', 'MAX', 'MEAN'),
                        help='tracklet length in frames (default: per layout, e.g. 2 120 16 for mars)')
    parser.add_argument('--baseline', action='store_true',
                        help='also parse it and score the colour-histogram matcher (default: off)')
    parser.add_argument('--num-cameras', type=int, default=4, help='--layout video: cameras, 3-6 (default: 4)')
    parser.add_argument('--num-frames', type=int, default=480, help='--layout video: frames per camera (default: 480)')


def colour_histogram_baseline(dataset: Any, protocol: Optional[str] = None, bins: int = 8,
                              max_frames: int = 8) -> RankResult:
    """Score the colour-histogram matcher (no learning) on a dataset's query and gallery.

    Each tracklet is its mean per-frame RGB histogram (:func:`reidzoo.data.synthvid.colour_histogram_features`),
    compared with the Hellinger distance (the Euclidean distance of the square-rooted histograms ranks the same), and
    scored by the same pipeline as every model (:func:`reidzoo.eval.evaluate_features`).

    Args:
        dataset: a parsed dataset (``.query``, ``.gallery``, ``.default_protocol``).
        protocol: protocol name; default: the dataset's own (``synthvid_standard`` for SynthVID).
        bins, max_frames: see :func:`~reidzoo.data.synthvid.colour_histogram_features`.

    Returns:
        The :class:`~reidzoo.eval.RankResult` (``.as_dict()`` gives rank1/5/10/20, mAP, mINP).
    """
    return evaluate_features(lambda tracklets: colour_histogram_features(tracklets, bins=bins, max_frames=max_frames),
                             dataset, protocol, distance='euclidean')


def run(args: argparse.Namespace) -> int:
    if args.layout == 'video':  # the --frame-size default (64 32) is a crop size; videos default to 240 x 320
        from ..data.synthvid_video import generate_video
        size = (240, 320) if tuple(args.frame_size) == (64, 32) else tuple(args.frame_size)
        root = generate_video(args.out, num_cameras=args.num_cameras, num_ids=args.num_ids or 12,
                              num_frames=args.num_frames, frame_size=size, seed=args.seed, progress=True)
        print(f'SynthVID videos written to {root}: <cam>.mp4, gt/<cam>.txt, tracks/<cam>.txt, synthvid_video.json')
        return 0
    root = generate(args.out, layout=args.layout, num_ids=args.num_ids, seed=args.seed, frame_size=args.frame_size,
                    lengths=args.lengths)
    record = read_record(root)
    print(f'{record.describe()} written to {root} in {record.seconds} s: {record.counts}')
    if args.baseline:
        dataset = SynthVID(root)
        print(dataset.summary())
        r = colour_histogram_baseline(dataset).as_dict()
        print(f"colour-histogram baseline ({dataset.default_protocol}): rank-1 {r['rank1']:.3f}, "
              f"rank-5 {r['rank5']:.3f}, mAP {r['mAP']:.3f}")
    return 0
