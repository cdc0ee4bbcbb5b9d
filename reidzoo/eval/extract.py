"""Tracklet embeddings with each model's own test-time sampling.

A tracklet's embedding is the mean of the embeddings of its test clips (``model.pretrained_cfg['test_sampling']``:
SINet's interleaved all-frames clips, COSAM's dense 4-frame chunks, one all-frames sequence for STMP/STA, ...).
Clips of several tracklets are batched together, so short tracklets do not waste a forward pass each; ``'all'``
sampling (one variable-length clip per tracklet) runs one tracklet per forward.

``reidzoo extract MODEL DIR [DIR ...] --out FILE`` embeds your own tracklets (one folder of frames each).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .._atomic import atomic_write

__all__ = ['extract_features', 'extract', 'list_frames']

FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def list_frames(folder: Union[str, Path]) -> tuple[str, ...]:
    """The frame files of a tracklet folder, sorted numerically (``f2`` before ``f10``); raises if there are none."""
    from ..data.dataset import list_frames as _list_frames
    return _list_frames(str(folder), FRAME_SUFFIXES)


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
        batch_size: clips per forward pass (``'all'`` sampling uses one tracklet per pass).
        device: defaults to the model's device.
        amp: autocast (bfloat16 on CPU, float16 on CUDA); default on for CUDA.
        channels_last: default on for CUDA.
        progress: show a tqdm bar.
        rank, world_size: embed only tracklets ``rank::world_size`` (sharded extraction under ``torchrun``).

    Returns:
        ``(N, D)`` float32 embeddings on the CPU in input order (the shard's order when sharded).
    """
    from tqdm.auto import tqdm
    from ..data.transforms import build_clip_transform
    from ..data.video_dataset import TrackletClipsDataset, collate_tracklet_clips
    cfg = model.pretrained_cfg
    test_sampling = test_sampling or cfg.get('test_sampling', 'dense')
    seq_len = seq_len or cfg.get('num_frames', 4)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    amp = device.type == 'cuda' if amp is None else amp
    channels_last = device.type == 'cuda' if channels_last is None else channels_last
    dataset = TrackletClipsDataset(_as_tracklets(tracklets)[rank::world_size], test_sampling, seq_len,
                                   build_clip_transform(cfg, train=False))
    per_batch = 1 if test_sampling == 'all' else max(1, batch_size // 8)
    loader = DataLoader(dataset, batch_size=per_batch, num_workers=num_workers, collate_fn=collate_tracklet_clips,
                        pin_memory=device.type == 'cuda')
    was_training = model.training
    model.eval().to(device)
    if channels_last:  # NHWC weights make cuDNN pick NHWC kernels; activations follow from the first conv
        model.to(memory_format=torch.channels_last)
    dtype = next(model.parameters()).dtype
    sums: Optional[torch.Tensor] = None
    counts = torch.zeros(len(dataset), dtype=torch.float64)
    bar = tqdm(total=len(dataset), desc='extract', unit='tracklet', disable=not progress)
    try:
        for clips, owner in loader:
            for start in range(0, clips.shape[0], batch_size):
                chunk = clips[start:start + batch_size].to(device, dtype=dtype, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16 if device.type == 'cpu' else torch.float16,
                                    enabled=amp):
                    emb = model(chunk).float().cpu().double()
                if sums is None:
                    sums = torch.zeros(len(dataset), emb.shape[1], dtype=torch.float64)
                idx = owner[start:start + batch_size]
                sums.index_add_(0, idx, emb)
                counts.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
            bar.update(int(owner.unique().numel()))
    finally:
        bar.close()
        model.train(was_training)
    if sums is None:
        return torch.zeros(0, getattr(model, 'num_features', 0))
    return (sums / counts[:, None]).float()


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
    from .. import create_model
    if isinstance(model, str):
        model = create_model(model, pretrained=pretrained)
    dirs = [Path(d) for d in tracklet_dirs]
    feats = extract_features(model, [list_frames(d) for d in dirs], **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [str(d) for d in dirs]
    cfg = model.pretrained_cfg
    meta = {'tracklets': names, 'architecture': cfg.get('architecture', ''), 'tag': cfg.get('tag', ''),
            'test_sampling': kwargs.get('test_sampling') or cfg.get('test_sampling', ''),
            'distance': cfg.get('distance', '')}
    if out.suffix == '.npy':
        atomic_write(out, lambda p: _save_npy(p, feats.numpy()))
        side = out.with_suffix('.json')
        atomic_write(side, lambda p: p.write_text(json.dumps(meta, indent=1)))
    else:
        from safetensors.torch import save_file
        atomic_write(out, lambda p: save_file({'embeddings': feats.contiguous()}, str(p),
                                              metadata={'reidzoo': json.dumps(meta)}))
    return out
