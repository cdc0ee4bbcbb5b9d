"""Clip transforms: spatial augmentation drawn once per clip, so every frame of a clip gets the same flip/crop/erase.

SINet (baist/SINet ``transforms/spatial_transforms.py``) calls ``randomize_parameters()`` once per clip, so its flip
and erasing decisions are shared by the clip's frames; COSAM/Video-Person-ReID applies torchvision transforms per
frame, so their flips and crops are *not* consistent within a clip. reidzoo always draws once per clip: a clip whose
frames are flipped independently shows a person jumping left and right, which no temporal model should learn.

Pipeline (train): [Random2DTranslation | resize] -> horizontal flip -> to float in [0, 1] -> normalise (cfg mean/std)
-> random erasing. Test: resize -> normalise. Resizing uses PIL (as every reference does) with the cfg's
``interpolation`` (SINet: bicubic, COSAM: bilinear).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
from ..spec.model_cfg import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from PIL import Image

__all__ = ['ClipTransform', 'build_clip_transform', 'SINET_ERASE_VALUE']

# SINet's RandomErasing fill; it is applied *after* normalisation there, so these are normalised-space values
SINET_ERASE_VALUE = (0.4914, 0.4822, 0.4465)

_PIL_INTERPOLATION = {
    'bicubic': Image.Resampling.BICUBIC, 'bilinear': Image.Resampling.BILINEAR,
    'nearest': Image.Resampling.NEAREST, 'lanczos': Image.Resampling.LANCZOS, 'box': Image.Resampling.BOX,
}


def _uniform(generator: Optional[torch.Generator], low: float = 0., high: float = 1.) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


class ClipTransform:
    """Turns a list of PIL frames into a normalised ``(T, 3, H, W)`` float tensor, with per-clip random parameters.

    Args:
        size: Output ``(H, W)``.
        mean: Per-channel mean for normalisation.
        std: Per-channel std for normalisation.
        interpolation: PIL resampling name (``'bicubic'``, ``'bilinear'``, ...).
        train: Enable the random augmentations below; ``False`` gives resize + normalise only.
        hflip_prob: Probability of flipping the whole clip horizontally.
        translate_prob: Probability of torchreid/COSAM ``Random2DTranslation``: resize to ``translate_scale`` x the
            output size, then crop an ``(H, W)`` window at a random offset (shared by all frames).
        translate_scale: Up-scaling factor of the translation (1.125 in torchreid/COSAM).
        erase_prob: Probability of random erasing (Zhong et al.; SINet p=0.5).
        erase_area: Range of the erased area as a fraction of the frame.
        erase_min_aspect: Minimum aspect ratio ``r1`` of the erased rectangle (range ``[r1, 1/r1]``).
        erase_value: Per-channel fill, applied after normalisation as in SINet.
    """

    def __init__(
            self,
            size: Sequence[int],
            mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
            std: Sequence[float] = IMAGENET_DEFAULT_STD,
            interpolation: str = 'bicubic',
            train: bool = False,
            hflip_prob: float = 0.5,
            translate_prob: float = 0.,
            translate_scale: float = 1.125,
            erase_prob: float = 0.5,
            erase_area: tuple[float, float] = (0.02, 0.4),
            erase_min_aspect: float = 0.3,
            erase_value: Sequence[float] = SINET_ERASE_VALUE,
    ):
        if len(size) != 2:
            raise ValueError(f'size must be (H, W), got {tuple(size)}.')
        if interpolation not in _PIL_INTERPOLATION:
            raise ValueError(f'Unknown interpolation {interpolation!r}; expected one of {sorted(_PIL_INTERPOLATION)}.')
        for name, p in (('hflip_prob', hflip_prob), ('translate_prob', translate_prob), ('erase_prob', erase_prob)):
            if not 0. <= p <= 1.:
                raise ValueError(f'{name} must be in [0, 1], got {p}.')
        self.size = (int(size[0]), int(size[1]))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.interpolation = interpolation
        self.train = train
        self.hflip_prob = hflip_prob
        self.translate_prob = translate_prob
        self.translate_scale = translate_scale
        self.erase_prob = erase_prob
        self.erase_area = erase_area
        self.erase_min_aspect = erase_min_aspect
        self.erase_value = torch.tensor(erase_value, dtype=torch.float32).view(3, 1, 1)

    def __repr__(self) -> str:
        aug = (f', hflip_prob={self.hflip_prob}, translate_prob={self.translate_prob}, erase_prob={self.erase_prob}'
               if self.train else '')
        return f'{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r}, train={self.train}{aug})'

    def _resize(self, frames: Sequence[Image.Image], hw: tuple[int, int]) -> torch.Tensor:
        resample = _PIL_INTERPOLATION[self.interpolation]
        arrays = [np.asarray(f.convert('RGB').resize((hw[1], hw[0]), resample)) for f in frames]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (T, 3, h, w) uint8

    def _erase_box(self, generator: Optional[torch.Generator]) -> Optional[tuple[int, int, int, int]]:
        height, width = self.size
        for _ in range(100):  # Zhong et al.: retry until the rectangle fits
            area = _uniform(generator, *self.erase_area) * height * width
            aspect = _uniform(generator, self.erase_min_aspect, 1. / self.erase_min_aspect)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if h < height and w < width:
                top = int(round(_uniform(generator) * (height - h)))
                left = int(round(_uniform(generator) * (width - w)))
                return top, left, h, w
        return None

    def __call__(self, frames: Sequence[Image.Image], generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Transform one clip.

        Args:
            frames: The clip's frames (PIL images, any size).
            generator: Source of the clip's random parameters; ``None`` uses torch's global generator.

        Returns:
            float32 tensor ``(T, 3, H, W)``.
        """
        if len(frames) == 0:
            raise ValueError('Cannot transform an empty clip (0 frames).')
        height, width = self.size
        if self.train and self.translate_prob > 0 and _uniform(generator) < self.translate_prob:
            big = (int(round(height * self.translate_scale)), int(round(width * self.translate_scale)))
            top = int(round(_uniform(generator, 0, big[0] - height)))
            left = int(round(_uniform(generator, 0, big[1] - width)))
            clip = self._resize(frames, big)[:, :, top:top + height, left:left + width]
        else:
            clip = self._resize(frames, self.size)
        if self.train and self.hflip_prob > 0 and _uniform(generator) < self.hflip_prob:
            clip = clip.flip(-1)
        clip = (clip.float().div_(255.) - self.mean) / self.std
        if self.train and self.erase_prob > 0 and _uniform(generator) < self.erase_prob:
            box = self._erase_box(generator)
            if box is not None:
                top, left, h, w = box
                clip[:, :, top:top + h, left:left + w] = self.erase_value
        return clip.contiguous()


_AUG_KEYS = ('hflip_prob', 'translate_prob', 'translate_scale', 'erase_prob', 'erase_area', 'erase_min_aspect',
             'erase_value', 'interpolation')


def build_clip_transform(pretrained_cfg: dict[str, Any], train: bool, **aug_overrides: Any) -> ClipTransform:
    """Build the clip transform a model expects, from its ``pretrained_cfg``.

    Reads ``input_size`` ``(3, H, W)``, ``mean``, ``std`` and ``interpolation`` (default ``'bicubic'``) from the cfg.
    Train-time augmentation defaults to SINet's recipe (flip 0.5, random erasing 0.5 after normalisation, no
    translation); a cfg may carry a ``train_aug`` dict, and keyword overrides win over both, e.g. COSAM's recipe is
    ``translate_prob=0.5, erase_prob=0., interpolation='bilinear'``.

    Args:
        pretrained_cfg: The model's ``pretrained_cfg`` (or any dict with the keys above).
        train: Training (random, per clip) or evaluation (deterministic) transform.
        **aug_overrides: Any of ``hflip_prob``, ``translate_prob``, ``translate_scale``, ``erase_prob``,
            ``erase_area``, ``erase_min_aspect``, ``erase_value``, ``interpolation``.
    """
    unknown = set(aug_overrides) - set(_AUG_KEYS)
    if unknown:
        raise TypeError(f'Unknown augmentation option(s) {sorted(unknown)}; expected some of {list(_AUG_KEYS)}.')
    input_size = tuple(pretrained_cfg.get('input_size', (3, 256, 128)))
    if len(input_size) != 3 or input_size[0] != 3:
        raise ValueError(f"pretrained_cfg['input_size'] must be (3, H, W), got {input_size}.")
    kwargs: dict[str, Any] = {'interpolation': pretrained_cfg.get('interpolation', 'bicubic')}
    kwargs.update(pretrained_cfg.get('train_aug', {}) if train else {})
    kwargs.update(aug_overrides)
    return ClipTransform(
        input_size[1:], mean=pretrained_cfg.get('mean', IMAGENET_DEFAULT_MEAN), std=pretrained_cfg.get('std', IMAGENET_DEFAULT_STD),
        train=train, **kwargs)
