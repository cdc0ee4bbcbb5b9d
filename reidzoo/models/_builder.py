"""Build a model from its cfg and load its weights (``timm.models._builder`` for video re-ID).

The cfg of a built model is merged once, by :func:`reidzoo.spec.model_cfg.merge_model_cfg` (caller > weights >
architecture defaults), and then made to describe the model that was built: ``input_size`` and ``num_frames`` come
from the model's own ``img_size`` / ``num_frames``, ``num_classes`` from its classifier.

Weight sources, in priority order (as timm): ``state_dict`` in the cfg, a local ``file`` (checked against the
``sha256`` / ``num_bytes`` the cfg records, as for a ``local-dir:`` folder), then the Hub (``hf_hub_id`` + pinned
``revision`` + ``filename``, checked against ``sha256`` before loading).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn

from .. import hub
from ..spec.model_cfg import merge_model_cfg
from ._registry import get_arch_default_cfg, get_weights_cfg, split_model_name_tag

__all__ = ['build_model_with_cfg', 'resolve_pretrained_cfg', 'weights_cfg_for', 'load_pretrained', 'load_checkpoint',
           'load_state_dict_checked', 'read_state_dict', 'classifier_prefix', 'StateDictMismatchError']

_logger = logging.getLogger(__name__)

FilterFn = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
# model arguments that are not part of the architecture a saved config.json must rebuild
_NOT_RECORDED = ('num_classes', 'pretrained_backbone')


class StateDictMismatchError(RuntimeError):
    """Weights whose keys or shapes do not match the model."""


def weights_cfg_for(
        variant: str,
        pretrained: bool = False,
        pretrained_cfg: Union[str, dict[str, Any], None] = None,
) -> dict[str, Any]:
    """The weights layer of ``variant``'s cfg: what the weights record, without the architecture defaults.

    ``pretrained_cfg`` as a dict is used as given; as a string it names a tag. Otherwise the tag of ``'arch.tag'``;
    for a bare ``arch`` the first published tag when ``pretrained`` (as timm), and nothing (``{}``) when not: a
    manifest entry never changes what a random-init model is.
    """
    arch, tag = split_model_name_tag(variant)
    if isinstance(pretrained_cfg, dict):
        return dict(pretrained_cfg)
    tag = pretrained_cfg or tag
    if tag:
        return get_weights_cfg(f'{arch}.{tag}')
    return get_weights_cfg(arch) if pretrained else {}


def resolve_pretrained_cfg(
        variant: str,
        pretrained_cfg: Union[str, dict[str, Any], None] = None,
        pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
        pretrained: bool = False,
) -> dict[str, Any]:
    """The cfg of ``variant`` before construction: architecture defaults < weights (see :func:`weights_cfg_for`) <
    ``pretrained_cfg_overlay``."""
    arch, _ = split_model_name_tag(variant)
    return merge_model_cfg(get_arch_default_cfg(arch), weights_cfg_for(variant, pretrained, pretrained_cfg),
                           pretrained_cfg_overlay)


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a reidzoo training checkpoint (``weights_only`` unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Checkpoint {path} does not exist.')
    if path.suffix == '.safetensors':
        return hub.load_safetensors(path)  # refuses non-safetensors bytes; names a truncated file
    ckpt = torch.load(path, map_location='cpu', weights_only=True)  # never an unrestricted unpickle
    for key in ('state_dict_ema', 'model', 'state_dict'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    ckpt = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt.items()}
    return ckpt


def load_state_dict_checked(
        model: nn.Module,
        state_dict: dict[str, torch.Tensor],
        source: str = 'state_dict',
        ignore_prefixes: tuple[str, ...] = (),
) -> None:
    """Strict load with one readable report of missing, unexpected and mis-shaped keys.

    Keys under ``ignore_prefixes`` (a classifier being re-initialised) may be absent or differ in shape.
    """
    own = model.state_dict()
    ignored = lambda k: any(k.startswith(p) for p in ignore_prefixes)  # noqa: E731
    missing = [k for k in own if k not in state_dict and not ignored(k)]
    unexpected = [k for k in state_dict if k not in own and not ignored(k)]
    shape = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
             for k in own if k in state_dict and not ignored(k) and state_dict[k].shape != own[k].shape]
    if missing or unexpected or shape:
        def block(title: str, items: list[str]) -> str:
            if not items:
                return ''
            more = f'\n    ... and {len(items) - 20} more' if len(items) > 20 else ''
            return f'\n  {title} ({len(items)}):\n    ' + '\n    '.join(items[:20]) + more
        raise StateDictMismatchError(
            f'Weights from {source} do not match {type(model).__name__} '
            f'({getattr(model, "pretrained_cfg", {}).get("architecture", "?")}):'
            + block('missing in checkpoint', missing) + block('unexpected in checkpoint', unexpected)
            + block('shape mismatch', shape)
            + '\n  Build the model with the architecture and kwargs the weights were saved with '
              '(see the config.json next to them), or convert authors\' checkpoints with `reidzoo convert`.')
    load = {k: v for k, v in state_dict.items() if not ignored(k) or (k in own and own[k].shape == v.shape)}
    model.load_state_dict(load, strict=False)


def classifier_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the model's classifier (``'classifier.'``), found from ``model.get_classifier()``.

    Every parameter sized by ``num_classes`` lives under it (CSTNet's two FCs ``classifier.0/.3``, STMP's
    ``classifier.fc1/.fc`` and its auxiliary ``classifier.aux_fc``), so the names come from the model itself.
    """
    get_classifier = getattr(model, 'get_classifier', None)
    head = get_classifier() if callable(get_classifier) else None
    if head is not None:
        for name, module in model.named_modules():
            if module is head and name:
                return name + '.'
    return getattr(model, 'pretrained_cfg', {}).get('classifier', 'classifier') + '.'


def _classifier_to_skip(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> tuple[str, ...]:
    """``(prefix,)`` if the weights' classifier does not fit the model's (another class count, or none), else ``()``.

    Only the classifier is then left out (re-initialised when the model has one); everything else loads strictly.
    """
    prefix = classifier_prefix(model)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(prefix)}
    theirs = {k: tuple(v.shape) for k, v in state_dict.items() if k.startswith(prefix)}
    if own == theirs:
        return ()
    _logger.info('Classifier of %s not loaded: the weights have %s, the model (num_classes=%s) %s.', source,
                 _classifier_summary(theirs), getattr(model, 'num_classes', '?'), _classifier_summary(own))
    return (prefix,)


def _classifier_summary(shapes: dict[str, tuple[int, ...]]) -> str:
    return ', '.join(f'{k} {list(v)}' for k, v in sorted(shapes.items())) or 'no classifier'


def load_pretrained(
        model: nn.Module,
        pretrained_cfg: Optional[dict[str, Any]] = None,
        filter_fn: Optional[FilterFn] = None,
        strict: bool = True,
) -> None:
    """Load the weights named by the cfg into ``model``; re-initialise the classifier if its size differs.

    Raises:
        reidzoo.hub.WeightsIntegrityError: a file (Hub download or local) whose size or sha256 differs from the cfg's.
        StateDictMismatchError: weights that do not fit the model (outside the classifier).
    """
    cfg = pretrained_cfg or model.pretrained_cfg
    if cfg.get('state_dict') is not None:
        state_dict, source = cfg['state_dict'], 'pretrained_cfg["state_dict"]'
    elif cfg.get('file'):
        path = Path(cfg['file'])
        if cfg.get('sha256') or cfg.get('num_bytes'):
            hub.verify_weights_file(path, cfg)  # a local-dir: folder is checked exactly as a Hub download
        state_dict, source = read_state_dict(path), str(path)
    elif cfg.get('hf_hub_id'):
        path = hub.download_weights(cfg)
        state_dict, source = hub.load_safetensors(path), f'hf-hub:{cfg["hf_hub_id"]}@{cfg.get("revision")}'
    else:
        arch = cfg.get('architecture', type(model).__name__)
        raise RuntimeError(
            f'No pretrained weights are published for {arch}. Train them with '
            f'`reidzoo train --recipe <recipe for {arch}>`, '
            f'export and push them (`reidzoo export`, `reidzoo push`), then add the printed entry to '
            f'weights_manifest.json or a file in REIDZOO_MANIFESTS; or pass checkpoint_path=... / '
            f'pretrained_cfg_overlay=dict(file=...) for a local file. Use pretrained=False for random init.')
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    _load(model, state_dict, source, _classifier_to_skip(model, state_dict, source), strict)


def _load(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...],
          strict: bool) -> None:
    if strict:
        load_state_dict_checked(model, state_dict, source, ignore_prefixes=ignore)
    else:
        model.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith(ignore)}, strict=False)


def load_checkpoint(model: nn.Module, checkpoint_path: Union[str, Path], strict: bool = True) -> None:
    """Load a local checkpoint (safetensors, or a reidzoo ``.pt``) with the same key report as Hub weights.

    A classifier of another size (or none, or one the model lacks) is left out, as for published weights. The cfg
    then names the file and its sha256, so caches keyed by weights see what was actually loaded.
    """
    source = str(checkpoint_path)
    state_dict = read_state_dict(checkpoint_path)
    _load(model, state_dict, source, _classifier_to_skip(model, state_dict, source), strict)
    cfg = getattr(model, 'pretrained_cfg', None)
    if isinstance(cfg, dict):
        path = Path(checkpoint_path)
        for key in ('hf_hub_id', 'revision', 'filename', 'tag'):
            cfg.pop(key, None)
        cfg.update(file=str(path), sha256=hub.sha256_file(path), num_bytes=path.stat().st_size)


def _size_args(stated: dict[str, Any]) -> dict[str, Any]:
    """``img_size`` / ``num_frames`` model arguments from the ``input_size`` / ``num_frames`` the weights or the
    caller's cfg state, so the model is built for the frames its cfg promises."""
    out: dict[str, Any] = {}
    if stated.get('input_size') is not None:
        out['img_size'] = tuple(int(s) for s in stated['input_size'][1:])
    if stated.get('num_frames') is not None:
        out['num_frames'] = int(stated['num_frames'])
    return out


def build_model_with_cfg(
        model_cls: Callable[..., nn.Module],
        variant: str,
        pretrained: bool = False,
        pretrained_cfg: Union[str, dict[str, Any], None] = None,
        pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
        pretrained_filter_fn: Optional[FilterFn] = None,
        **kwargs,
) -> nn.Module:
    """Construct ``model_cls(**kwargs)``, attach its pretrained cfg, and load weights if ``pretrained``.

    Model arguments: the caller's kwargs, then the ``model_args`` recorded with the weights, then the frame size and
    clip length the weights' (or the overlay's) cfg states. The classifier size comes from, in order: the caller's
    ``num_classes``, the weights' ``num_classes`` when weights are named (``create_model('sinet_resnet50.mars')``
    rebuilds the 625-way head, as timm does), else 0 (embedding only).

    The attached cfg describes the built model: ``input_size = (3, *model.img_size)``, ``num_frames``,
    ``num_classes`` and the ``model_args`` a saved config.json needs to rebuild it.
    """
    arch, _ = split_model_name_tag(variant)
    weights = weights_cfg_for(variant, pretrained, pretrained_cfg)
    cfg = merge_model_cfg(get_arch_default_cfg(arch), weights, pretrained_cfg_overlay)
    model_kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (weights.get('model_args') or {}).items()}
    model_kwargs.update({k: v for k, v in kwargs.items() if v is not None})
    stated = merge_model_cfg({}, weights, pretrained_cfg_overlay)  # what the weights and the caller's cfg state
    for key, value in _size_args(stated).items():
        model_kwargs.setdefault(key, value)
    model_kwargs.setdefault('num_classes', int(stated.get('num_classes') or 0))
    model = model_cls(**model_kwargs)

    state_dict = cfg.pop('state_dict', None)
    if getattr(model, 'img_size', None) is not None:
        cfg['input_size'] = (3, *(int(s) for s in model.img_size))
    if getattr(model, 'num_frames', None) is not None:
        cfg['num_frames'] = int(model.num_frames)
    if hasattr(model, 'num_classes'):
        cfg['num_classes'] = int(model.num_classes)
    cfg['architecture'] = arch
    cfg['model_args'] = {k: v for k, v in model_kwargs.items() if k not in _NOT_RECORDED}
    model.pretrained_cfg = model.default_cfg = cfg
    if pretrained:
        load_pretrained(model, dict(cfg, state_dict=state_dict), filter_fn=pretrained_filter_fn)
    return model
