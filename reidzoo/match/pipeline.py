"""``reidzoo match``: per-camera videos + any tracker's MOT tracks -> global identities across cameras.

    >>> from reidzoo.match import match
    >>> r = match('tp_resnet50.synthvid', tracks=['cam1.txt', 'cam2.txt'], videos=['cam1.mp4', 'cam2.mp4'],
    ...           out='out/match')
    >>> r.identities[0]['appearances']

Steps: read each camera's tracks (:mod:`.tracks`), filter them and crop the chosen boxes in one streaming decode
(:mod:`.tracklets`, :mod:`.video`), embed every tracklet with the model's own test sampling
(:func:`reidzoo.eval.extract.extract_features`), cluster the tracklets into identities under the same-camera
cannot-link constraint in the model's metric (:mod:`.associate`), and write the per-camera tracks with global ids,
``identities.json``, a contact sheet and ``index.html`` (:mod:`.report`) into a temporary folder that is renamed to
the output folder only when everything is written.

Two baselines use the same pipeline: ``'histogram'`` (a tracklet's colour histogram instead of a learned embedding)
and ``'none'`` (no association: every track its own identity).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from .._atomic import atomic_write_text, replace_dir
from ..data.synthvid import (
    GENERATOR_VERSION, build_synthvid, colour_histogram_features, synthvid_cache_dir,
)
from ..eval.distance import compute_distance
from ..eval.extract import extract_features
from ..models import create_model
from ..spec.model_cfg import DEFAULT_DISTANCE
from .associate import associate, calibrate_threshold, cannot_link_matrix
from .report import write_report
from .tracklets import MatchWarning, TrackletFilter, TrackletInfo, build_tracklets
from .tracks import Detection, read_mot, write_mot
from .video import FrameSource, open_source

__all__ = ['CameraData', 'MatchResult', 'BASELINES', 'prepare_cameras', 'embed',
           'default_threshold', 'associate_cameras', 'write_outputs', 'match']

PathLike = Union[str, os.PathLike]
BASELINES = ('histogram', 'none')
# SynthVID data the default thresholds are calibrated on: the test identities of the MARS-layout default (never seen
# in training by the *_synthvid recipes, which train on the other half)
CALIBRATION_DATA = {'layout': 'mars', 'num_ids': 48, 'seed': 0, 'frame_size': (64, 32)}
CALIBRATION_FRAMES = 8  # frames per calibration tracklet, evenly spaced (keeps calibration of big models short)


@dataclass
class CameraData:
    """One camera: its frame source, tracks and the tracklets kept after filtering."""
    name: str
    source: str
    tracks_path: str
    rows: list[Detection]
    tracklets: list[TrackletInfo]
    dropped: dict[int, str]


@dataclass
class MatchResult:
    """What :func:`match` wrote and measured."""
    out_dir: Path
    identities: list[dict[str, Any]]
    method: str
    metric: str
    threshold: Optional[float]
    num_tracklets: int
    seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# Tracklets
# ---------------------------------------------------------------------------------------------------------------------
def prepare_cameras(
        tracks: Sequence[PathLike],
        crop_dir: PathLike,
        *,
        videos: Optional[Sequence[PathLike]] = None,
        frames: Optional[Sequence[PathLike]] = None,
        filters: TrackletFilter = TrackletFilter(),
        crop_size: Optional[tuple[int, int]] = None,
        crop_format: str = '.bmp',
        progress: bool = True,
) -> list[CameraData]:
    """Read, check and filter every camera's tracks, then decode each video once and crop the chosen boxes.

    Every tracks file is parsed and every video opened before the first one is decoded, so a bad input fails fast.
    A camera whose tracks yield no usable tracklet is kept (its output file is empty) with a :class:`MatchWarning`.
    """
    if (videos is None) == (frames is None):
        raise ValueError('Give the cameras either as videos or as frame folders (--videos or --frames), not both.')
    sources_in = list(videos if videos is not None else frames)
    tracks = [os.fspath(t) for t in tracks]
    if len(sources_in) != len(tracks):
        kind = 'videos' if videos is not None else 'frame folders'
        raise ValueError(f'Got {len(sources_in)} {kind} but {len(tracks)} tracks files; give one tracks file per '
                         'camera, in the same order.')
    if not tracks:
        raise ValueError('No camera given: pass at least one video (or frame folder) and its tracks file.')
    sources: list[FrameSource] = [open_source(s) for s in sources_in]
    names = [s.stem for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f'Several cameras are named {dupes} (the output file is <name>.txt); rename the videos or '
                         'frame folders so that their names differ.')
    rows = [read_mot(t) for t in tracks]
    cameras = []
    for camid, (source, path, cam_rows) in enumerate(zip(sources, tracks, rows)):
        infos, dropped = build_tracklets(source, cam_rows, camid, Path(crop_dir) / source.stem, tracks_path=path,
                                         filters=filters, crop_size=crop_size, crop_format=crop_format,
                                         progress=progress)
        if not infos:
            warnings.warn(f'Camera {source.stem} ({path}): none of its {len(dropped)} tracks passed the quality '
                          f'filters ({filters}); it gets no identity. Lower --min-length / --min-height if its '
                          'people are small or briefly seen.', MatchWarning, stacklevel=2)
        cameras.append(CameraData(source.stem, source.path, path, cam_rows, infos, dropped))
    if not any(c.tracklets for c in cameras):
        raise ValueError('No camera has a usable tracklet after filtering; nothing to match. Check the tracks files '
                         'or lower --min-length / --min-height.')
    return cameras


# ---------------------------------------------------------------------------------------------------------------------
# Embeddings and thresholds
# ---------------------------------------------------------------------------------------------------------------------
def embed(method: Union[nn.Module, str], tracklets: Sequence[Any], *, progress: bool = True,
          **extract_kwargs: Any) -> tuple[torch.Tensor, str]:
    """Embeddings ``(N, D)`` of tracklets and the metric to compare them with.

    ``method`` is a reidzoo model (its own test sampling and ``pretrained_cfg['distance']``) or ``'histogram'``.
    """
    if isinstance(method, str):
        if method != 'histogram':
            raise ValueError(f"embed() takes a model or 'histogram', got {method!r}")
        # the same features as SynthVID's reference matcher; Euclidean on square roots ranks as the Hellinger distance
        return torch.from_numpy(colour_histogram_features(tracklets)).float(), 'euclidean'
    feats = extract_features(method, tracklets, progress=progress, **extract_kwargs)
    return feats, method.pretrained_cfg.get('distance') or DEFAULT_DISTANCE


def _calibration_tracklets(max_frames: int = CALIBRATION_FRAMES) -> tuple[list[Any], np.ndarray]:
    ds = build_synthvid(**CALIBRATION_DATA)
    tracklets = [t for t in (*ds.query, *ds.gallery) if t.pid > 0]  # labelled test identities only
    seen, unique = set(), []
    for t in tracklets:  # MARS-style galleries repeat the queries
        if t.frames not in seen:
            seen.add(t.frames)
            idx = np.unique(np.linspace(0, len(t.frames) - 1, min(max_frames, len(t.frames))).round().astype(int))
            unique.append(t._replace(frames=tuple(t.frames[i] for i in idx)))
    return unique, np.asarray([t.pid for t in unique])


def _threshold_cache() -> Path:
    return Path(synthvid_cache_dir()).parent / 'match_thresholds.json'


def _weights_key(method: Union[nn.Module, str]) -> Optional[str]:
    # the calibration data is part of the key: a new generator version or calibration set recalibrates
    data = f"synthvid-v{GENERATOR_VERSION}:{json.dumps(CALIBRATION_DATA, sort_keys=True)}:{CALIBRATION_FRAMES}"
    if isinstance(method, str):
        return f'{method}|{data}'
    cfg = method.pretrained_cfg
    if cfg.get('sha256'):
        return f"{cfg.get('architecture', '')}:{cfg['sha256']}|{data}"
    return None  # random or in-memory weights: nothing stable to key a cache on


def default_threshold(method: Union[nn.Module, str], *, progress: bool = True,
                      **extract_kwargs: Any) -> tuple[float, dict[str, Any]]:
    """The association threshold calibrated for ``method`` on generated data with known identities.

    The tracklets of the labelled test identities of SynthVID's MARS-layout default (24 identities seen by 2-4 of
    6 cameras, never used for training by the ``*_synthvid`` recipes; ``CALIBRATION_FRAMES`` frames each) are
    embedded, and the threshold whose clustering (:func:`associate`) has the best pairwise F1 is kept
    (:func:`calibrate_threshold`). Cached per weights sha256 next to the SynthVID cache. For weights trained on
    another domain, pass a threshold calibrated on your own labelled tracklets instead (``--threshold``).

    Returns:
        ``(threshold, info)`` with ``info = {'f1', 'num_tracklets', 'data', 'cached'}``.
    """
    key = _weights_key(method)
    cache = _threshold_cache()
    if key is not None and cache.is_file():
        try:
            stored = json.loads(cache.read_text()).get(key)
        except (OSError, ValueError):
            stored = None
        if stored:
            return float(stored['threshold']), {**stored, 'cached': True}
    tracklets, pids = _calibration_tracklets()
    feats, metric = embed(method, tracklets, progress=progress, **extract_kwargs)
    dist = compute_distance(feats, feats, metric, dtype=torch.float64).numpy()
    threshold, f1 = calibrate_threshold(dist, pids)
    info = {'threshold': threshold, 'f1': round(f1, 4), 'num_tracklets': len(tracklets),
            'data': f"SynthVID {CALIBRATION_DATA['layout']} test identities, {json.dumps(CALIBRATION_DATA)}",
            'metric': metric}
    if key is not None:
        try:
            table = json.loads(cache.read_text()) if cache.is_file() else {}
        except (OSError, ValueError):
            table = {}
        table[key] = info
        atomic_write_text(cache, json.dumps(table, indent=1))
    return threshold, {**info, 'cached': False}


def associate_cameras(cameras: Sequence[CameraData], method: Union[nn.Module, str], threshold: Optional[float] = None,
                      *, progress: bool = True, **extract_kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Global identity labels (0-based, one per tracklet in camera order) and how they were obtained."""
    infos = [t for c in cameras for t in c.tracklets]
    if isinstance(method, str) and method == 'none':
        return np.arange(len(infos)), {'method': 'none', 'metric': '', 'threshold': None}
    feats, metric = embed(method, [t.tracklet for t in infos], progress=progress, **extract_kwargs)
    info: dict[str, Any] = {'method': method if isinstance(method, str) else
                            method.pretrained_cfg.get('architecture', type(method).__name__), 'metric': metric}
    if threshold is None:
        threshold, calib = default_threshold(method, progress=progress, **extract_kwargs)
        info['calibration'] = calib
    dist = compute_distance(feats, feats, metric, dtype=torch.float64).numpy()
    cannot = cannot_link_matrix([t.tracklet.camid for t in infos], [(t.first_frame, t.last_frame) for t in infos])
    info['threshold'] = float(threshold)
    return associate(dist, float(threshold), cannot), info


# ---------------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------------
def _identities(cameras: Sequence[CameraData], labels: np.ndarray) -> tuple[list[dict[str, Any]], list[dict]]:
    infos = [t for c in cameras for t in c.tracklets]
    groups: dict[int, list[TrackletInfo]] = {}
    for info, lab in zip(infos, labels):
        groups.setdefault(int(lab), []).append(info)
    identities = []
    # global ids 1.. in order of first appearance (camera order, then time), stable across runs
    for gid, members in enumerate(sorted(groups.values(), key=lambda m: min((t.tracklet.camid, t.first_frame)
                                                                            for t in m)), start=1):
        members = sorted(members, key=lambda t: (t.tracklet.camid, t.first_frame))
        identities.append({'id': gid, 'appearances': [
            {'camera': t.camera, 'track_id': t.track_id, 'first_frame': t.first_frame, 'last_frame': t.last_frame,
             'num_boxes': t.num_boxes, 'thumbnail': t.thumbnail} for t in members]})
    dropped = [{'camera': c.name, 'track_id': tid, 'reason': why} for c in cameras for tid, why in c.dropped.items()]
    return identities, dropped


def _out_tmp(out: Path, overwrite: bool) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f'{out} already exists and is not an empty folder; choose another --out or pass '
                              '--overwrite.')
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f'.{out.name}.tmp-{os.getpid()}-', dir=out.parent))




def write_outputs(out_dir: Path, cameras: Sequence[CameraData], labels: np.ndarray, info: dict[str, Any],
                  crop_dir: Optional[Path] = None) -> list[dict[str, Any]]:
    """Write tracks with global ids, ``identities.json``, the contact sheet and ``index.html`` into ``out_dir``
    (a fresh folder; :func:`match` makes the whole folder appear atomically)."""
    identities, dropped = _identities(cameras, labels)
    id_of = {(a['camera'], a['track_id']): ident['id'] for ident in identities for a in ident['appearances']}
    for cam in cameras:
        write_mot(out_dir / f'{cam.name}.txt', cam.rows,
                  {tid: gid for (name, tid), gid in id_of.items() if name == cam.name})
    summary = {k: (f'{v:.4g}' if isinstance(v, float) else v) for k, v in info.items() if k != 'calibration'}
    summary.update(cameras=len(cameras), tracklets=int(len(labels)), identities=len(identities),
                   dropped_tracks=len(dropped))
    write_report(out_dir, identities, summary)
    public = [{**i, 'appearances': [{k: v for k, v in a.items() if k != 'thumbnail'} for a in i['appearances']]}
              for i in identities]
    doc = {'identities': public, 'dropped_tracks': dropped, **info,
           'cameras': [{'name': c.name, 'source': c.source, 'tracks': c.tracks_path, 'tracklets': len(c.tracklets)}
                       for c in cameras]}
    (out_dir / 'identities.json').write_text(json.dumps(doc, indent=1, default=str))
    return identities


def _crop_size(method: Union[nn.Module, str]) -> Optional[tuple[int, int]]:
    if isinstance(method, str):
        return (64, 32) if method == 'histogram' else (16, 8)  # 'none' needs no appearance: tiny crops
    size = getattr(method, 'img_size', None) or method.pretrained_cfg.get('input_size', (3, 256, 128))[1:]
    return (int(size[0]), int(size[1]))


def match(
        model: Union[nn.Module, str],
        tracks: Sequence[PathLike],
        out: PathLike,
        *,
        videos: Optional[Sequence[PathLike]] = None,
        frames: Optional[Sequence[PathLike]] = None,
        threshold: Optional[float] = None,
        filters: TrackletFilter = TrackletFilter(),
        save_crops: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        **extract_kwargs: Any,
) -> MatchResult:
    """Match people across cameras and write the results to ``out`` (see the module docstring).

    Args:
        model: a reidzoo model, a name for :func:`reidzoo.create_model` (``arch.tag``, ``hf-hub:...``,
            ``local-dir:...``; pretrained weights), or a baseline: ``'histogram'`` or ``'none'``.
        tracks: one MOT tracks file per camera, in the order of ``videos``/``frames``.
        out: output folder (must not exist or be empty, unless ``overwrite``).
        videos: one video per camera (anything FFmpeg reads), or
        frames: one folder of frames per camera.
        threshold: association threshold in the model's metric; default calibrated (:func:`default_threshold`).
        filters: tracklet quality filters.
        save_crops: keep the crops in ``out/crops/<camera>/<track id>/``.
        overwrite: replace an existing ``out``.
        progress: tqdm bars for decoding and embedding.
        **extract_kwargs: passed to :func:`reidzoo.eval.extract.extract_features` (``batch_size``, ``device``, ...).
    """
    t0 = time.perf_counter()
    if isinstance(model, str) and model not in BASELINES:
        model = create_model(model, pretrained=True)
    out = Path(out)
    tmp = _out_tmp(out, overwrite)
    work = Path(tempfile.mkdtemp(prefix='reidzoo-match-')) if not save_crops else tmp / 'crops'
    seconds: dict[str, float] = {}
    try:
        cameras = prepare_cameras(tracks, work, videos=videos, frames=frames, filters=filters,
                                  crop_size=_crop_size(model), crop_format='.png' if save_crops else '.bmp',
                                  progress=progress)
        seconds['decode'] = time.perf_counter() - t0
        t1 = time.perf_counter()
        labels, info = associate_cameras(cameras, model, threshold, progress=progress, **extract_kwargs)
        seconds['embed+associate'] = time.perf_counter() - t1
        info['filters'] = asdict(filters)
        identities = write_outputs(tmp, cameras, labels, info)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if not save_crops:
            shutil.rmtree(work, ignore_errors=True)
    seconds['total'] = time.perf_counter() - t0
    for ident in identities:  # the thumbnails lived in the temporary crop folder
        for a in ident['appearances']:
            a.pop('thumbnail', None)
    return MatchResult(out, identities, info['method'], info['metric'], info['threshold'], int(len(labels)), seconds)
