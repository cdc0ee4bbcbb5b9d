"""SynthVID's renderer: who the synthetic people are, what the cameras do, and how a tracklet's frames are drawn.

Every identity is an appearance (shirt and trouser colours from a shared palette, shirt pattern, sleeves, shorts,
hair, an accessory: backpack, handbag or hat; body height and build) rendered as a walking figure (legs and arms swing
with the gait phase) seen by several cameras. Cameras differ in background, colour cast, gamma, saturation, noise and
blur; tracklets add detector jitter (per-frame box shift/scale, occasional bad boxes), a front/back/side view that
changes what is visible (a backpack hides the shirt from behind), and partial occlusions (poles the walker passes,
low obstacles). Identities share palette colours and cameras share nothing, so a per-frame colour histogram is a
clearly imperfect matcher while a trained model can learn the identities.

Everything here is a pure function of its seeds: :meth:`Identity.sample` and :meth:`Camera.sample` draw from
``numpy.random.default_rng([seed, ...])`` streams of their own, so the same person looks the same in every layout,
frame size and video written from the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ['PALETTE', 'PATTERNS', 'ACCESSORIES', 'Identity', 'Camera', 'render_tracklet']

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
