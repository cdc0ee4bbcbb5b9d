"""``reidzoo match``: find the same people across cameras, from videos and any tracker's MOT output.

    reidzoo match --model MODEL --videos cam1.mp4 cam2.mp4 --tracks cam1.txt cam2.txt --out out/match
    reidzoo match --model MODEL --frames cam1/ cam2/ --tracks cam1.txt cam2.txt --out out/match
    reidzoo match --model histogram ...        # baselines: colour histogram, or 'none' (no association)

Writes ``OUT/<video name>.txt`` (the tracks with the id column replaced by the global identity), ``identities.json``,
``contact_sheet.png`` and ``index.html``. The folder appears only when everything is written. With ``--gt`` (one MOT
ground-truth file per camera, id = true global identity) it also prints the multi-camera IDF1 / IDP / IDR.
"""
from __future__ import annotations

import argparse
import json

from ..match.tracklets import TrackletFilter

_DEFAULTS = TrackletFilter()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', required=True,
                        help="arch.tag, hf-hub:org/repo@rev, local-dir:/path, or a baseline: 'histogram' (colour "
                             "histograms) or 'none' (every track its own identity)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--videos', nargs='+', metavar='VIDEO', help='one video per camera (any file FFmpeg reads)')
    src.add_argument('--frames', nargs='+', metavar='DIR', help='one folder of frames per camera, instead of videos')
    parser.add_argument('--tracks', nargs='+', required=True, metavar='TXT',
                        help='one MOT tracks file per camera (frame,id,x,y,w,h,...; 1-based frames), same order')
    parser.add_argument('--out', required=True, help='output folder (must not exist or be empty, see --overwrite)')
    parser.add_argument('--threshold', type=float, default=None,
                        help="association distance threshold in the model's metric (default: calibrated on SynthVID "
                             "identities with known labels, see docs/match.md)")
    parser.add_argument('--min-length', type=int, default=_DEFAULTS.min_length,
                        help=f'fewest usable boxes a track needs (default: {_DEFAULTS.min_length})')
    parser.add_argument('--min-height', type=int, default=_DEFAULTS.min_height,
                        help=f'smallest usable box height in pixels (default: {_DEFAULTS.min_height})')
    parser.add_argument('--max-cut', type=float, default=_DEFAULTS.max_cut,
                        help='largest fraction of a box outside the frame for it to be used '
                             f'(default: {_DEFAULTS.max_cut})')
    parser.add_argument('--max-frames', type=int, default=_DEFAULTS.max_frames,
                        help=f'most boxes embedded per tracklet, evenly spaced (default: {_DEFAULTS.max_frames})')
    parser.add_argument('--max-overlap', type=float, default=_DEFAULTS.max_overlap,
                        help='boxes more covered than this by another box of the frame are left out of the appearance '
                             f'when enough others remain (default: {_DEFAULTS.max_overlap})')
    parser.add_argument('--save-crops', action='store_true', help='keep the crops in OUT/crops/ (default: off)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing OUT (default: off)')
    parser.add_argument('--gt', nargs='+', default=None, metavar='TXT',
                        help='ground-truth MOT files, one per camera: also print IDF1/IDP/IDR (default: none)')
    parser.add_argument('--batch-size', type=int, default=32, help='clips per forward pass (default: 32)')
    parser.add_argument('--device', default=None, help="torch device (default: cpu, or the model's)")
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars (default: shown)')


def run(args: argparse.Namespace) -> int:
    from ..match import match, score_mtmc_files
    if args.gt is not None and len(args.gt) != len(args.tracks):
        raise ValueError(f'Got {len(args.gt)} --gt files for {len(args.tracks)} cameras; give one per camera.')
    filters = TrackletFilter(args.min_length, args.min_height, args.max_cut, args.max_frames, args.max_overlap)
    kwargs = {} if args.model in ('histogram', 'none') else {'batch_size': args.batch_size, 'device': args.device}
    r = match(args.model, args.tracks, args.out, videos=args.videos, frames=args.frames, threshold=args.threshold,
              filters=filters, save_crops=args.save_crops, overwrite=args.overwrite, progress=not args.no_progress,
              **kwargs)
    cams = len(args.tracks)
    threshold = 'none' if r.threshold is None else f'{r.threshold:.4g}'
    print(f'{r.num_tracklets} tracklets from {cams} cameras -> {len(r.identities)} identities ({r.method}, threshold '
          f'{threshold}); {r.seconds["total"]:.1f} s. Open {r.out_dir / "index.html"}')
    if args.gt:
        names = [line['name'] for line in json.loads((r.out_dir / 'identities.json').read_text())['cameras']]
        scores = score_mtmc_files(args.gt, [r.out_dir / f'{n}.txt' for n in names])
        print(f"IDF1 {scores['IDF1']:.3f}  IDP {scores['IDP']:.3f}  IDR {scores['IDR']:.3f}")
    return 0
