"""Build a model from its cfg and load its weights (``timm.models._builder`` for video re-ID).

Weight sources, in priority order (as timm): ``state_dict`` in the cfg, a local ``file``, then the Hub
(``hf_hub_id`` + pinned ``revision`` + ``filename``, checked against ``sha256`` before loading).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn

from ._registry import get_pretrained_cfg, split_model_name_tag

__all__ = ['build_model_with_cfg', 'resolve_pretrained_cfg', 'load_pretrained', 'load_checkpoint',
           'load_state_dict_checked', 'read_state_dict', 'StateDictMismatchError']

_logger = logging.getLogger(__name__)

FilterFn = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


class StateDictMismatchError(RuntimeError):
    """Weights whose keys or shapes do not match the model."""


def resolve_pretrained_cfg(
        variant: str,
        pretrained_cfg: Union[str, dict[str, Any], None] = None,
        pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The cfg of ``variant``: a dict as given, a tag name, or the registry's default; then the overlay."""
    if isinstance(pretrained_cfg, dict):
        cfg = copy.deepcopy(pretrained_cfg)
        cfg.setdefault('architecture', variant)
    else:
        name = variant if not pretrained_cfg else f'{variant}.{pretrained_cfg}'
        cfg = get_pretrained_cfg(name)
    if pretrained_cfg_overlay:
        cfg.update(copy.deepcopy(pretrained_cfg_overlay))
    return cfg


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a reidzoo training checkpoint (``weights_only`` unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Checkpoint {path} does not exist.')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        return load_file(str(path))
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


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    name = getattr(model, 'pretrained_cfg', {}).get('classifier', 'classifier')
    return (name + '.',)


def load_pretrained(
        model: nn.Module,
        pretrained_cfg: Optional[dict[str, Any]] = None,
        filter_fn: Optional[FilterFn] = None,
        strict: bool = True,
) -> None:
    """Load the weights named by the cfg into ``model``; re-initialise the classifier if its size differs."""
    from .. import hub
    cfg = pretrained_cfg or model.pretrained_cfg
    if cfg.get('state_dict') is not None:
        state_dict, source = cfg['state_dict'], 'pretrained_cfg["state_dict"]'
    elif cfg.get('file'):
        state_dict, source = read_state_dict(cfg['file']), str(cfg['file'])
    elif cfg.get('hf_hub_id'):
        path = hub.download_weights(cfg)
        state_dict, source = hub.load_safetensors(path), f'hf-hub:{cfg["hf_hub_id"]}@{cfg.get("revision")}'
    else:
        arch = cfg.get('architecture', type(model).__name__)
        raise RuntimeError(
            f'No pretrained weights are published for {arch}. Train them with `reidzoo train --recipe <recipe for {arch}>`, '
            f'export and push them (`reidzoo export`, `reidzoo push`), then add the printed entry to '
            f'weights_manifest.json or a file in REIDZOO_MANIFESTS; or pass checkpoint_path=... / '
            f'pretrained_cfg_overlay=dict(file=...) for a local file. Use pretrained=False for random init.')
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    ignore: tuple[str, ...] = ()
    ckpt_classes = cfg.get('num_classes')
    if ckpt_classes is not None and ckpt_classes != getattr(model, 'num_classes', ckpt_classes):
        _logger.info('Checkpoint has %s classes, model %s: classifier not loaded.', ckpt_classes, model.num_classes)
        ignore = _classifier_prefixes(model)
    _load(model, state_dict, source, ignore, strict)


def _load(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...],
          strict: bool) -> None:
    if strict:
        load_state_dict_checked(model, state_dict, source, ignore_prefixes=ignore)
    else:
        model.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith(ignore)}, strict=False)


def load_checkpoint(model: nn.Module, checkpoint_path: Union[str, Path], strict: bool = True) -> None:
    """Load a local checkpoint (safetensors, or a reidzoo ``.pt``) with the same key report as Hub weights."""
    state_dict = read_state_dict(checkpoint_path)
    ignore: tuple[str, ...] = ()
    prefix = _classifier_prefixes(model)[0]
    cls_w = state_dict.get(prefix + 'weight')
    if cls_w is not None and cls_w.shape[0] != getattr(model, 'num_classes', cls_w.shape[0]):
        ignore = (prefix,)
    _load(model, state_dict, str(checkpoint_path), ignore, strict)


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

    The classifier size comes from, in order: the caller's ``num_classes``, the weights' ``num_classes`` (so
    ``create_model('sinet_resnet50.mars', pretrained=True)`` rebuilds the 625-way head), else 0 (embedding only).
    ``model_args`` recorded with the weights are used unless the caller overrides them.
    """
    arch, _ = split_model_name_tag(variant)
    cfg = resolve_pretrained_cfg(arch, pretrained_cfg, pretrained_cfg_overlay)
    model_kwargs = dict(cfg.get('model_args', {}))
    model_kwargs.update({k: v for k, v in kwargs.items() if v is not None})
    if 'num_classes' not in model_kwargs:
        model_kwargs['num_classes'] = cfg.get('num_classes', 0) if pretrained else 0
    model = model_cls(**model_kwargs)
    model.pretrained_cfg = model.default_cfg = {k: v for k, v in cfg.items() if k != 'state_dict'}
    # what a saved config.json needs to rebuild this exact model (the ImageNet init flag is not part of it)
    model.pretrained_cfg['model_args'] = {
        k: v for k, v in model_kwargs.items() if k not in ('num_classes', 'pretrained_backbone')}
    if pretrained:
        load_pretrained(model, cfg, filter_fn=pretrained_filter_fn)
    return model
