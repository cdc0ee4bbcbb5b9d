"""SynthVID as multi-camera *videos*: ground truth for ``reidzoo match``.

The SynthVID people (:class:`reidzoo.data.synthvid.Identity`) walk across the scenes of several cameras
(:class:`~reidzoo.data.synthvid.Camera`: its background, colour cast, gamma, saturation, noise), all recorded on one
clock. Each identity visits 2-4 cameras one after the other (fewer if its walk would outlast the recording);
consecutive visits may overlap in time (cameras with overlapping views) or be separated by a gap, and several people
share a camera at once. Each camera gets:

- ``<cam>.mp4``: the video (H.264 through PyAV);
- ``gt/<cam>.txt``: MOT ground truth, id = the global identity (1-based), one box per visible frame;
- ``tracks/<cam>.txt``: what a real tracker would write: box jitter, missed detections, tracks fragmented into
  several local ids, identity switches where two people cross, and a few false-positive tracks on the background.

``synthvid_video.json`` (written last) holds the parameters and counts. The whole folder appears atomically.

    $ reidzoo synth --layout video --out /tmp/synth-video --num-cameras 4 --num-ids 12
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .synthvid import Camera, Identity, atomic_folder, render_tracklet

__all__ = ['VIDEO_MARKER', 'generate_video', 'load_video_meta']

VIDEO_MARKER = 'synthvid_video.json'
VIDEO_GENERATOR_VERSION = 1
IDENTITY_OFFSET = 1000  # identity indices 1000.. : disjoint from the MARS-layout population (0..num_ids+distractors)


@dataclass
class _Visit:
    ident: int  # 0-based global identity
    cam: int  # 0-based camera position
    start: int  # first frame (0-based)
    length: int
    box_h: int
    box_w: int
    y_bottom: float
    x_from: float
    x_to: float

    def box(self, t: int) -> tuple[float, float, float, float]:
        """``(x, y, w, h)`` at global frame ``t`` (0-based)."""
        u = (t - self.start) / max(self.length - 1, 1)
        x = self.x_from + u * (self.x_to - self.x_from)
        return x, self.y_bottom - self.box_h, float(self.box_w), float(self.box_h)


def _band_height(size: tuple[int, int]) -> int:
    """Height of the walkway band in which people walk: a person's box is about this tall (a third of the frame)."""
    return int(round(size[0] / 3))


def _band_top(size: tuple[int, int]) -> int:
    return int(round(size[0] * 0.58))


def _scene(cam: Camera, size: tuple[int, int]) -> np.ndarray:
    """The camera's empty scene ``(H, W, 3)`` float, imaged by the camera.

    The walkway band is the camera's SynthVID panorama at the people's scale (the backdrop its tracklets are rendered
    on, so a person's crop here looks like a SynthVID crop of that camera); above and below it, the panorama's wall and
    floor continue.
    """
    height, width = size
    band, top = _band_height(size), _band_top(size)
    pano = cam.background((band, max(1, -(-width // 8))))[:, :width]
    scene = np.empty((height, width, 3), np.float32)
    rng = np.random.default_rng([cam.seed, 14, cam.index])
    wall, floor = np.median(pano[:band // 3], axis=(0, 1)), np.median(pano[-band // 6:], axis=(0, 1))
    scene[:top] = wall + rng.normal(0, 6, (top, width, 1))
    scene[top:top + band] = pano[:min(band, height - top)]
    scene[top + band:] = floor + rng.normal(0, 6, (height - top - band, width, 1))
    return _imaging(np.clip(scene, 0, 255), cam)


def _plan(rng: np.random.Generator, num_ids: int, num_cams: int, num_frames: int, size: tuple[int, int]) \
        -> list[_Visit]:
    height, width = size
    band = _band_height(size)
    visits = []
    for ident in range(num_ids):
        k = int(rng.integers(2, min(4, num_cams) + 1))
        cams = rng.choice(num_cams, k, replace=False).tolist()
        t = int(rng.integers(0, max(1, int(num_frames * 0.6))))
        for cam in cams:
            length = int(rng.integers(num_frames // 8, num_frames // 5))
            if t >= num_frames - 20:
                break
            length = min(length, num_frames - t)
            # people walk along the camera's walkway band, a little nearer or farther (their box scales with it)
            depth = rng.uniform(-1, 1)
            box_h = int(round(band * (1 + 0.06 * depth)))
            box_w = box_h // 2
            y_bottom = _band_top(size) + band * (1 + 0.1 * depth)
            # walk across the view; start/end partly outside the frame as people enter and leave
            left, right = -0.4 * box_w, width - 0.6 * box_w
            span = rng.uniform(0.5, 1.0) * (right - left)
            a = rng.uniform(left, right - span)
            x_from, x_to = (a, a + span) if rng.random() < 0.5 else (a + span, a)
            visits.append(_Visit(ident, cam, t, length, box_h, box_w, y_bottom, x_from, x_to))
            t += length + int(rng.integers(-num_frames // 16, num_frames // 6))  # negative: overlapping views
            t = max(t, 0)
    return visits


def _imaging(img: np.ndarray, cam: Camera) -> np.ndarray:
    """The camera's colour cast, saturation and gamma (as the tracklet renderer applies them) on a background."""
    img = img * cam.gain + cam.offset
    grey = img.mean(-1, keepdims=True)
    img = grey + cam.saturation * (img - grey)
    return 255. * (np.clip(img, 0, 255) / 255.) ** cam.gamma


def _render_visit(visit: _Visit, ident: Identity, cam: Camera, seed: int, serial: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground ``(F, h, w, 3)`` float and alpha ``(F, h, w, 1)`` of one visit: the tracklet rendered twice with the
    same randomness over a black and a white background; where the two differ is background."""
    size = (visit.box_h, visit.box_w)
    pano = (visit.box_h, 8 * visit.box_w, 3)
    dark = render_tracklet(ident, cam, visit.length, np.random.default_rng([seed, 11, serial]), size,
                           np.zeros(pano, np.float32)).astype(np.float32)
    light = render_tracklet(ident, cam, visit.length, np.random.default_rng([seed, 11, serial]), size,
                            np.full(pano, 255, np.float32)).astype(np.float32)
    diff = np.abs(light - dark).mean(-1, keepdims=True)
    full = max(float(np.percentile(diff, 95)), 1.)
    alpha = np.clip((1 - diff / full - 0.15) / 0.7, 0, 1)
    return dark, alpha


def _tracker_rows(visits: list[_Visit], visible: dict[int, list[tuple[int, tuple]]], rng: np.random.Generator,
                  num_frames: int, size: tuple[int, int], stats: dict[str, int]) -> list[tuple]:
    """Simulated tracker output for one camera: ``(frame, local id, x, y, w, h, conf)`` rows (frames 1-based)."""
    height, width = size
    segs: list[list[tuple[int, tuple]]] = []  # each a local track: [(frame, box)]
    owner: list[int] = []  # visit index of each segment
    for vi, dets in visible.items():
        dets = [d for d in dets if rng.random() > 0.03]  # missed detections
        if len(dets) < 2:
            continue
        cuts = []
        if rng.random() < 0.35:  # fragmentation: the tracker loses the person and starts a new id
            cuts = sorted(rng.choice(np.arange(5, len(dets) - 5), int(rng.integers(1, 3)), replace=False).tolist()) \
                if len(dets) > 20 else []
        bounds = [0, *cuts, len(dets)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            gap = int(rng.integers(0, 6)) if a else 0
            if b - a - gap > 1:
                segs.append(dets[a + gap:b])
                owner.append(vi)
        stats['fragments'] += len(cuts)
    # identity switches: two tracks of people who cross swap ids after the crossing
    for i in range(len(segs)):
        for j in range(i + 1, len(segs)):
            if owner[i] == owner[j] or rng.random() > 0.5:
                continue
            fi = {f: k for k, (f, _) in enumerate(segs[i])}
            crossing = None
            for f, bj in segs[j]:
                if f in fi:
                    bi = segs[i][fi[f]][1]
                    if abs((bi[0] + bi[2] / 2) - (bj[0] + bj[2] / 2)) < 0.3 * bi[2] and abs(bi[1] - bj[1]) < bi[3] / 3:
                        crossing = f
                        break
            if crossing is None:
                continue
            ki, kj = fi[crossing], next(k for k, (f, _) in enumerate(segs[j]) if f == crossing)
            segs[i], segs[j] = segs[i][:ki] + segs[j][kj:], segs[j][:kj] + segs[i][ki:]
            stats['id_switches'] += 1
    for _ in range(int(rng.integers(2, 5))):  # false positives: short tracks on background clutter
        h = float(rng.uniform(0.2, 0.45) * height)
        w = h * rng.uniform(0.35, 0.6)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        start = int(rng.integers(0, num_frames - 30))
        n = int(rng.integers(4, 26))
        segs.append([(f, (x, y, w, h)) for f in range(start, start + n)])
        owner.append(-1)
        stats['false_positive_tracks'] += 1
    order = sorted(range(len(segs)), key=lambda k: segs[k][0][0])
    rows = []
    for local_id, k in enumerate(order, start=1):
        for f, (x, y, w, h) in segs[k]:
            s = float(np.exp(rng.normal(0, 0.04)))
            jw, jh = w * s, h * float(np.exp(rng.normal(0, 0.03)))
            jx = x + (w - jw) / 2 + rng.normal(0, 0.03 * w)
            jy = y + (h - jh) / 2 + rng.normal(0, 0.02 * h)
            conf = float(np.clip(rng.normal(0.8, 0.1), 0.3, 1.0))
            rows.append((f + 1, local_id, jx, jy, jw, jh, conf))
    stats['tracker_tracks'] += len(segs)
    return sorted(rows)


def _write_rows(path: str, rows: Sequence[tuple]) -> None:
    with open(path, 'w') as f:
        for frame, tid, x, y, w, h, conf in rows:
            f.write(f'{frame},{tid},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{conf:.3f},-1,-1,-1\n')


def generate_video(
        root: str | os.PathLike,
        num_cameras: int = 4,
        num_ids: int = 12,
        num_frames: int = 480,
        frame_size: Sequence[int] = (240, 320),
        fps: int = 25,
        seed: int = 0,
        progress: bool = False,
) -> str:
    """Render a multi-camera SynthVID recording with ground truth and simulated tracker output (see module doc).

    Args:
        root: output folder; must not exist or be empty.
        num_cameras: 3-6 cameras (camera ``k`` uses SynthVID's camera ``k + 1`` of the seed, as the MARS layout).
        num_ids: identities walking through the cameras (SynthVID identities 1000.. of the seed, never used by the
            dataset layouts, so a model trained on SynthVID has not seen them).
        num_frames: frames per camera (one shared clock).
        frame_size: ``(H, W)``, even numbers (H.264 with 4:2:0 chroma).
        fps: frame rate written in the videos.
        seed: everything is a function of the seed and the parameters.

    Returns:
        ``root`` as an absolute path.
    """
    import av
    from tqdm.auto import tqdm
    height, width = (int(s) for s in frame_size)
    if not 3 <= num_cameras <= 6:
        raise ValueError(f'num_cameras must be 3..6, got {num_cameras}.')
    if num_ids < 2 or num_frames < 60:
        raise ValueError(f'Need num_ids >= 2 and num_frames >= 60, got {num_ids} and {num_frames}.')
    if height % 2 or width % 2 or min(height, width) < 96:
        raise ValueError(f'frame_size must be even and at least 96 px, got {height}x{width}.')
    params = {'num_cameras': int(num_cameras), 'num_ids': int(num_ids), 'num_frames': int(num_frames),
              'frame_size': [height, width], 'fps': int(fps), 'seed': int(seed), 'version': VIDEO_GENERATOR_VERSION}
    root = os.path.abspath(os.fspath(root))
    with atomic_folder(root) as tmp:  # a failed or killed render never leaves a half-written root
        started = time.perf_counter()
        rng = np.random.default_rng([seed, 10])
        visits = _plan(rng, num_ids, num_cameras, num_frames, (height, width))
        idents = {i: Identity.sample(seed, IDENTITY_OFFSET + i) for i in range(num_ids)}
        os.makedirs(os.path.join(tmp, 'gt'))
        os.makedirs(os.path.join(tmp, 'tracks'))
        stats = {'fragments': 0, 'id_switches': 0, 'false_positive_tracks': 0, 'tracker_tracks': 0}
        cameras = []
        for c in range(num_cameras):
            cam = Camera.sample(seed, c + 1)
            name = f'cam{c + 1}'
            bg = _scene(cam, (height, width))
            noise_rng = np.random.default_rng([seed, 12, c])
            noise = noise_rng.normal(0, cam.noise, (4, height, width, 3)).astype(np.float32)
            mine = [v for v in visits if v.cam == c]
            rendered = {k: _render_visit(v, idents[v.ident], cam, seed, c * 1000 + k) for k, v in enumerate(mine)}
            visible: dict[int, list[tuple[int, tuple]]] = {k: [] for k in range(len(mine))}
            gt_rows = []
            path = os.path.join(tmp, f'{name}.mp4')
            with av.open(path, 'w') as container:
                stream = container.add_stream('libx264', rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
                stream.options = {'crf': '20', 'preset': 'veryfast'}
                bar = tqdm(range(num_frames), desc=f'render {name}', disable=not progress, leave=False)
                for t in bar:
                    img = bg.copy()
                    here = sorted((k for k, v in enumerate(mine) if v.start <= t < v.start + v.length),
                                  key=lambda k: mine[k].y_bottom)  # far people first: near ones occlude them
                    for k in here:
                        v = mine[k]
                        x, y, w, h = v.box(t)
                        x0, y0 = int(round(x)), int(round(y))
                        fx0, fy0 = max(0, -x0), max(0, -y0)
                        fx1, fy1 = min(v.box_w, width - x0), min(v.box_h, height - y0)
                        if fx1 <= fx0 or fy1 <= fy0:
                            continue
                        fg, alpha = rendered[k]
                        a = alpha[t - v.start, fy0:fy1, fx0:fx1]
                        region = img[y0 + fy0:y0 + fy1, x0 + fx0:x0 + fx1]
                        region[:] = a * fg[t - v.start, fy0:fy1, fx0:fx1] + (1 - a) * region
                        seen = (fx1 - fx0) * (fy1 - fy0) / (v.box_w * v.box_h)
                        if seen >= 0.25:
                            gt_rows.append((t + 1, v.ident + 1, x, y, w, h, 1.0))
                        if seen >= 0.5:
                            visible[k].append((t, (x, y, w, h)))
                    img = np.clip(img + noise[t % len(noise)], 0, 255).astype(np.uint8)
                    frame = av.VideoFrame.from_ndarray(img, format='rgb24')
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            del rendered
            _write_rows(os.path.join(tmp, 'gt', f'{name}.txt'), sorted(gt_rows))
            trows = _tracker_rows(mine, visible, np.random.default_rng([seed, 13, c]), num_frames, (height, width),
                                  stats)
            _write_rows(os.path.join(tmp, 'tracks', f'{name}.txt'), trows)
            cameras.append({'name': name, 'video': f'{name}.mp4', 'gt': f'gt/{name}.txt',
                            'tracks': f'tracks/{name}.txt', 'visits': len(mine)})
        appearances = {i: sorted({v.cam + 1 for v in visits if v.ident == i}) for i in range(num_ids)}
        meta = {'generator': 'reidzoo.data.synthvid_video', 'params': params, 'cameras': cameras,
                'identities': {str(i + 1): {'synthvid_index': IDENTITY_OFFSET + i, 'cameras': appearances[i]}
                               for i in range(num_ids)},
                'counts': {'visits': len(visits), **stats}, 'seconds': round(time.perf_counter() - started, 2)}
        with open(os.path.join(tmp, VIDEO_MARKER), 'w') as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
    return root


def load_video_meta(root: str | os.PathLike) -> dict[str, Any]:
    """The ``synthvid_video.json`` of a generated folder, with absolute ``video``/``gt``/``tracks`` paths per
    camera; raises ``FileNotFoundError`` if the folder is not (completely) generated."""
    root = os.fspath(root)
    marker = os.path.join(root, VIDEO_MARKER)
    if not os.path.isfile(marker):
        raise FileNotFoundError(f'{root} holds no {VIDEO_MARKER}: not a (finished) SynthVID video folder. Generate one '
                                'with `reidzoo synth --layout video --out DIR`.')
    with open(marker) as f:
        meta = json.load(f)
    for cam in meta['cameras']:
        for key in ('video', 'gt', 'tracks'):
            cam[key] = os.path.join(root, cam[key])
    return meta
