"""Deployment outside PyTorch: ONNX export verified with onnxruntime, and an onnxruntime embedder.

:func:`export_onnx` traces a reidzoo model with the maintained exporter of the installed torch
(``torch.onnx.export(..., dynamo=True)``, built on ``torch.export``) with a dynamic batch axis (and a dynamic frame
axis when the family takes clips of any length and the trace keeps it symbolic), writes the model's cfg into the
ONNX ``metadata_props``, runs the file with onnxruntime at two batch sizes against the eager model, and only then
renames it into place: a file at ``path`` is always a verified one.

:class:`OnnxEmbedder` loads such a file with onnxruntime alone (no torch model is built) and behaves like a model
for :func:`reidzoo.eval.extract.extract_features`: it has ``pretrained_cfg``, ``num_features``, ``eval()``, ``to()``,
``parameters()`` and is called on a ``(B, T, 3, H, W)`` torch tensor.

onnx, onnxruntime and onnxscript are optional (``pip install 'reidzoo[deploy]'``); they are imported when used.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn

from ._atomic import atomic_write
from .version import __version__

__all__ = ['export_onnx', 'trace_program', 'OnnxEmbedder', 'OnnxExportError', 'onnx_metadata', 'DEFAULT_TOLERANCE',
           'CFG_KEYS']

_logger = logging.getLogger(__name__)

#: max |onnxruntime - eager| relative to the eager embedding's largest magnitude, in float32
DEFAULT_TOLERANCE = 1e-5
#: cfg entries written to the ONNX metadata (JSON-encoded values, one metadata key each)
CFG_KEYS = ('architecture', 'mean', 'std', 'input_size', 'num_frames', 'interpolation', 'distance', 'test_sampling',
            'crop_pct', 'tag', 'hf_hub_id', 'revision', 'sha256')
INPUT_NAME, OUTPUT_NAME = 'clips', 'embedding'
_DEPLOY_HINT = "pip install onnx onnxruntime onnxscript (or pip install 'reidzoo[deploy]')"


class OnnxExportError(RuntimeError):
    """A model that could not be exported, or whose exported file disagreed with the eager model."""


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f'ONNX deployment needs the {module!r} package: {_DEPLOY_HINT}.') from e


def _family(model: nn.Module) -> str:
    arch = getattr(model, 'pretrained_cfg', {}).get('architecture')
    return f'{arch} ({type(model).__name__})' if arch else type(model).__name__


def _clip_shape(model: nn.Module, num_frames: Optional[int]) -> tuple[int, int, int, int]:
    """``(T, 3, H, W)``: the cfg's input size and frames, else the model's ``img_size`` / ``num_frames``."""
    cfg = getattr(model, 'pretrained_cfg', {}) or {}
    if 'input_size' in cfg:
        c, h, w = (int(v) for v in cfg['input_size'])
    elif hasattr(model, 'img_size'):
        (h, w), c = model.img_size, 3
    else:
        raise OnnxExportError(f'{_family(model)} has neither pretrained_cfg["input_size"] nor img_size: cannot tell '
                              f'the clip shape to export.')
    t = num_frames or cfg.get('num_frames') or getattr(model, 'num_frames', None)
    if not t:
        raise OnnxExportError(f'{_family(model)} has no num_frames in its cfg: pass num_frames=.')
    supported = getattr(model, 'supported_num_frames', None)
    if supported is not None and t not in supported:
        raise OnnxExportError(f'{_family(model)} takes T in {list(supported)} frames per clip, got num_frames={t}.')
    return int(t), c, h, w


def onnx_metadata(model: nn.Module, num_frames: int, dynamic_frames: bool) -> dict[str, str]:
    """The ONNX ``metadata_props`` of an export: the cfg entries of :data:`CFG_KEYS` (JSON values) plus the graph's
    contract (embedding size, whether the frame axis is dynamic)."""
    cfg = dict(getattr(model, 'pretrained_cfg', {}) or {})
    cfg['num_frames'] = num_frames
    meta = {k: json.dumps(list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()
            if k in CFG_KEYS and v is not None}
    meta.update({
        'num_features': json.dumps(int(getattr(model, 'num_features', 0))),
        'dynamic_frames': json.dumps(bool(dynamic_frames)),
        'input_layout': json.dumps('B,T,3,H,W'),
        'producer': json.dumps(f'reidzoo {__version__}'),
    })
    return meta


def trace_program(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = True,
                  dynamic_frames: bool = False) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` on ``example`` clips with a symbolic batch (and frame) axis.

    Raises whatever ``torch.export`` raises (e.g. ``Constraints violated (frames)`` when the model loops over
    frames in Python).
    """
    shapes: dict[int, Any] = {}
    if dynamic_batch:
        shapes[0] = torch.export.Dim('batch', min=1, max=4096)
    if dynamic_frames:
        shapes[1] = torch.export.Dim('frames', min=2, max=4096)
    return torch.export.export(model, (example,), dynamic_shapes=(shapes,) if shapes else None)


def _to_onnx(program: torch.export.ExportedProgram, opset: Optional[int]):
    kwargs: dict[str, Any] = {} if opset is None else {'opset_version': opset}
    return torch.onnx.export(program, dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                             external_data=False, verbose=False, **kwargs)


def _relative_error(ref: torch.Tensor, out: torch.Tensor) -> float:
    scale = ref.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    return float((ref - out).abs().max() / scale)


def _verify(model: nn.Module, file: Path, shapes: Sequence[tuple[int, ...]], tolerance: float) -> list[float]:
    """Run ``file`` with onnxruntime on seeded clips of each shape; compare with the eager model.

    Passes when ``max |ort - eager| / max |eager| <= tolerance``. Some randomly initialised deep trunks are so
    ill-conditioned that float32 PyTorch itself is further than that from the exact (float64) result; then the
    file passes only if onnxruntime is no further from the float64 result than twice float32 PyTorch is (the
    difference is float32 rounding, not the export), and a warning gives both numbers.
    """
    ort = _require('onnxruntime')
    session = ort.InferenceSession(str(file), providers=['CPUExecutionProvider'])
    ref_param = next(model.parameters())
    errors = []
    exact: Optional[nn.Module] = None
    for i, shape in enumerate(shapes):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            ref = model(x.to(ref_param.device, ref_param.dtype)).float().cpu()
        out = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
        if out.shape != ref.shape:
            raise OnnxExportError(f'{_family(model)}: onnxruntime returned shape {tuple(out.shape)} for input '
                                  f'{tuple(shape)}, eager {tuple(ref.shape)}.')
        err = _relative_error(ref, out)
        if not err <= tolerance:
            if exact is None:
                exact = copy.deepcopy(model).double().cpu()
            with torch.no_grad():
                ref64 = exact(x.double())
            eager_err, ort_err = _relative_error(ref64, ref.double()), _relative_error(ref64, out.double())
            if not ort_err <= 2 * eager_err:
                raise OnnxExportError(
                    f'{_family(model)}: the ONNX graph disagrees with the eager model on input {tuple(shape)}: max '
                    f'abs difference / embedding scale = {err:.2e} > {tolerance:.0e} (onnxruntime vs float64 '
                    f'{ort_err:.1e}, PyTorch float32 vs float64 {eager_err:.1e}). The file was not written.')
            _logger.warning('%s: onnxruntime differs from eager by %.1e (relative) on input %s, but float32 PyTorch '
                            'itself is %.1e from the float64 result (onnxruntime: %.1e): float32 rounding of an '
                            'ill-conditioned model, not an export error.', _family(model), err, tuple(shape),
                            eager_err, ort_err)
        errors.append(err)
    return errors


def export_onnx(
        model: nn.Module,
        path: Union[str, Path],
        *,
        num_frames: Optional[int] = None,
        dynamic_batch: bool = True,
        dynamic_frames: Optional[bool] = None,
        opset: Optional[int] = None,
        tolerance: float = DEFAULT_TOLERANCE,
) -> Path:
    """Export ``model`` (eval mode, float32) to ``path`` as a verified ONNX file with its cfg in the metadata.

    Args:
        model: a reidzoo model (its ``pretrained_cfg`` / ``img_size`` / ``num_frames`` give the clip shape).
        path: the ``.onnx`` file to write (atomically: a temp file next to it, verified, then renamed).
        num_frames: clip length ``T`` of the graph (default: the cfg's ``num_frames``).
        dynamic_batch: make the batch axis dynamic (else the graph takes batch 1).
        dynamic_frames: make the frame axis dynamic; ``None`` (default) does so when the family takes clips of any
            length and keeps the frame count symbolic when traced (STMP's recurrence is unrolled, so its graph takes
            exactly ``num_frames``).
        opset: ONNX opset (default: the exporter's).
        tolerance: max |onnxruntime - eager| / max |eager| accepted at each of the two verification batch sizes.

    Returns:
        ``path``.

    Raises:
        OnnxExportError: the family cannot be traced/exported (the message names it and the exporter's reason), or
            onnxruntime disagrees with the eager model; nothing is written then.
    """
    _require('onnx')
    _require('onnxscript')
    path = Path(path)
    ref = next(model.parameters(), None)
    if ref is None or ref.dtype != torch.float32:
        raise OnnxExportError(f'{_family(model)} has {None if ref is None else ref.dtype} weights: export a float32 '
                              f'model (model.float()); onnxruntime runs it as float32 and can quantise it later.')
    t, c, h, w = _clip_shape(model, num_frames)
    if dynamic_frames is None:
        dynamic_frames = getattr(model, 'supported_num_frames', None) is None
    was_training = model.training
    model.eval()
    example = torch.randn(2 if dynamic_batch else 1, t, c, h, w, generator=torch.Generator().manual_seed(0))
    example = example.to(ref.device)
    try:
        # trace once with torch.export (non-strict, deterministic), then translate that program: onnx.export's own
        # fallbacks (strict / draft export) could otherwise pin a dynamic axis without saying so
        try:
            traced = trace_program(model, example, dynamic_batch, dynamic_frames)
        except Exception as e:  # noqa: BLE001
            if not dynamic_frames or 'frames' not in str(e):
                raise
            # a Python loop over the frames (STMP's recurrence) fixes their count: export for exactly T frames
            _logger.info('%s: the frame axis cannot stay dynamic; exporting for T=%d.', _family(model), t)
            dynamic_frames = False
            traced = trace_program(model, example, dynamic_batch, dynamic_frames)
        program = _to_onnx(traced, opset)
    except Exception as e:  # noqa: BLE001 - any tracing failure gets the family's name and the exporter's reason
        model.train(was_training)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxExportError(f'{_family(model)} cannot be exported to ONNX: {reason}') from e
    program.model.metadata_props.update(onnx_metadata(model, t, dynamic_frames))
    if dynamic_batch:
        shapes = [(1, t, c, h, w), (3, t + 1 if dynamic_frames else t, c, h, w)]
    else:
        shapes = [(1, t, c, h, w)]

    def write(tmp: Path) -> None:
        program.save(tmp, external_data=False)
        errors = _verify(model, tmp, shapes, tolerance)
        _logger.info('%s: onnxruntime matches eager within %.1e (relative) at inputs %s.', _family(model),
                     max(errors), shapes)

    try:
        return atomic_write(path, write)
    finally:
        model.train(was_training)


class OnnxEmbedder:
    """An exported reidzoo model run by onnxruntime, usable where a reidzoo model embeds clips.

    ``embedder(x)`` takes a ``(B, T, 3, H, W)`` float tensor (normalised with ``pretrained_cfg['mean'/'std']``, as
    for the torch model) and returns the ``(B, D)`` float32 embedding as a torch tensor on the CPU. No torch model
    is built: the cfg comes from the file's metadata.

    For :func:`reidzoo.eval.extract.extract_features` it also offers the few model methods that function uses:
    ``eval()`` / ``train(False)``, ``to(device)`` (CPU only), ``parameters()`` (one empty float32 CPU tensor, which
    tells callers the device and dtype the inputs should have) and ``training``.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        providers: onnxruntime execution providers (default ``['CPUExecutionProvider']``).
        intra_op_num_threads: onnxruntime's thread count (default: onnxruntime's).
    """

    def __init__(self, path: Union[str, Path], providers: Optional[Sequence[str]] = None,
                 intra_op_num_threads: Optional[int] = None):
        ort = _require('onnxruntime')
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'ONNX file {self.path} does not exist (write one with `reidzoo export-onnx`).')
        options = ort.SessionOptions()
        if intra_op_num_threads:
            options.intra_op_num_threads = intra_op_num_threads
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=list(providers or ['CPUExecutionProvider']))
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in ('input_size', 'num_frames', 'mean', 'std') if k not in meta]
        if missing:
            raise ValueError(f'{self.path} has no reidzoo cfg in its metadata (missing {missing}): export it with '
                             f'reidzoo.deploy.export_onnx / `reidzoo export-onnx`, which records mean, std, input size '
                             f'and frames.')
        cfg = {k: json.loads(v) for k, v in meta.items()}
        for k in ('input_size', 'mean', 'std'):
            cfg[k] = tuple(cfg[k])
        self.dynamic_frames = bool(cfg.pop('dynamic_frames', False))
        self.num_features = int(cfg.pop('num_features', 0))
        for k in ('input_layout', 'producer'):
            cfg.pop(k, None)
        if not self.dynamic_frames and cfg.get('test_sampling') == 'all':
            # the graph takes exactly num_frames: whole-tracklet clips cannot run, so chunk them as dense clips
            _logger.warning('%s takes exactly %d frames per clip; its model embeds whole tracklets (test_sampling '
                            "'all'): using 'dense' %d-frame clips instead.", self.path, cfg['num_frames'],
                            cfg['num_frames'])
            cfg['test_sampling'] = 'dense'
        self.pretrained_cfg: dict[str, Any] = cfg
        self.img_size = tuple(cfg['input_size'][1:])
        self.num_frames = int(cfg['num_frames'])
        self.training = False
        self._device_probe = torch.empty(0)

    def __repr__(self) -> str:
        return (f'OnnxEmbedder({str(self.path)!r}, architecture={self.pretrained_cfg.get("architecture")!r}, '
                f'providers={self.session.get_providers()})')

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f'{self.path.name} takes clips of shape (B, T, 3, H, W), got {tuple(x.shape)}.')
        _, t, c, h, w = x.shape
        ec, eh, ew = self.pretrained_cfg['input_size']
        if (c, h, w) != (ec, eh, ew) or (not self.dynamic_frames and t != self.num_frames):
            frames = 'T' if self.dynamic_frames else str(self.num_frames)
            raise ValueError(f'{self.path.name} was exported for clips (B, {frames}, {ec}, {eh}, {ew}), got '
                             f'{tuple(x.shape)}: resize the frames / use clips of that length.')
        array = x.detach().to('cpu', torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])

    # --- the model surface extract_features uses -------------------------------------------------------------
    def eval(self) -> 'OnnxEmbedder':
        return self

    def train(self, mode: bool = True) -> 'OnnxEmbedder':
        if mode:
            raise RuntimeError('An ONNX embedder runs inference only: train the torch model instead.')
        return self

    def to(self, *args: Any, **kwargs: Any) -> 'OnnxEmbedder':
        """Accepts the CPU as device (onnxruntime owns placement) and ignores ``memory_format``."""
        device = kwargs.get('device', next((a for a in args if isinstance(a, (str, torch.device))), None))
        if device is not None and torch.device(device).type != 'cpu':
            raise ValueError(f'OnnxEmbedder runs with onnxruntime providers {self.session.get_providers()}: pass '
                             f'device="cpu" (or choose providers=["CUDAExecutionProvider"] when loading).')
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        yield self._device_probe
