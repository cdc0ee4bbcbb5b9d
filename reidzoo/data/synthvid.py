"""SynthVID: a procedurally generated video re-ID benchmark, written in the exact on-disk layout of a real one.

Every identity is an appearance (shirt and trouser colours from a shared palette, shirt pattern, sleeves, shorts,
hair, an accessory: backpack, handbag or hat; body height and build) rendered as a walking figure (legs and arms swing
with the gait phase) seen by several cameras. Cameras differ in background, colour cast, gamma, saturation, noise and
blur; tracklets add detector jitter (per-frame box shift/scale, occasional bad boxes), a front/back/side view that
changes what is visible (a backpack hides the shirt from behind), and partial occlusions (poles the walker passes,
low obstacles). Identities share palette colours and cameras share nothing, so a per-frame colour-histogram matcher
(:func:`colour_histogram_baseline`) is clearly imperfect, while a trained model can learn the identities.

:func:`generate` writes the data as MARS, DukeMTMC-VideoReID, LS-VID, iLIDS-VID or PRID-2011 (``design/datasets.md``
§2-6, §11: CRLF name files, MATLAB v5 ``.mat`` files, LS-VID's HDF5 ``info_test.mat``, split files, MARS ``00-1`` junk
and ``0000`` distractor folders, Duke-V ``D`` distractor frames and gallery copies of the queries, ...), so the
regular parser of that dataset reads it and every part of the pipeline can be exercised without the real data.
:func:`build_synthvid` generates on first use into a cache and parses it. Everything is deterministic given the seed.

    $ reidzoo synth --layout mars --out /tmp/synth-mars --num-ids 100 --seed 0
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from .._atomic import fsync_dir

__all__ = ['LAYOUTS', 'Identity', 'Camera', 'generate', 'build_synthvid', 'synthvid_cache_dir',
           'colour_histogram_baseline', 'render_tracklet']

GENERATOR_VERSION = 1
MARKER = 'synthvid.json'  # written last: its presence means the folder is complete

# --------------------------------------------------------------------------------------------------------------------
# Appearance
# --------------------------------------------------------------------------------------------------------------------
PALETTE = {
    'black': (25, 25, 28), 'white': (235, 235, 230), 'grey': (128, 128, 128), 'darkgrey': (70, 70, 75),
    'navy': (30, 40, 90), 'blue': (50, 90, 190), 'lightblue': (130, 170, 220), 'denim': (60, 80, 120),
    'red': (190, 35, 35), 'maroon': (110, 25, 35), 'green': (40, 130, 60), 'olive': (100, 110, 50),
    'yellow': (225, 200, 50), 'orange': (230, 120, 30), 'brown': (110, 70, 40), 'beige': (200, 180, 140),
    'pink': (230, 140, 170), 'purple': (110, 50, 140), 'teal': (30, 130, 130),
}
_TOPS = [c for c in PALETTE if c != 'denim']
_BOTTOMS = {'black': 5, 'denim': 5, 'navy': 3, 'darkgrey': 3, 'grey': 2, 'beige': 2, 'brown': 2, 'olive': 1,
            'white': 1, 'blue': 1, 'red': 0.5, 'green': 0.5}
_SKINS = [(235, 200, 170), (210, 165, 125), (170, 120, 85), (110, 75, 50)]
_HAIRS = [(20, 15, 10), (70, 45, 25), (150, 110, 60), (200, 180, 120), (160, 160, 160)]
_MUTED = ['grey', 'darkgrey', 'beige', 'brown', 'white', 'olive', 'denim', 'black']
PATTERNS = ('plain', 'hstripes', 'vstripes', 'band', 'logo')
ACCESSORIES = ('none', 'backpack', 'handbag', 'hat')


def _colour(rng: np.random.Generator, name: str, jitter: float = 10.) -> np.ndarray:
    return np.clip(np.asarray(PALETTE[name], np.float32) + rng.normal(0, jitter, 3), 0, 255).astype(np.float32)


@dataclass(frozen=True)
class Identity:
    """The appearance that defines one synthetic person (colours are float RGB in 0..255)."""
    shirt: np.ndarray
    shirt2: np.ndarray  # secondary colour of the pattern
    pattern: str
    stripe_period: float  # in body heights
    long_sleeves: bool
    trousers: np.ndarray
    shorts: bool
    shoes: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    accessory: str
    accessory_colour: np.ndarray
    height: float  # fraction of the frame height the box-centred figure fills
    build: float  # width multiplier

    @classmethod
    def sample(cls, seed: int, index: int) -> 'Identity':
        """Identity ``index`` of the seed's population (independent of how many identities are drawn)."""
        rng = np.random.default_rng([seed, 0, index])
        top, top2 = rng.choice(len(_TOPS), 2, replace=False)
        bottoms, weights = list(_BOTTOMS), np.asarray(list(_BOTTOMS.values()))
        bottom = bottoms[rng.choice(len(bottoms), p=weights / weights.sum())]
        return cls(
            shirt=_colour(rng, _TOPS[top]), shirt2=_colour(rng, _TOPS[top2]),
            pattern=PATTERNS[rng.choice(len(PATTERNS), p=[0.4, 0.2, 0.15, 0.15, 0.1])],
            stripe_period=float(rng.uniform(0.05, 0.1)), long_sleeves=bool(rng.random() < 0.5),
            trousers=_colour(rng, bottom), shorts=bool(rng.random() < 0.15),
            shoes=_colour(rng, ['black', 'white', 'brown', 'darkgrey'][rng.integers(4)], 8),
            skin=np.asarray(_SKINS[rng.integers(len(_SKINS))], np.float32),
            hair=np.asarray(_HAIRS[rng.integers(len(_HAIRS))], np.float32),
            accessory=ACCESSORIES[rng.choice(len(ACCESSORIES), p=[0.4, 0.25, 0.2, 0.15])],
            accessory_colour=_colour(rng, _TOPS[rng.integers(len(_TOPS))]),
            height=float(rng.uniform(0.78, 0.94)), build=float(rng.uniform(0.85, 1.2)))


@dataclass(frozen=True)
class Camera:
    """Per-camera imaging: colour cast, gamma, saturation, noise, blur, and a background panorama."""
    index: int
    gain: np.ndarray
    offset: np.ndarray
    gamma: float
    saturation: float
    noise: float
    blur_prob: float
    seed: int

    @classmethod
    def sample(cls, seed: int, index: int) -> 'Camera':
        rng = np.random.default_rng([seed, 2, index])
        return cls(index=index, gain=rng.uniform(0.8, 1.2, 3).astype(np.float32),
                   offset=rng.uniform(-15, 15, 3).astype(np.float32), gamma=float(rng.uniform(0.85, 1.2)),
                   saturation=float(rng.uniform(0.7, 1.15)), noise=float(rng.uniform(2, 8)),
                   blur_prob=float(rng.uniform(0, 0.4)), seed=seed)

    def background(self, size: tuple[int, int]) -> np.ndarray:
        """A ``(H, 8W, 3)`` float panorama the walkers move across: wall, floor and clutter."""
        height, width = size
        rng = np.random.default_rng([self.seed, 3, self.index])
        pan_w = 8 * width
        names = list(PALETTE)
        # muted walls and floors; the colourful clutter is smaller, so the person dominates a tight box
        wall, floor = (_colour(rng, _MUTED[i], 25) for i in rng.choice(len(_MUTED), 2, replace=False))
        pano = np.empty((height, pan_w, 3), np.float32)
        horizon = int(height * rng.uniform(0.55, 0.8))
        pano[:horizon], pano[horizon:] = wall, floor
        yy, xx = np.mgrid[0:height, 0:pan_w]
        for _ in range(int(rng.integers(5, 12))):  # windows, doors, signs, parked things
            y0, x0 = rng.integers(0, height), rng.integers(0, pan_w)
            h, w = rng.integers(height // 10, height // 3), rng.integers(width // 8, width // 2)
            mask = (yy >= y0) & (yy < y0 + h) & (((xx - x0) % pan_w) < w)
            pano[mask] = _colour(rng, names[rng.integers(len(names))], 25)
        texture = rng.normal(0, 8, (height, pan_w, 1)).astype(np.float32)
        return np.clip(pano + texture, 0, 255)


# --------------------------------------------------------------------------------------------------------------------
# Rendering (vectorised over the frames of a tracklet)
# --------------------------------------------------------------------------------------------------------------------
def _segment(u, v, p0, p1):
    """Distance of every pixel (u, v) to the segment p0-p1 (per-frame endpoints), and the position t along it."""
    ex, ey = p1[0] - p0[0], p1[1] - p0[1]
    du, dv = u - p0[0], v - p0[1]
    t = np.clip((du * ex + dv * ey) / (ex * ex + ey * ey + 1e-9), 0, 1)
    return np.sqrt((du - t * ex) ** 2 + (dv - t * ey) ** 2), t


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """In place: img (F, H, W, 3), mask (F, H, W), colour (3,) or (F, H, W, 3)."""
    if colour.ndim == 1:
        img[mask] = colour
    else:
        img[mask] = colour[mask]


def render_tracklet(
        identity: Optional[Identity],
        camera: Camera,
        num_frames: int,
        rng: np.random.Generator,
        size: tuple[int, int] = (64, 32),
        background: Optional[np.ndarray] = None,
        kind: str = 'person',
) -> np.ndarray:
    """Render one tracklet as ``(num_frames, H, W, 3)`` uint8 frames.

    Args:
        identity: Who walks (``None`` for background-only false detections).
        camera: The camera that sees it.
        num_frames: Number of frames.
        rng: Source of the tracklet's own randomness (motion, jitter, occlusion, noise).
        size: Frame ``(H, W)``.
        background: The camera's panorama (``camera.background(size)``), passed in to reuse it.
        kind: ``'person'``, ``'partial'`` (badly cut box: a distractor) or ``'junk'`` (background, blurred).
    """
    height, width = size
    n = int(num_frames)
    bg = camera.background(size) if background is None else background
    pan_w = bg.shape[1]
    frames = np.arange(n, dtype=np.float32)
    direction = float(rng.choice([-1., 1.]))
    # the walker stays centred in its box while the background slides past
    slide = rng.uniform(0.3, 1.5) * width / 32 * direction
    x0 = int(rng.integers(pan_w))
    cols = (x0 + np.round(frames[:, None] * slide).astype(np.int64) + np.arange(width)[None]) % pan_w  # (F, W)
    img = bg[:, cols].transpose(1, 0, 2, 3).copy()  # (F, H, W, 3)

    if identity is not None and kind != 'junk':
        _draw_person(img, identity, rng, n, size, kind)
    _occlude(img, rng, cols, pan_w, size)

    # imaging: tracklet illumination, camera colour cast, saturation, gamma, blur, noise
    img *= rng.uniform(0.8, 1.15)
    img = img * camera.gain + camera.offset
    grey = img.mean(-1, keepdims=True)
    img = grey + camera.saturation * (img - grey)
    img = 255. * (np.clip(img, 0, 255) / 255.) ** camera.gamma
    blurred = rng.random(n) < (1. if kind == 'junk' else camera.blur_prob)
    if blurred.any():
        sel = img[blurred]
        img[blurred] = (sel + np.roll(sel, 1, axis=2) + np.roll(sel, -1, axis=2) + np.roll(sel, 1, axis=1)) / 4
    img += rng.normal(0, camera.noise, img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _draw_person(img: np.ndarray, ident: Identity, rng: np.random.Generator, n: int, size: tuple[int, int],
                 kind: str) -> None:
    height, width = size
    view = ('front', 'back', 'side')[rng.choice(3, p=[0.3, 0.3, 0.4])]
    mirror = float(rng.choice([-1., 1.]))
    phase = rng.uniform(0, 2 * np.pi) + np.arange(n) * rng.uniform(0.6, 1.2)
    # detector jitter: per-frame box scale/shift around a slowly drifting centre, and occasional bad boxes
    scale = ident.height * np.exp(rng.normal(0, 0.04, n))
    cx = width / 2 + np.cumsum(rng.normal(0, 0.02 * width, n)) + rng.normal(0, 0.04 * width, n)
    top = (1 - scale) * height / 2 + rng.normal(0, 0.025 * height, n)
    bad = rng.random(n) < 0.04
    cx[bad] += rng.choice([-1., 1.], bad.sum()) * 0.25 * width
    if kind == 'partial':  # a false or badly cut detection: a person much too big and off-centre
        scale = scale * rng.uniform(1.4, 2.0)
        cx = cx + rng.choice([-1., 1.]) * rng.uniform(0.25, 0.5) * width
        top = top - rng.uniform(0.1, 0.6) * height
    hpx = (scale * height)[:, None, None]
    v = (np.arange(height)[None, :, None] + 0.5 - top[:, None, None]) / hpx
    u = (np.arange(width)[None, None, :] + 0.5 - cx[:, None, None]) / hpx * mirror
    b = ident.build
    side = view == 'side'
    swing = 0.38 if side else 0.14
    sin = np.sin(phase)

    def limb(root_u: float, root_v: float, length: float, angle: np.ndarray):
        p0 = (root_u, root_v)
        p1 = ((root_u + length * np.sin(angle))[:, None, None], (root_v + length * np.cos(angle))[:, None, None])
        return _segment(u, v, p0, p1)

    def arm(sign: float) -> None:
        d, t = limb(0. if side else sign * 0.16 * b, 0.2, 0.3, -sign * swing * sin if not side else -sign * 0.45 * sin)
        mask = d < 0.038 * b
        sleeve = t < (0.85 if ident.long_sleeves else 0.35)
        _paint(img, mask & sleeve, ident.shirt)
        _paint(img, mask & ~sleeve, ident.skin)

    if side:
        arm(-1.)  # the far arm is hidden behind the torso
    for sign in (-1., 1.):  # legs
        d, t = limb(0. if side else sign * 0.06 * b, 0.52, 0.46, sign * swing * sin)
        mask = d < 0.052 * b
        shoe, skin = t > 0.9, (t > 0.45) & (t <= 0.9) if ident.shorts else np.zeros_like(t, bool)
        _paint(img, mask & ~shoe & ~skin, ident.trousers)
        _paint(img, mask & skin, ident.skin)
        _paint(img, mask & shoe, ident.shoes)
    # torso: a trapezoid, narrower seen from the side, with the identity's pattern
    half = (0.155 - 0.035 * np.clip((v - 0.17) / 0.38, 0, 1)) * b * (0.65 if side else 1.)
    torso = (v >= 0.17) & (v <= 0.56) & (np.abs(u) <= half)
    if ident.pattern == 'plain':
        _paint(img, torso, ident.shirt)
    else:
        if ident.pattern == 'hstripes':
            second = np.floor(v / ident.stripe_period) % 2 == 1
        elif ident.pattern == 'vstripes':
            second = np.floor(u / ident.stripe_period) % 2 == 1
        elif ident.pattern == 'band':
            second = (v > 0.3) & (v < 0.4)
        else:  # logo on the chest, only seen from the front
            second = (np.abs(u) < 0.04 * b) & (v > 0.24) & (v < 0.33) & (view == 'front')
        _paint(img, torso & ~second, ident.shirt)
        _paint(img, torso & second, ident.shirt2)
    acc, colour = ident.accessory, ident.accessory_colour
    if acc == 'backpack':
        if view == 'back':
            _paint(img, (np.abs(u) < 0.1 * b) & (v > 0.2) & (v < 0.47), colour)
        elif view == 'front':
            _paint(img, (np.abs(np.abs(u) - 0.075 * b) < 0.016) & (v > 0.17) & (v < 0.42), colour)
        else:
            _paint(img, (u < -0.08 * b) & (u > -0.18 * b) & (v > 0.2) & (v < 0.47), colour)
    arm(1.)
    if not side:
        arm(-1.)
    if acc == 'handbag':
        bag_u = 0. if side else 0.21 * b
        _paint(img, (np.abs(u - bag_u) < 0.05 * b) & (v > 0.44) & (v < 0.58), colour)
    # head and hair; from behind the head is all hair
    head = ((u / (0.065 * b)) ** 2 + ((v - 0.09) / 0.075) ** 2) <= 1
    _paint(img, head & ((v < 0.06) | (view == 'back')), ident.hair)
    _paint(img, head & ~((v < 0.06) | (view == 'back')), ident.skin)
    if acc == 'hat':
        _paint(img, ((np.abs(u) < 0.07 * b) & (v > 0.0) & (v < 0.05)) | ((np.abs(u) < 0.095 * b) & (v >= 0.05)
                                                                         & (v < 0.065)), colour)


def _occlude(img: np.ndarray, rng: np.random.Generator, cols: np.ndarray, pan_w: int, size: tuple[int, int]) -> None:
    height, width = size
    n = len(img)
    names = list(PALETTE)
    if rng.random() < 0.3:  # a pole fixed in the scene, which the walker passes
        px, pw = int(rng.integers(pan_w)), max(1, int(width * rng.uniform(0.12, 0.3)))
        pole = ((cols - px) % pan_w) < pw  # (F, W)
        img[np.broadcast_to(pole[:, None, :], img.shape[:3])] = _colour(rng, names[rng.integers(len(names))], 20)
    if rng.random() < 0.25 and n > 1:  # a low obstacle hiding the legs during part of the tracklet
        f0 = int(rng.integers(n))
        f1 = min(n, f0 + max(1, int(n * rng.uniform(0.3, 0.7))))
        y0 = int(height * rng.uniform(0.55, 0.8))
        img[f0:f1, y0:] = _colour(rng, names[rng.integers(len(names))], 20)


# --------------------------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _Track:
    ident: Optional[int]  # global identity index (None: background only)
    cam: int  # 1-based camera number
    num_frames: int
    kind: str = 'person'


class _Builder:
    """Shared state of one generation: seeds, frame size, camera backgrounds, tracklet counter and statistics."""

    def __init__(self, root: str, seed: int, size: tuple[int, int], lengths: tuple[int, int, float]):
        self.root, self.seed, self.size = root, seed, size
        self.min_len, self.max_len, self.mean_len = lengths
        self.plan_rng = np.random.default_rng([seed, 4])
        self._cameras: dict[int, tuple[Camera, np.ndarray]] = {}
        self._idents: dict[int, Identity] = {}
        self.serial = 0
        self.num_frames_written = 0

    def length(self, short_prob: float = 0.) -> int:
        """A tracklet length: log-normal around the mean, some very short ones (padding cases) if asked."""
        if short_prob and self.plan_rng.random() < short_prob:
            return int(self.plan_rng.integers(self.min_len, max(self.min_len, 3) + 1))
        n = self.plan_rng.lognormal(np.log(self.mean_len), 0.5)
        return int(np.clip(round(n), self.min_len, self.max_len))

    def render(self, track: _Track) -> np.ndarray:
        if track.cam not in self._cameras:
            cam = Camera.sample(self.seed, track.cam)
            self._cameras[track.cam] = (cam, cam.background(self.size))
        cam, bg = self._cameras[track.cam]
        ident = None
        if track.ident is not None:
            if track.ident not in self._idents:
                self._idents[track.ident] = Identity.sample(self.seed, track.ident)
            ident = self._idents[track.ident]
        rng = np.random.default_rng([self.seed, 1, self.serial])
        self.serial += 1
        return render_tracklet(ident, cam, track.num_frames, rng, self.size, bg, track.kind)

    def write(self, frames: np.ndarray, paths: Sequence[str]) -> None:
        for frame, path in zip(frames, paths):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            image = Image.fromarray(frame)
            if path.endswith('.png'):
                image.save(path, compress_level=1)
            else:
                image.save(path, quality=90)
        self.num_frames_written += len(paths)


def _cams_for(rng: np.random.Generator, num_cams: int, low: int, high: int) -> list[int]:
    k = int(rng.integers(low, min(high, num_cams) + 1))
    return sorted((rng.choice(num_cams, k, replace=False) + 1).tolist())


def _tracks_of_identity(b: _Builder, ident: int, cams: list[int], max_per_cam: int, short_prob: float) -> list[_Track]:
    tracks = []
    for cam in cams:
        for _ in range(int(b.plan_rng.integers(1, max_per_cam + 1))):
            tracks.append(_Track(ident, cam, b.length(short_prob)))
    return tracks


def _write_mars(b: _Builder, num_ids: int) -> dict[str, Any]:
    """MARS: bbox_{train,test}/<PPPP>/<PPPP>C<c>T<tttt>F<fff>.jpg, info/ name lists (CRLF) and .mat tables."""
    rng = b.plan_rng
    num_train = num_ids // 2
    # train pids odd, test pids even, as in MARS; test adds pid 0 distractors and pid -1 junk
    groups: dict[str, list[tuple[int, list[_Track]]]] = {'train': [], 'test': []}
    for k in range(num_ids):
        is_train = k < num_train
        pid = 2 * k + 1 if is_train else 2 * (k - num_train) + 2
        single = not is_train and rng.random() < 0.06  # a few test ids seen by one camera (no positive)
        cams = _cams_for(rng, 6, 1, 1) if single else _cams_for(rng, 6, 2, 4)
        groups['train' if is_train else 'test'].append((pid, _tracks_of_identity(b, k, cams, 3, 0.08)))
    num_test = num_ids - num_train
    distractors = [_Track(num_ids + i, int(rng.integers(1, 7)), b.length(0.2), 'partial')
                   for i in range(max(2, num_test // 2))]
    junk = [_Track(None, int(rng.integers(1, 7)), b.length(0.3), 'junk') for _ in range(max(2, num_test // 6))]
    groups['test'] += [(0, sorted(distractors, key=lambda t: t.cam)), (-1, sorted(junk, key=lambda t: t.cam))]

    info = os.path.join(b.root, 'info')
    os.makedirs(info)
    rows_of: dict[str, np.ndarray] = {}
    query_rows = []
    for split, entries in groups.items():
        names, rows = [], []
        # folders in sorted name order: '00-1' < '0000' < '0002' < ...; T numbered per pid in camera order
        for pid, tracks in sorted(entries, key=lambda e: '00-1' if e[0] == -1 else f'{e[0]:04d}'):
            folder = '00-1' if pid == -1 else f'{pid:04d}'
            tracks = sorted(tracks, key=lambda t: t.cam)
            by_cam: dict[int, list[int]] = {}
            for tnum, track in enumerate(tracks, start=1):
                frame_names = [f'{folder}C{track.cam}T{tnum:04d}F{f:03d}.jpg' for f in range(1, track.num_frames + 1)]
                b.write(b.render(track), [os.path.join(b.root, f'bbox_{split}', folder, nm) for nm in frame_names])
                rows.append([len(names) + 1, len(names) + len(frame_names), pid, track.cam])
                names += frame_names
                by_cam.setdefault(track.cam, []).append(len(rows))  # 1-based row
            if split == 'test' and pid > 0 and len(by_cam) >= 2:
                query_rows += [int(rng.choice(r)) for _, r in sorted(by_cam.items())]
        with open(os.path.join(info, f'{split}_name.txt'), 'w', newline='') as f:
            f.write(''.join(f'{nm}\r\n' for nm in names))  # MATLAB's '%s\r\n'
        rows_of[split] = np.asarray(rows, dtype=np.int32)
        _savemat(os.path.join(info, f'tracks_{split}_info.mat'), {f'track_{split}_info': rows_of[split]})
    query = np.asarray(sorted(query_rows), dtype=np.uint16)[None]
    _savemat(os.path.join(info, 'query_IDX.mat'), {'query_IDX': query})
    return {'train_tracklets': len(rows_of['train']), 'test_tracklets': len(rows_of['test']),
            'query_tracklets': int(query.size), 'distractor_tracklets': len(distractors), 'junk_tracklets': len(junk)}


def _write_dukev(b: _Builder, num_ids: int) -> dict[str, Any]:
    """Duke-V: DukeMTMC-VideoReID/{train,query,gallery}/<PPPP>/<TTTT>/<PPPP>_C<c>_F<ffff>_X<n>.jpg."""
    rng = b.plan_rng
    num_train = num_ids // 2
    num_distractors = max(1, (num_ids - num_train) // 2)
    pids = sorted((rng.choice(9999, num_ids + num_distractors, replace=False) + 1).tolist())
    order = rng.permutation(len(pids))  # which pid numbers are train, test and distractor ids
    base = os.path.join(b.root, 'DukeMTMC-VideoReID')
    counts = {'train': 0, 'query': 0, 'gallery': 0}

    def put(split: str, pid: int, tnum: int, track: _Track, frames: np.ndarray, marker: str, start: int) -> None:
        folder = os.path.join(base, split, f'{pid:04d}', f'{tnum:04d}')
        # F is the 1-based frame index in the tracklet; X/D the frame number in the camera video (every 12th frame)
        b.write(frames, [os.path.join(folder, f'{pid:04d}_C{track.cam}_F{f + 1:04d}_{marker}{start + 12 * f}.jpg')
                         for f in range(track.num_frames)])
        counts[split] += 1

    for rank, k in enumerate(order):
        pid = pids[k]
        if rank < num_ids:
            tracks = _tracks_of_identity(b, rank, _cams_for(rng, 8, 2, 4), 2, 0.05)
            tracks = [tracks[i] for i in rng.permutation(len(tracks))]
            split = 'train' if rank < num_train else 'test'
            query = int(rng.integers(len(tracks)))
            for tnum, track in enumerate(tracks, start=1):
                frames, start = b.render(track), int(rng.integers(10000, 200000))
                if split == 'train':
                    put('train', pid, tnum, track, frames, 'X', start)
                    continue
                put('gallery', pid, tnum, track, frames, 'X', start)  # the gallery holds every test tracklet
                if tnum - 1 == query:
                    put('query', pid, tnum, track, frames, 'X', start)
        else:  # a gallery-only distractor identity, frames marked D
            for tnum, track in enumerate(_tracks_of_identity(b, rank, _cams_for(rng, 8, 1, 2), 1, 0.), start=1):
                put('gallery', pid, tnum, track, b.render(track), 'D', int(rng.integers(10000, 200000)))
    counts['distractor_ids'] = num_distractors
    return counts


def _write_lsvid(b: _Builder, num_ids: int) -> dict[str, Any]:
    """LS-VID: list_sequence/list_seq_{train,test}.txt, tracklet_{train,test}/..., test/data/info_test.mat (HDF5)."""
    rng = b.plan_rng
    num_train = num_ids // 2
    lists = os.path.join(b.root, 'list_sequence')
    os.makedirs(lists)
    counts: dict[str, Any] = {}
    info_rows, query_rows = [], []
    for split, ids in (('train', range(num_train)), ('test', range(num_train, num_ids))):
        lines, frame_total = [], 0
        for label, k in enumerate(ids):  # pids are 0-based labels within each split
            single = split == 'test' and rng.random() < 0.04
            cams = _cams_for(rng, 15, 1, 1) if single else _cams_for(rng, 15, 2, 4)
            tracks = _tracks_of_identity(b, k, cams, 2, 0.)
            tracks = [tracks[i] for i in rng.permutation(len(tracks))]  # within a pid, cameras are not sorted
            if split == 'test':
                query_cams = rng.permutation(cams)[:1 + int(len(cams) > 1 and rng.random() < 0.3)]
            for serial, track in enumerate(tracks, start=1):
                prefix = f'tracklet_{split}/{label:04d}_1/{label:04d}_{serial:04d}_{track.cam:02d}'
                b.write(b.render(track), [os.path.join(b.root, f'{prefix}_{f:04d}.jpg')
                                          for f in range(1, track.num_frames + 1)])
                lines.append(f'{prefix} {label}')
                if split == 'test':
                    info_rows.append([frame_total + 1, frame_total + track.num_frames, label, track.cam])
                    if track.cam in query_cams:
                        query_cams = query_cams[query_cams != track.cam]  # one query per (pid, camera)
                        query_rows.append(len(info_rows))
                frame_total += track.num_frames
        with open(os.path.join(lists, f'list_seq_{split}.txt'), 'w') as f:
            f.write(''.join(f'{line}\n' for line in lines))
        counts[f'{split}_tracklets'] = len(lines)
    query = np.asarray(query_rows, np.float64)[rng.permutation(len(query_rows))]  # the real query list is unsorted
    _write_mat73(os.path.join(b.root, 'test', 'data', 'info_test.mat'),
                 {'info_test': np.asarray(info_rows, np.float64).T, 'query': query[None]})
    counts['query_tracklets'] = len(query_rows)
    return counts


def _savemat(path: str, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v5 file (scipy), with a fixed header text: scipy stamps the creation time, which breaks determinism."""
    import scipy.io
    scipy.io.savemat(path, arrays)
    text = b'MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970'
    with open(path, 'r+b') as f:
        f.write(text.ljust(116, b' '))


def _write_mat73(path: str, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 with the 128-byte MATLAB header in a 512-byte user block (h5py shapes as given)."""
    import h5py
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, 'w', userblock_size=512) as f:
        for name, arr in arrays.items():
            f.create_dataset(name, data=arr).attrs['MATLAB_class'] = np.bytes_(b'double')
    text = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 HDF5 schema 1.00 .'
    header = text.ljust(116, b' ') + b'\x00' * 8 + b'\x00\x02' + b'IM'
    with open(path, 'r+b') as f:
        f.write(header)


def _write_ilidsvid(b: _Builder, num_ids: int) -> dict[str, Any]:
    """iLIDS-VID: i-LIDS-VID/sequences/cam{1,2}/personNNN/..., 'train-test people splits/...mat' ls_set (10, 300)."""
    if num_ids != 300:
        raise ValueError(f'The iLIDS-VID layout has exactly 300 persons (ls_set is (10, 300)); got num_ids={num_ids}. '
                         'Use small frames and short tracklets to keep it fast.')
    rng = b.plan_rng
    persons = sorted((rng.choice(319, 300, replace=False) + 1).tolist())  # ids up to 319 with gaps
    base = os.path.join(b.root, 'i-LIDS-VID')
    for k, person in enumerate(persons):
        for cam in (1, 2):
            track = _Track(k, cam, b.length())
            frames = b.render(track)
            start = int(rng.integers(1, 90000))  # the original video frame number, not starting at 1
            name = f'cam{cam}_person{person:03d}'
            b.write(frames, [os.path.join(base, 'sequences', f'cam{cam}', f'person{person:03d}',
                                          f'{name}_{start + f:05d}.png') for f in range(track.num_frames)])
            b.write(frames[:1], [os.path.join(base, 'images', f'cam{cam}', f'person{person:03d}', f'{name}.png')])
    ls_set = np.stack([rng.permutation(300) + 1 for _ in range(10)]).astype(np.float64)
    split_dir = os.path.join(b.root, 'train-test people splits')
    os.makedirs(split_dir)
    _savemat(os.path.join(split_dir, 'train_test_splits_ilidsvid.mat'), {'ls_set': ls_set})
    return {'persons': 300, 'tracklets': 600}


def _write_prid2011(b: _Builder, num_ids: int) -> dict[str, Any]:
    """PRID-2011: prid_2011/multi_shot/cam_{a,b}/person_NNNN/NNNN.png and splits_prid2011.json (10 splits)."""
    rng = b.plan_rng
    # persons 1..num_ids appear in both cameras; higher numbers are different people in each camera
    extra = {'a': max(1, num_ids // 5), 'b': max(2, num_ids // 2)}
    # about 11% of the shared persons are left out of the splits (as 22 of 200 are), with an even remainder
    num_excluded = max(1, round(num_ids * 0.11))
    num_excluded += (num_ids - num_excluded) % 2
    excluded = set((rng.choice(num_ids, num_excluded, replace=False) + 1).tolist())
    base = os.path.join(b.root, 'prid_2011')
    next_ident = num_ids
    for cam in ('a', 'b'):
        for person in range(1, num_ids + extra[cam] + 1):
            if person <= num_ids:
                ident = person - 1
            else:
                ident, next_ident = next_ident, next_ident + 1
            track = _Track(ident, 1 if cam == 'a' else 2, b.length())
            frames = b.render(track)
            folder = f'cam_{cam}/person_{person:04d}'
            b.write(frames, [os.path.join(base, 'multi_shot', folder, f'{f:04d}.png')
                             for f in range(1, track.num_frames + 1)])
            b.write(frames[:1], [os.path.join(base, 'single_shot', f'{folder}.png')])
    used = [p for p in range(1, num_ids + 1) if p not in excluded]
    splits = []
    for _ in range(10):
        perm = rng.permutation(used).tolist()
        half = len(used) // 2
        splits.append({'test': [f'person_{p:04d}' for p in sorted(perm[:half])],
                       'train': [f'person_{p:04d}' for p in sorted(perm[half:])]})
    with open(os.path.join(b.root, 'splits_prid2011.json'), 'w') as f:
        json.dump(splits, f, indent=4)
    return {'shared_persons': num_ids, 'split_persons': len(used), 'cam_a_persons': num_ids + extra['a'],
            'cam_b_persons': num_ids + extra['b']}


# name -> (writer, default num_ids, default (min, max, mean) tracklet length)
LAYOUTS: dict[str, tuple[Any, int, tuple[int, int, float]]] = {
    'mars': (_write_mars, 100, (2, 120, 16.)),
    'dukev': (_write_dukev, 100, (2, 120, 16.)),
    'lsvid': (_write_lsvid, 100, (4, 120, 16.)),
    'ilidsvid': (_write_ilidsvid, 300, (4, 48, 12.)),
    'prid2011': (_write_prid2011, 100, (4, 60, 14.)),
}


def _params(layout: str, num_ids: Optional[int], seed: int, frame_size: Sequence[int],
            lengths: Optional[Sequence[float]]) -> dict[str, Any]:
    if layout not in LAYOUTS:
        raise ValueError(f'Unknown SynthVID layout {layout!r}; expected one of {sorted(LAYOUTS)}.')
    _, default_ids, default_lengths = LAYOUTS[layout]
    num_ids = default_ids if num_ids is None else int(num_ids)
    lengths = tuple(default_lengths if lengths is None else lengths)
    if len(lengths) != 3 or not 1 <= lengths[0] <= lengths[2] <= lengths[1]:
        raise ValueError(f'lengths must be (min, max, mean) with 1 <= min <= mean <= max, got {lengths}.')
    if num_ids < 4:
        raise ValueError(f'num_ids must be >= 4 (half train, half test), got {num_ids}.')
    if len(frame_size) != 2 or min(frame_size) < 8:
        raise ValueError(f'frame_size must be (H, W) with both >= 8, got {tuple(frame_size)}.')
    return {'layout': layout, 'num_ids': num_ids, 'seed': int(seed), 'frame_size': [int(s) for s in frame_size],
            'lengths': [int(lengths[0]), int(lengths[1]), float(lengths[2])], 'version': GENERATOR_VERSION}


def _params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def generate(
        root: str | os.PathLike,
        layout: str = 'mars',
        num_ids: Optional[int] = None,
        seed: int = 0,
        frame_size: Sequence[int] = (64, 32),
        lengths: Optional[Sequence[float]] = None,
) -> str:
    """Write a SynthVID dataset in the on-disk layout of ``layout``, atomically.

    The data is generated in a temporary sibling folder that is renamed to ``root`` only when complete, so an
    interrupted generation never leaves a half-written ``root``.

    Args:
        root: Output folder; must not exist or be empty. The layout's own top folders go inside it
            (``build_dataset(layout, root)`` parses it).
        layout: ``'mars'``, ``'dukev'``, ``'lsvid'``, ``'ilidsvid'`` or ``'prid2011'``.
        num_ids: Labelled identities, half train and half test (iLIDS-VID: exactly 300; PRID: persons seen by both
            cameras). Default: 100 (iLIDS-VID 300).
        seed: Everything (appearance, cameras, motion, splits) is a function of the seed and the parameters.
        frame_size: Frame ``(H, W)``.
        lengths: Tracklet length ``(min, max, mean)`` in frames; default per layout.

    Returns:
        ``root`` as an absolute path.
    """
    params = _params(layout, num_ids, seed, frame_size, lengths)
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise FileExistsError(f'{root} already exists and is not an empty folder; choose a new --out folder.')
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(root)}.tmp-{os.getpid()}-', dir=parent)
    try:
        started = time.perf_counter()
        builder = _Builder(tmp, params['seed'], tuple(params['frame_size']), tuple(params['lengths']))
        counts = LAYOUTS[layout][0](builder, params['num_ids'])
        counts['frames'] = builder.num_frames_written
        meta = {'generator': 'reidzoo.data.synthvid', 'params': params, 'counts': counts,
                'seconds': round(time.perf_counter() - started, 2)}
        marker = os.path.join(tmp, MARKER)
        with open(marker, 'w') as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if os.path.isdir(root):
            os.rmdir(root)  # empty (checked above)
        os.rename(tmp, root)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _remove_stale_tmp(root: str) -> None:
    """Delete temporary folders of ``root`` left by generations whose process was killed (the pid is in the name)."""
    parent, prefix = os.path.dirname(root), f'.{os.path.basename(root)}.tmp-'
    if not os.path.isdir(parent):
        return
    for entry in os.scandir(parent):
        if not (entry.is_dir() and entry.name.startswith(prefix)):
            continue
        try:
            os.kill(int(entry.name[len(prefix):].split('-')[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except (ValueError, OverflowError, PermissionError):
            pass


def synthvid_cache_dir() -> str:
    """``$REIDZOO_CACHE/synthvid``, else ``$XDG_CACHE_HOME/reidzoo/synthvid``, else ``~/.cache/reidzoo/synthvid``."""
    base = os.environ.get('REIDZOO_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'reidzoo')
    return os.path.join(base, 'synthvid')


def build_synthvid(
        root: Optional[str | os.PathLike] = None,
        layout: str = 'mars',
        num_ids: Optional[int] = None,
        seed: int = 0,
        frame_size: Sequence[int] = (64, 32),
        lengths: Optional[Sequence[float]] = None,
        **parser_kwargs: Any,
):
    """SynthVID as a parsed dataset, generating it first if needed.

    Args:
        root: Folder of the data. ``None``: ``<cache>/<layout>-<hash of the parameters>`` (see
            :func:`synthvid_cache_dir`). An empty or missing folder is generated; a generated one is reused if its
            parameters match.
        layout, num_ids, seed, frame_size, lengths: See :func:`generate`.
        **parser_kwargs: Passed to the layout's parser (e.g. ``split_id=3`` for ``ilidsvid``/``prid2011``).

    Returns:
        The layout parser's dataset, with ``name='synthvid'``, ``layout`` and ``default_protocol``
        ``'synthvid_standard'`` (the parser's own is kept as ``layout_protocol``).
    """
    params = _params(layout, num_ids, seed, frame_size, lengths)
    if root is None:
        root = os.path.join(synthvid_cache_dir(), f'{layout}-{_params_hash(params)}')
    root = os.path.abspath(os.fspath(root))
    _remove_stale_tmp(root)
    marker = os.path.join(root, MARKER)
    if os.path.isfile(marker):
        with open(marker) as f:
            found = json.load(f)['params']
        if found != params:
            raise ValueError(f'{root} holds SynthVID generated with {found}, not the requested {params}; '
                             'pass a different root (or root=None to use the cache).')
    else:
        generate(root, **{k: params[k] for k in ('layout', 'num_ids', 'seed', 'frame_size')},
                 lengths=params['lengths'])
    from .dataset import build_dataset
    dataset = build_dataset(layout, root, **parser_kwargs)
    dataset.layout_protocol = dataset.default_protocol
    dataset.default_protocol = 'synthvid_standard'
    dataset.name = 'synthvid'
    dataset.layout = layout
    return dataset


# --------------------------------------------------------------------------------------------------------------------
# A colour-histogram baseline (what a trained model must clearly beat)
# --------------------------------------------------------------------------------------------------------------------
def _tracklet_histogram(frames: Sequence[str], bins: int, max_frames: int) -> np.ndarray:
    from .io import load_frame
    pick = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    hist = np.zeros(bins ** 3, np.float64)
    for i in pick:
        q = (np.asarray(load_frame(frames[i]), np.int64) * bins) // 256
        h = np.bincount(((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).ravel(), minlength=bins ** 3)
        hist += h / h.sum()
    return hist / len(pick)


def colour_histogram_baseline(dataset, bins: int = 8, max_frames: int = 8) -> dict[str, Any]:
    """Match tracklets by their average per-frame RGB histogram (no learning).

    Each tracklet is the mean of the L1-normalised ``bins**3`` joint RGB histograms of up to ``max_frames`` evenly
    spaced frames; distance is the Hellinger distance. Ranking follows the Market-1501/MARS rule (same pid and camera
    removed, queries without a positive skipped) with ``reidzoo.eval.evaluate_rank``.

    Returns:
        ``{'rank1', 'rank5', 'mAP', 'cmc', 'num_valid_queries'}``.
    """
    q = np.stack([_tracklet_histogram(t.frames, bins, max_frames) for t in dataset.query])
    g = np.stack([_tracklet_histogram(t.frames, bins, max_frames) for t in dataset.gallery])
    q, g = np.sqrt(q), np.sqrt(g)
    dist = np.sqrt(np.maximum((q ** 2).sum(1)[:, None] + (g ** 2).sum(1)[None] - 2 * q @ g.T, 0)) / np.sqrt(2)
    q_pids, g_pids = (np.asarray([t.pid for t in s]) for s in (dataset.query, dataset.gallery))
    q_cams, g_cams = (np.asarray([t.camid for t in s]) for s in (dataset.query, dataset.gallery))
    from ..eval import evaluate_rank
    r = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    result = {'cmc': np.asarray(r.cmc).tolist(), 'mAP': float(r.mAP), 'num_valid_queries': int(r.num_valid_queries)}
    cmc = result['cmc']
    return {'rank1': float(cmc[0]), 'rank5': float(cmc[min(4, len(cmc) - 1)]), **result}
