"""Tracklet embeddings with each model's own test-time sampling.

A tracklet's embedding is the mean of the embeddings of its test clips (``model.pretrained_cfg['test_sampling']``:
SINet's interleaved all-frames clips, COSAM's dense 4-frame chunks, one all-frames sequence for STMP/STA, ...).
Clips of several tracklets are batched together, so short tracklets do not waste a forward pass each; ``'all'``
sampling (one variable-length clip per tracklet) runs one tracklet per forward.

``reidzoo extract MODEL DIR [DIR ...] --out FILE`` embeds your own tracklets (one folder of frames each).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .._atomic import atomic_write
from ..data.dataset import list_frames as _list_frames
from ..data.transforms import build_clip_transform
from ..data.video_dataset import TrackletClipsDataset, collate_tracklet_clips
from ..models import create_model
from ..spec.model_cfg import DEFAULT_DISTANCE, DEFAULT_TEST_SAMPLING

__all__ = ['extract_features', 'extract', 'list_frames']

FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


# a frame name carrying its tracklet's camera: MARS ``0001C1T0001F001.jpg``, DukeMTMC ``0001_C1_F0001_X....jpg``
_CAMERA_IN_NAME = re.compile(r'^(?P<pid>-?\d+)_?C(?P<cam>\d+)(?:T(?P<track>\d+))?_?F\d+', re.IGNORECASE)


def list_frames(folder: Union[str, Path]) -> tuple[str, ...]:
    """The frame files of a one-tracklet folder, sorted numerically (``f2`` before ``f10``).

    Raises:
        NotADirectoryError: ``folder`` is a file.
        ValueError: the folder holds frames of several tracklets (e.g. a MARS ``bbox_test/0001`` identity folder,
            whose file names carry different cameras / tracklet numbers): averaging them would be meaningless.
        reidzoo.data.dataset.DatasetError: the folder is missing or holds no frames.
    """
    path = Path(folder)
    if path.is_file():
        raise NotADirectoryError(f'{path} is a file; reidzoo extract takes folders of frames, one tracklet each')
    if path.is_dir() and not any(f.suffix.lower() in FRAME_SUFFIXES for f in path.iterdir() if f.is_file()):
        subdirs = sorted(d.name for d in path.iterdir() if d.is_dir())
        if subdirs:
            raise ValueError(f'{path} holds no frames but {len(subdirs)} sub-folders ({", ".join(subdirs[:3])}'
                             f'{", ..." if len(subdirs) > 3 else ""}); pass the tracklet folders themselves, '
                             f'e.g. {path}/*')
    frames = _list_frames(str(folder), FRAME_SUFFIXES)
    groups = {m.group('pid', 'cam', 'track') for m in map(_CAMERA_IN_NAME.match, (Path(f).name for f in frames))
              if m}
    if len(groups) > 1:
        shown = ', '.join(f'pid {p} camera {c}' + (f' tracklet {t}' if t else '') for p, c, t in sorted(groups)[:4])
        more = ', ...' if len(groups) > 4 else ''
        raise ValueError(
            f'{path} mixes frames of {len(groups)} tracklets by their names ({shown}{more}); this looks like a '
            'MARS/DukeMTMC identity folder. Embed each tracklet separately (one folder per tracklet), or evaluate '
            'the whole dataset with reidzoo benchmark --dataset mars --root ...')
    return frames


def _as_tracklets(tracklets: Sequence[Any]) -> list[Any]:
    """Tracklets as ``(frames, pid, camid)`` tuples; bare frame lists (user folders) get pid/camid -1."""
    return [t if hasattr(t, 'frames') else (tuple(t), -1, -1) for t in tracklets]


@torch.no_grad()
def extract_features(
        model: nn.Module,
        tracklets: Sequence[Any],
        *,
        test_sampling: Optional[str] = None,
        seq_len: Optional[int] = None,
        batch_size: int = 32,
        num_workers: int = 0,
        device: Union[str, torch.device, None] = None,
        amp: Optional[bool] = None,
        channels_last: Optional[bool] = None,
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
) -> torch.Tensor:
    """Embed tracklets with the model's own test sampling.

    Args:
        model: a reidzoo model (its ``pretrained_cfg`` gives sampling, clip length and preprocessing).
        tracklets: ``Tracklet`` objects or sequences of frame paths.
        test_sampling: override ``pretrained_cfg['test_sampling']``.
        seq_len: override ``pretrained_cfg['num_frames']`` (frames per clip).
        batch_size: clips per forward pass (``'all'`` sampling uses one tracklet per pass); must be >= 1.
        device: defaults to the model's device (its first parameter's, else its ``device`` attribute, else CPU).
        amp: autocast (bfloat16 on CPU, float16 on CUDA); default on for CUDA.
        channels_last: default on for CUDA.
        progress: show a tqdm bar.
        rank, world_size: embed only tracklets ``rank::world_size`` (sharded extraction under ``torchrun``).

    ``model`` may be any callable mapping a ``(B, T, 3, H, W)`` clip batch to ``(B, D)`` embeddings with a
    ``pretrained_cfg``; one without parameters (an ONNX Runtime wrapper) gives its input dtype as a ``dtype``
    attribute (default float32).

    Returns:
        ``(N, D)`` float32 embeddings on the CPU in input order (the shard's order when sharded).

    Raises:
        FloatingPointError: an embedding is NaN or infinite (names the tracklets, the model and its dtype).
    """
    if int(batch_size) < 1:
        raise ValueError(f'batch_size must be a positive number of clips per forward pass, got {batch_size}')
    cfg = model.pretrained_cfg
    test_sampling = test_sampling or cfg.get('test_sampling') or DEFAULT_TEST_SAMPLING
    seq_len = seq_len or getattr(model, 'num_frames', None) or cfg.get('num_frames', 4)
    params = list(model.parameters()) if hasattr(model, 'parameters') else []
    is_module = isinstance(model, nn.Module)
    # a model without parameters (an ONNX Runtime wrapper) says where it runs through attributes, else the CPU
    if device is None:
        device = params[0].device if params else getattr(model, 'device', 'cpu')
    device = torch.device(device)
    amp = device.type == 'cuda' if amp is None else amp
    channels_last = device.type == 'cuda' and is_module if channels_last is None else channels_last
    tracklets = _as_tracklets(tracklets)[rank::world_size]
    dataset = TrackletClipsDataset(tracklets, test_sampling, seq_len, build_clip_transform(cfg, train=False))
    per_batch = 1 if test_sampling == 'all' else max(1, batch_size // 8)
    loader = DataLoader(dataset, batch_size=per_batch, num_workers=num_workers, collate_fn=collate_tracklet_clips,
                        pin_memory=device.type == 'cuda')
    was_training = model.training if is_module else False
    if is_module:
        model.eval().to(device)
        if channels_last:  # NHWC weights make cuDNN pick NHWC kernels; activations follow from the first conv
            model.to(memory_format=torch.channels_last)
    dtype = params[0].dtype if params else getattr(model, 'dtype', torch.float32)
    sums: Optional[torch.Tensor] = None
    counts = torch.zeros(len(dataset), dtype=torch.float64)
    bar = tqdm(total=len(dataset), desc='extract', unit='tracklet', disable=not progress)
    try:
        for clips, owner in loader:
            for start in range(0, clips.shape[0], batch_size):
                chunk = clips[start:start + batch_size].to(device, dtype=dtype, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16 if device.type == 'cpu' else torch.float16,
                                    enabled=amp):
                    emb = torch.as_tensor(model(chunk)).float().cpu().double()
                idx = owner[start:start + batch_size]
                _check_finite(emb, idx, tracklets, model, dtype, amp, device)
                if sums is None:
                    sums = torch.zeros(len(dataset), emb.shape[1], dtype=torch.float64)
                sums.index_add_(0, idx, emb)
                counts.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
            bar.update(int(owner.unique().numel()))
    finally:
        bar.close()
        if is_module:
            model.train(was_training)
    if sums is None:
        return torch.zeros(0, getattr(model, 'num_features', 0))
    return (sums / counts[:, None]).float()


def _check_finite(emb: torch.Tensor, owner: torch.Tensor, tracklets: Sequence[Any], model: Any, dtype: torch.dtype,
                  amp: bool, device: torch.device) -> None:
    """Stop at the first NaN / inf embedding: downstream it would silently reorder rankings (a NaN distance sorts
    last, which can push a negative out of the way and inflate mAP)."""
    bad = ~torch.isfinite(emb).all(1)
    if not bool(bad.any()):
        return
    names = []
    for i in dict.fromkeys(owner[bad].tolist()):
        frames = tracklets[i][0] if not hasattr(tracklets[i], 'frames') else tracklets[i].frames
        names.append(str(Path(frames[0]).parent) if len(frames) else f'tracklet #{i}')
    arch = getattr(model, 'pretrained_cfg', {}).get('architecture') or type(model).__name__
    advice = ('float16 overflows in these models: run the model in float32 (model.float()), or in bfloat16 autocast '
              '(amp=True on CPU)' if dtype == torch.float16 else
              'check the weights and the input frames (a model trained to NaN, or frames that do not decode)')
    raise FloatingPointError(
        f'{arch} ({dtype}{", autocast" if amp else ""}, on {device}) gave non-finite embeddings for '
        f'{len(names)} tracklet(s): {", ".join(names[:5])}{", ..." if len(names) > 5 else ""}. {advice}.')


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, 'wb') as f:  # a file object: np.save would append '.npy' to the temp file's name
        np.save(f, array, allow_pickle=False)


def extract(
        model: Union[str, nn.Module],
        tracklet_dirs: Sequence[Union[str, Path]],
        out: Union[str, Path],
        *,
        pretrained: bool = True,
        **kwargs: Any,
) -> Path:
    """Embed folders of frames (one tracklet each) and write ``out``.

    ``out`` ending in ``.safetensors`` holds tensor ``embeddings (N, D)`` with the tracklet names and model
    cfg in its metadata; ``.npy`` writes the array and a ``<out>.json`` with the names. Writes are atomic.
    """
    if isinstance(model, str):
        model = create_model(model, pretrained=pretrained)
    dirs = [Path(d) for d in tracklet_dirs]
    feats = extract_features(model, [list_frames(d) for d in dirs], **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [str(d) for d in dirs]
    cfg = model.pretrained_cfg
    meta = {'tracklets': names, 'architecture': cfg.get('architecture', ''), 'tag': cfg.get('tag', ''),
            'test_sampling': kwargs.get('test_sampling') or cfg.get('test_sampling') or DEFAULT_TEST_SAMPLING,
            'distance': cfg.get('distance') or DEFAULT_DISTANCE}
    if out.suffix == '.npy':
        atomic_write(out, lambda p: _save_npy(p, feats.numpy()))
        side = out.with_suffix('.json')
        atomic_write(side, lambda p: p.write_text(json.dumps(meta, indent=1)))
    else:
        atomic_write(out, lambda p: save_file({'embeddings': feats.contiguous()}, str(p),
                                              metadata={'reidzoo': json.dumps(meta)}))
    return out
