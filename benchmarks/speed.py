"""Speed benchmark: every architecture at its paper configuration.

For each model: parameters, GFLOPs per clip (``torch.utils.flop_counter``; one multiply-add = 2 FLOPs), clips/s and
peak memory at batch sizes 1 and 16, for eager, channels_last, ``torch.compile`` and onnxruntime (CPU execution
provider, the file written by :func:`reidzoo.deploy.export_onnx`) execution, on the CPU (and the GPU when present);
plus the data pipeline's frames/s (JPEG decode + test transform) against what the model consumes. The onnxruntime
rows carry the ratio to eager torch at the same batch, and where onnxruntime is slower, the operators that dominate
its time (onnxruntime's own profiler). Each model runs in its own subprocess so peak memory (max RSS on the CPU,
``max_memory_allocated`` on CUDA) belongs to that model alone. Timings are medians over repeats after a warm-up.

``--train-memory`` measures instead the peak memory of one training step (forward + backward) on a clip of the paper
configuration, with and without ``model.set_grad_checkpointing()``, each in a fresh process (CPU: max RSS above the
RSS before the step; CUDA: ``max_memory_allocated``).

    python benchmarks/speed.py                       # everything (long on a 2-core CPU: see --help)
    python benchmarks/speed.py --models 'sinet*' --batch-sizes 1 --modes eager
    python benchmarks/speed.py --models tp_resnet50 sinet_resnet50 --batch-sizes 1,8 --modes eager,onnxruntime
    python benchmarks/speed.py --train-memory --models 'sinet*'
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

MODES = ('eager', 'channels_last', 'compile', 'onnxruntime')


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


def _onnx_session(model, tmp: str):
    """Export ``model`` with reidzoo.deploy (verified) and load it with onnxruntime's CPU provider."""
    import torch
    from reidzoo.deploy import OnnxEmbedder, export_onnx
    path = export_onnx(model, Path(tmp) / 'model.onnx')
    return OnnxEmbedder(path, intra_op_num_threads=torch.get_num_threads())


def _onnx_top_ops(path: Path, x, runs: int = 2, top: int = 4) -> str:
    """The operators that take most of onnxruntime's time on ``x`` (its profiler), as 'Conv 71%, ...'."""
    import onnxruntime as ort
    import torch
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = torch.get_num_threads()
    options.profile_file_prefix = str(path.parent / 'ort_profile')
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    for _ in range(runs):
        session.run(None, {'clips': x.numpy()})
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for ev in events:
        if ev.get('cat') == 'Node' and ev.get('name', '').endswith('_kernel_time'):
            op = ev.get('args', {}).get('op_name', '?')
            totals[op] = totals.get(op, 0.0) + ev.get('dur', 0)
    total = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return ', '.join(f'{op} {100 * d / total:.0f}%' for op, d in ranked)


def measure_train_memory(name: str, kwargs: dict, device: str, checkpointing: bool, batch: int = 1,
                         input_size=None, num_frames=None) -> dict:
    """Peak memory of one training step (forward + backward) in this (fresh) process."""
    import torch
    import reidzoo
    model = reidzoo.create_model(name, num_classes=10, **kwargs).to(device).train()
    model.set_grad_checkpointing(checkpointing)
    cfg = model.pretrained_cfg
    c, h, w = input_size or cfg['input_size']
    t = num_frames or cfg['num_frames']
    x = torch.randn(batch, t, c, h, w, device=device)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = int(Path('/proc/self/statm').read_text().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    t0 = time.perf_counter()
    out = model(x)
    (out.logits.float().logsumexp(1).mean() + out.embedding.float().square().mean()).backward()
    sec = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return dict(model=name, device=device, grad_checkpointing=checkpointing, batch=batch, frames=t,
                input=f'{h}x{w}', step_s=sec, step_peak_mb=(peak - before) / 2**20)


def measure_model(name: str, kwargs: dict, batch_sizes: list[int], modes: list[str], device: str, repeats: int,
                  input_size=None, num_frames=None) -> list[dict]:
    """Measure one architecture in this process (called in a fresh subprocess by :func:`main`)."""
    import torch
    import reidzoo
    from reidzoo.utils import count_gflops
    model = reidzoo.create_model(name, **kwargs).eval().to(device)
    cfg = model.pretrained_cfg
    c, h, w = input_size or cfg['input_size']
    t = num_frames or cfg['num_frames']
    params = sum(p.numel() for p in model.parameters())
    gflops = count_gflops(model, (1, t, c, h, w))
    # the ONNX export takes its clip shape from the cfg: make it the one measured here
    model.pretrained_cfg = dict(cfg, input_size=(c, h, w), num_frames=t)
    rows = []
    eager_speed: dict[int, float] = {}
    tmp = tempfile.TemporaryDirectory()
    for mode in modes:
        m = model
        if mode == 'channels_last':
            m = model.to(memory_format=torch.channels_last)
        elif mode == 'compile':
            m = torch.compile(model)
        elif mode == 'onnxruntime':
            if device != 'cpu':
                continue  # the CPU execution provider is what is compared
            try:
                m = _onnx_session(model, tmp.name)
            except Exception as e:  # an architecture that does not export is a result, not a crash
                rows.extend(dict(model=name, device=device, mode=mode, batch=bs, error=f'{type(e).__name__}: {e}'[:300])
                            for bs in batch_sizes)
                continue
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
            row = dict(model=name, device=device, mode=mode, batch=bs, frames=t, input=f'{h}x{w}',
                       params_m=params / 1e6, gflops_per_clip=gflops, clips_per_s=bs / sec, peak_mem_mb=peak / 2**20)
            if mode == 'eager':
                eager_speed[bs] = bs / sec
            if mode == 'onnxruntime' and bs in eager_speed:
                row['vs_eager'] = (bs / sec) / eager_speed[bs]
                if row['vs_eager'] < 1.0:
                    row['ort_top_ops'] = _onnx_top_ops(m.path, x)
            rows.append(row)
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
    if spec.pop('train_memory', False):
        rows = [measure_train_memory(**spec)]
    else:
        rows = measure_model(**spec)
    print('RESULT ' + json.dumps(rows))


def _run_child(spec: dict) -> list[dict]:
    proc = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)], capture_output=True,
                          text=True, env=dict(os.environ))
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode or not out:
        return [dict(model=spec['name'], device=spec['device'], error=proc.stderr.strip().splitlines()[-1:] or '?')]
    return json.loads(out[-1][len('RESULT '):])


def train_memory_table(names: list[str], devices: list[str], kwargs: dict, input_size, num_frames, batch: int,
                       out_dir: Path) -> list[str]:
    """Peak training-step memory with and without gradient checkpointing, one fresh process per measurement."""
    rows = []
    for device in devices:
        for name in names:
            for ckpt in (False, True):
                result = _run_child(dict(train_memory=True, name=name, kwargs=kwargs, device=device,
                                         checkpointing=ckpt, batch=batch, input_size=input_size,
                                         num_frames=num_frames))
                rows.extend(dict(r, grad_checkpointing=ckpt) for r in result)  # error rows too
    (out_dir / 'train_memory.json').write_text(json.dumps(rows, indent=1))
    lines = ['| model | device | clip | peak step memory, plain (MB) | with grad checkpointing (MB) | saving | '
             'step time plain / ckpt (s) |', '|---|---|---|---|---|---|---|']
    by_key: dict[tuple, dict] = {}
    for r in rows:
        by_key.setdefault((r['model'], r.get('device')), {})[r.get('grad_checkpointing')] = r
    for (name, device), pair in by_key.items():
        plain, ckpt = pair.get(False), pair.get(True)
        if not plain or not ckpt or 'error' in plain or 'error' in ckpt:
            err = (plain or {}).get('error') or (ckpt or {}).get('error')
            lines.append(f'| {name} | {device} | | error: {err} | | | |')
            continue
        saving = 1 - ckpt['step_peak_mb'] / plain['step_peak_mb']
        lines.append(f"| {name} | {device} | {plain['batch']}x{plain['frames']}x{plain['input']} | "
                     f"{plain['step_peak_mb']:.0f} | {ckpt['step_peak_mb']:.0f} | {100 * saving:.0f}% | "
                     f"{plain['step_s']:.1f} / {ckpt['step_s']:.1f} |")
    (out_dir / 'train_memory.md').write_text('\n'.join(lines) + '\n')
    return lines


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
    parser.add_argument('--train-memory', action='store_true',
                        help='measure the peak memory of a training step with and without gradient checkpointing '
                             'instead of inference speed (default: off)')
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
    if args.train_memory:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        lines = train_memory_table(names, devices, json.loads(args.model_kwargs), input_size, args.num_frames,
                                   int(args.batch_sizes.split(',')[0]), out_dir)
        print('\n'.join(lines))
        return 0
    for device in devices:
        for name in tqdm(names, desc=f'speed ({device})', unit='model'):
            spec = dict(name=name, kwargs=json.loads(args.model_kwargs), device=device, repeats=args.repeats,
                        batch_sizes=[int(b) for b in args.batch_sizes.split(',')], modes=args.modes.split(','),
                        input_size=input_size, num_frames=args.num_frames)
            rows.extend(_run_child(spec))
    pipeline_fps = measure_pipeline(size=tuple((input_size or (3, 256, 128))[1:]))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'speed.json').write_text(json.dumps({'rows': rows, 'pipeline_frames_per_s': pipeline_fps,
                                                    'torch': torch.__version__, 'threads': torch.get_num_threads()},
                                                   indent=1))
    lines = ['| model | device | mode | batch | input | params (M) | GFLOPs/clip | clips/s | model frames/s | '
             'peak mem (MB) | vs eager | onnxruntime time by op |', '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['model']} | {r.get('device', '')} | {r.get('mode', '')} | {r.get('batch', '')} | "
                         f"error: {r['error']} | | | | | | | |")
            continue
        ratio = f"{r['vs_eager']:.2f}x" if 'vs_eager' in r else ''
        lines.append(f"| {r['model']} | {r['device']} | {r['mode']} | {r['batch']} | {r['frames']}x{r['input']} | "
                     f"{r['params_m']:.2f} | {r['gflops_per_clip']:.1f} | {r['clips_per_s']:.2f} | "
                     f"{r['clips_per_s'] * r['frames']:.1f} | {r['peak_mem_mb']:.0f} | {ratio} | "
                     f"{r.get('ort_top_ops', '')} |")
    lines.append('')
    lines.append(f'Data pipeline (Pillow decode + resize + normalise, 1 process): {pipeline_fps:.0f} frames/s. '
                 'A model is input-bound when its "model frames/s" exceeds this times the loader workers.')
    (out_dir / 'speed.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
