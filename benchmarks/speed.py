"""Speed benchmark: every architecture at its paper configuration.

For each model: parameters, GFLOPs per clip (``torch.utils.flop_counter``; one multiply-add = 2 FLOPs), clips/s and
peak memory at batch sizes 1 and 16, for eager, channels_last and ``torch.compile`` execution, on the CPU (and the
GPU when present); plus the data pipeline's frames/s (JPEG decode + test transform) against what the model
consumes. Each model runs in its own subprocess so peak memory (max RSS on the CPU, ``max_memory_allocated`` on
CUDA) belongs to that model alone. Timings are medians over repeats after a warm-up.

    python benchmarks/speed.py                       # everything (long on a 2-core CPU: see --help)
    python benchmarks/speed.py --models 'sinet*' --batch-sizes 1 --modes eager
    python benchmarks/speed.py --smoke               # one tiny architecture, tiny input (used by the tests)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ('eager', 'channels_last', 'compile')


def _time_forward(model, x, repeats: int) -> float:
    import torch
    with torch.no_grad():
        model(x)  # warm-up (and compilation for torch.compile)
        if x.device.type == 'cuda':
            torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            if x.device.type == 'cuda':
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_model(name: str, kwargs: dict, batch_sizes: list[int], modes: list[str], device: str, repeats: int,
                  input_size=None, num_frames=None) -> list[dict]:
    """Measure one architecture in this process (called in a fresh subprocess by :func:`main`)."""
    import torch
    import reidzoo
    from reidzoo.cli import count_gflops
    model = reidzoo.create_model(name, **kwargs).eval().to(device)
    cfg = model.pretrained_cfg
    c, h, w = input_size or cfg['input_size']
    t = num_frames or cfg['num_frames']
    params = sum(p.numel() for p in model.parameters())
    gflops = count_gflops(model, (1, t, c, h, w))
    rows = []
    for mode in modes:
        m = model
        if mode == 'channels_last':
            m = model.to(memory_format=torch.channels_last)
        elif mode == 'compile':
            m = torch.compile(model)
        for bs in batch_sizes:
            if device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            x = torch.randn(bs, t, c, h, w, device=device)
            try:
                sec = _time_forward(m, x, repeats)
            except Exception as e:  # a mode that does not work for a model is a result, not a crash
                rows.append(dict(model=name, mode=mode, batch=bs, error=f'{type(e).__name__}: {e}'[:200]))
                continue
            peak = (torch.cuda.max_memory_allocated() if device == 'cuda'
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            rows.append(dict(model=name, device=device, mode=mode, batch=bs, frames=t, input=f'{h}x{w}',
                             params_m=params / 1e6, gflops_per_clip=gflops, clips_per_s=bs / sec,
                             peak_mem_mb=peak / 2**20))
        if mode == 'channels_last':
            model = model.to(memory_format=torch.contiguous_format)
    return rows


def measure_pipeline(num_frames: int = 256, size=(256, 128)) -> float:
    """Frames/s of JPEG decode + test transform (Pillow), single process."""
    import numpy as np
    from PIL import Image
    from reidzoo.data.io import load_frame
    from reidzoo.data.transforms import build_clip_transform
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    cfg = {'input_size': (3, *size), 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
           'interpolation': 'bicubic'}
    transform = build_clip_transform(cfg, train=False)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(16):  # MARS-like 256x128 crops
            p = Path(d) / f'{i:04d}.jpg'
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(p, quality=90)
            paths.append(str(p))
        t0 = time.perf_counter()
        for i in range(0, num_frames, 16):
            transform([load_frame(p) for p in paths])
        return num_frames / (time.perf_counter() - t0)


def _child(args) -> None:
    spec = json.loads(args.child)
    rows = measure_model(**spec)
    print('RESULT ' + json.dumps(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['*'], help="fnmatch filters over reidzoo.list_models()")
    parser.add_argument('--batch-sizes', default='1,16')
    parser.add_argument('--modes', default=','.join(MODES))
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when present, and cpu)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--model-kwargs', default='{}', help='JSON architecture arguments for every model')
    parser.add_argument('--input-size', default=None, help='override C,H,W (default: each paper configuration)')
    parser.add_argument('--num-frames', type=int, default=None)
    parser.add_argument('--smoke', action='store_true', help='tp_resnet50 on resnet18, 2x64x32, batch 1, eager')
    parser.add_argument('--out', default='output/speed', help='folder for speed.json and speed.md')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    import reidzoo
    import torch
    if args.smoke:
        args.models, args.batch_sizes, args.modes = ['tp_resnet50'], '1', 'eager'
        args.model_kwargs, args.input_size, args.num_frames, args.repeats = '{"backbone": "resnet18"}', '3,64,32', 2, 1
    devices = [args.device] if args.device else (['cuda', 'cpu'] if torch.cuda.is_available() else ['cpu'])
    input_size = tuple(int(v) for v in args.input_size.split(',')) if args.input_size else None
    rows: list[dict] = []
    from tqdm.auto import tqdm
    names = reidzoo.list_models(args.models)
    for device in devices:
        for name in tqdm(names, desc=f'speed ({device})', unit='model'):
            spec = dict(name=name, kwargs=json.loads(args.model_kwargs), device=device, repeats=args.repeats,
                        batch_sizes=[int(b) for b in args.batch_sizes.split(',')], modes=args.modes.split(','),
                        input_size=input_size, num_frames=args.num_frames)
            proc = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)], capture_output=True,
                                  text=True, env=dict(os.environ))
            out = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
            if proc.returncode or not out:
                rows.append(dict(model=name, device=device, error=proc.stderr.strip().splitlines()[-1:] or '?'))
                continue
            rows.extend(json.loads(out[-1][len('RESULT '):]))
    pipeline_fps = measure_pipeline(size=tuple((input_size or (3, 256, 128))[1:]))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'speed.json').write_text(json.dumps({'rows': rows, 'pipeline_frames_per_s': pipeline_fps,
                                                    'torch': torch.__version__, 'threads': torch.get_num_threads()},
                                                   indent=1))
    lines = ['| model | device | mode | batch | input | params (M) | GFLOPs/clip | clips/s | model frames/s | '
             'peak mem (MB) |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['model']} | {r.get('device', '')} | {r.get('mode', '')} | {r.get('batch', '')} | "
                         f"error: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['device']} | {r['mode']} | {r['batch']} | {r['frames']}x{r['input']} | "
                     f"{r['params_m']:.2f} | {r['gflops_per_clip']:.1f} | {r['clips_per_s']:.2f} | "
                     f"{r['clips_per_s'] * r['frames']:.1f} | {r['peak_mem_mb']:.0f} |")
    lines.append('')
    lines.append(f'Data pipeline (Pillow decode + resize + normalise, 1 process): {pipeline_fps:.0f} frames/s. '
                 'A model is input-bound when its "model frames/s" exceeds this times the loader workers.')
    (out_dir / 'speed.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
