"""Throughput of ``reidzoo match`` on the main job's SynthVID recording (issue 12, item 7).

1. decode + crop + resize (+ the crops' PNG writes) against plain PyAV decoding of the same videos to RGB arrays, in
   the same run (best of 3 alternating runs each; goal: >= 0.8x, cropping must cost little beside decoding);
2. end-to-end frames per second of ``match`` (decode, crop, embed, associate, write) for a model and the colour
   histogram, with a fixed threshold so that the one-off calibration is not counted.

    python benchmarks/match_speed.py                                  # random-weight tp_resnet50 (test_resnet trunk)
    python benchmarks/match_speed.py --model tp_resnet50.synthvid     # published or mirrored weights
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--video-dir', default=str(REPO_ROOT / 'output' / 'main_job' / 'match' / 'video'),
                        help='SynthVID recording (generated there if missing; default: the main job\'s)')
    parser.add_argument('--model', default=None,
                        help='model name for the end-to-end run (default: tp_resnet50 with the test_resnet trunk, '
                             'random weights, 32x16 input)')
    parser.add_argument('--crop-size', type=int, nargs=2, default=(256, 128), metavar=('H', 'W'),
                        help='crop resize target of the decode benchmark (default: 256 128)')
    parser.add_argument('--json', default=None, help='also write the numbers to this file (default: none)')
    args = parser.parse_args(argv)

    import torch
    import reidzoo
    from reidzoo.match import match
    from reidzoo.match.benchmark import decode_throughput, ensure_recording
    torch.set_num_threads(torch.get_num_threads())
    meta = ensure_recording(args.video_dir)
    cams = meta['cameras']
    d = decode_throughput(meta, tuple(args.crop_size))
    print(f"decode benchmark ({d['frames']} frames, {d['crops']} boxes, {len(cams)} videos): plain PyAV decode "
          f"{d['plain_fps']:.0f} frames/s; decode + crop + resize of every box to {args.crop_size[0]}x"
          f"{args.crop_size[1]} {d['crop_fps']:.0f} frames/s = {d['ratio']:.2f}x (goal >= 0.8x); shrinking only larger "
          f"boxes (as match does) "
          f"{d['shrink_only_fps']:.0f} frames/s = {d['shrink_only_ratio']:.2f}x; match's crop stage "
          f"(filters, <= 32 crops per track written to disk) {d['stage_fps']:.0f} frames/s = {d['stage_ratio']:.2f}x")

    if args.model:
        model = reidzoo.create_model(args.model, pretrained=True)
        name = args.model
    else:
        model = reidzoo.create_model('tp_resnet50', backbone='test_resnet', img_size=(32, 16))
        name = 'tp_resnet50 (test_resnet, random weights)'
    results = {'decode': d, 'end_to_end': {}}
    for label, method, threshold in [(name, model, 1e9 if not args.model else None), ('colour histogram',
                                                                                        'histogram', 0.6)]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = match(method, [c['tracks'] for c in cams], Path(tmp) / 'out', videos=[c['video'] for c in cams],
                      threshold=threshold, progress=False)
            seconds = time.perf_counter() - t0
        fps = d['frames'] / seconds
        results['end_to_end'][label] = {'seconds': seconds, 'fps': fps, 'tracklets': r.num_tracklets,
                                        'stages': r.seconds}
        print(f'end to end, {label}: {seconds:.1f} s for {d["frames"]} frames = {fps:.0f} frames/s '
              f'({r.num_tracklets} tracklets; decode+crop {r.seconds["decode"]:.1f} s, embed+associate '
              f'{r.seconds["embed+associate"]:.1f} s)')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
