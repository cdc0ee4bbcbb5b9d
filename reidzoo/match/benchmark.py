"""Measurements of ``reidzoo match`` on generated multi-camera SynthVID videos: identity scores and throughput.

:func:`score_methods` runs several models and the two baselines on one recording, sharing one decode, and scores
each with the multi-camera IDF1 (:mod:`.score`); :func:`decode_throughput` times decode + crop + resize against
plain PyAV decoding of the same videos in the same run; :func:`run_match_step` is the main job's step (render the
videos, match with the trained SynthVID models and the baselines, print the table). ``benchmarks/match_speed.py``
is the command-line front end for the throughput numbers.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch.nn as nn

from ..data.synthvid_video import generate_video, load_video_meta
from .pipeline import associate_cameras, prepare_cameras, write_outputs
from .score import score_mtmc_files
from .tracklets import MatchWarning, TrackletFilter, build_tracklets
from .tracks import read_mot
from .video import VideoSource, clip_box, crop_box

__all__ = ['VIDEO_PARAMS', 'ensure_recording', 'score_methods', 'decode_throughput', 'format_table', 'run_match_step']

# the main job's recording: 4 cameras x 480 frames of 320x240, 12 people about 80 px tall
VIDEO_PARAMS = {'num_cameras': 4, 'num_ids': 12, 'num_frames': 480, 'frame_size': (240, 320), 'seed': 0}


def ensure_recording(root: Union[str, os.PathLike], **params: Any) -> dict[str, Any]:
    """Generate the SynthVID recording in ``root`` unless a finished one with the same parameters is there."""
    params = {**VIDEO_PARAMS, **params}
    root = Path(root)
    try:
        meta = load_video_meta(root)
        want = {**params, 'frame_size': list(params['frame_size'])}
        if all(meta['params'].get(k) == v for k, v in want.items()):
            return meta
        shutil.rmtree(root)
    except FileNotFoundError:
        if root.exists():
            shutil.rmtree(root)
    return load_video_meta(generate_video(root, **params))


def score_methods(meta: dict[str, Any], methods: dict[str, Union[nn.Module, str]], out_dir: Union[str, Path], *,
                  filters: TrackletFilter = TrackletFilter(), thresholds: Optional[dict[str, float]] = None,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Match one recording with each method (decoded once, crops at 64x32 shared) and score it.

    Args:
        meta: :func:`reidzoo.data.synthvid_video.load_video_meta` of the recording.
        methods: row name -> model, ``'histogram'`` or ``'none'``.
        out_dir: each method's outputs go to ``out_dir/<name>/``.
        thresholds: row name -> threshold; default: each method's calibrated one.

    Returns:
        One row per method: ``name, identities, tracklets, threshold, IDF1, IDP, IDR, seconds`` (embedding and
        association; the shared decode is reported in the ``decode`` row).
    """
    cams = meta['cameras']
    out_dir = Path(out_dir)
    work = Path(tempfile.mkdtemp(prefix='reidzoo-match-bench-'))
    rows = []
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', MatchWarning)
            cameras = prepare_cameras([c['tracks'] for c in cams], work, videos=[c['video'] for c in cams],
                                      filters=filters, crop_size=(64, 32), progress=progress)
        decode_s = time.perf_counter() - t0
        for name, method in methods.items():
            t1 = time.perf_counter()
            labels, info = associate_cameras(cameras, method, (thresholds or {}).get(name), progress=progress)
            seconds = time.perf_counter() - t1
            dest = out_dir / name
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            info['filters'] = filters.__dict__
            identities = write_outputs(dest, cameras, labels, info)
            s = score_mtmc_files([c['gt'] for c in cams], [dest / f"{c['name']}.txt" for c in cams])
            rows.append({'name': name, 'identities': len(identities), 'tracklets': int(len(labels)),
                         'threshold': info.get('threshold'), **{k: s[k] for k in ('IDF1', 'IDP', 'IDR')},
                         'seconds': round(seconds, 2), 'decode_seconds': round(decode_s, 2)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`score_methods` rows."""
    lines = ['| method | IDF1 | IDP | IDR | identities | tracklets | threshold | embed+associate (s) |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        th = '–' if r['threshold'] is None else f"{r['threshold']:.4g}"
        lines.append(f"| {r['name']} | {100 * r['IDF1']:.1f} | {100 * r['IDP']:.1f} | {100 * r['IDR']:.1f} | "
                     f"{r['identities']} | {r['tracklets']} | {th} | {r['seconds']:.1f} |")
    return '\n'.join(lines)


def _crop_in_memory(meta: dict[str, Any], crop_size: tuple[int, int], upscale: bool) -> int:
    """Decode every video and crop + resize every box of its tracks (nothing written); returns the crop count."""
    crops = 0
    for c in meta['cameras']:
        source = VideoSource(c['video'])
        by_frame: dict[int, list[tuple[int, int, int, int]]] = {}
        for d in read_mot(c['tracks']):
            x0, y0, x1, y1, cut = clip_box(d.x, d.y, d.w, d.h, source.width, source.height)
            if cut < 1:
                by_frame.setdefault(d.frame, []).append((x0, y0, x1, y1))
        for index, frame in source.frames():
            for box in by_frame.get(index, ()):
                crop_box(frame, box, crop_size, upscale)
                crops += 1
    return crops


def decode_throughput(meta: dict[str, Any], crop_size: tuple[int, int] = (256, 128), repeats: int = 3) \
        -> dict[str, float]:
    """Frames per second of the same videos, best of ``repeats`` alternating runs of each:

    - ``plain_fps``: plain PyAV decoding to RGB arrays;
    - ``crop_fps``: decode + crop + resize of *every* box of the tracks, in memory (``ratio`` = its speed relative
      to plain decoding: the cost of cropping);
    - ``shrink_only_fps``: the same, resizing only boxes larger than ``crop_size`` (what ``match`` does: the model's
      transform resizes smaller crops when it reads them);
    - ``stage_fps``: the whole crop stage of ``match`` (:func:`build_tracklets`: filters, up to ``max_frames`` crops
      per track, written to a temporary folder), ``stage_ratio`` likewise.
    """
    cams = meta['cameras']
    total = crops = 0
    best_plain = best_mem = best_shrink = best_crop = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = 0
        for c in cams:
            for _, frame in VideoSource(c['video']).frames():
                total += 1
        best_plain = min(best_plain, time.perf_counter() - t0)
        t0 = time.perf_counter()
        crops = _crop_in_memory(meta, crop_size, True)
        best_mem = min(best_mem, time.perf_counter() - t0)
        t0 = time.perf_counter()
        _crop_in_memory(meta, crop_size, False)
        best_shrink = min(best_shrink, time.perf_counter() - t0)
        work = tempfile.mkdtemp(prefix='reidzoo-match-speed-')
        try:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', MatchWarning)
                for i, c in enumerate(cams):
                    build_tracklets(VideoSource(c['video']), read_mot(c['tracks']), i, Path(work) / c['name'],
                                    crop_size=crop_size, progress=False)
            best_crop = min(best_crop, time.perf_counter() - t0)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {'frames': total, 'crops': crops, 'plain_fps': total / best_plain, 'crop_fps': total / best_mem,
            'ratio': best_plain / best_mem, 'shrink_only_fps': total / best_shrink,
            'shrink_only_ratio': best_plain / best_shrink, 'stage_fps': total / best_crop,
            'stage_ratio': best_plain / best_crop}


def run_match_step(out: Union[str, Path], models: dict[str, Union[nn.Module, str]], progress: bool = False) -> str:
    """The main job's ``reidzoo match`` step: render the SynthVID recording (cached in ``out/video``), match it with
    each trained model and the two baselines, and return the IDF1 table with throughput (markdown)."""
    out = Path(out)
    t0 = time.perf_counter()
    meta = ensure_recording(out / 'video')
    render_s = time.perf_counter() - t0
    methods = {**models, 'colour histogram': 'histogram', 'no association': 'none'}
    # 16 crops per tracklet (match's default is 32) keep the step within the main job's time budget
    rows = score_methods(meta, methods, out / 'results', filters=TrackletFilter(max_frames=16), progress=progress)
    frames = meta['params']['num_frames'] * meta['params']['num_cameras']
    table = format_table(rows)
    decode_s = rows[0]['decode_seconds'] if rows else 0.0
    fps = {r['name']: frames / (decode_s + r['seconds']) for r in rows if r['name'] != 'no association'}
    p = meta['params']
    text = [f"## reidzoo match on SynthVID videos ({p['num_cameras']} cameras x {p['num_frames']} frames of "
            f"{p['frame_size'][1]}x{p['frame_size'][0]}, {p['num_ids']} people; tracker-like tracks)", '',
            'Multi-camera IDF1 / IDP / IDR (%), all cameras as one sequence, TrackEval Identity at IoU 0.5; thresholds '
            'calibrated on SynthVID test identities (docs/match.md).', '', table, '',
            f'Rendering: {render_s:.1f} s (0 when reused). Decode + crop of all {frames} frames once: {decode_s:.1f} '
            's. End-to-end frames/s (decode + embed + associate, calibration included on first use): ' +
            ', '.join(f'{k} {v:.0f}' for k, v in fps.items()) + '.']
    return '\n'.join(text)
