"""``create_model``: the one-liner (``timm.create_model`` semantics, for video re-ID models)."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch.nn as nn

from .. import hub
from ._builder import load_checkpoint, weights_cfg_for
from ._registry import is_model, model_entrypoint, split_model_name_tag, suggest_models

_logger = logging.getLogger(__name__)

__all__ = ['create_model', 'parse_model_name']


def parse_model_name(model_name: str) -> tuple[Optional[str], str]:
    """``'hf-hub:org/repo@rev'`` -> ``('hf-hub', 'org/repo@rev')``; ``'arch.tag'`` -> ``(None, 'arch.tag')``."""
    if model_name.startswith('hf_hub:'):  # legacy spelling, as timm accepts
        model_name = 'hf-hub:' + model_name[len('hf_hub:'):]
    if model_name.startswith('hf-hub:'):
        return 'hf-hub', model_name[len('hf-hub:'):]
    if model_name.startswith('local-dir:'):
        return 'local-dir', model_name[len('local-dir:'):]
    if any(c in model_name for c in '/\\:'):
        raise ValueError(
            f'Model name {model_name!r} looks like a path or repo id: use "hf-hub:org/repo[@revision]" for a Hub repo, '
            f'"local-dir:/path" for a folder written by reidzoo.hub.save_pretrained, or checkpoint_path= for a file.')
    return None, model_name


def create_model(
        model_name: str,
        pretrained: bool = False,
        *,
        num_classes: Optional[int] = None,
        pretrained_cfg: Union[str, dict[str, Any], None] = None,
        pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
        checkpoint_path: Union[str, Path, None] = None,
        **kwargs,
) -> nn.Module:
    """Create a video re-ID model.

    Args:
        model_name: ``'arch'``, ``'arch.tag'`` (published weights, see :func:`reidzoo.list_pretrained`),
            ``'hf-hub:org/repo[@revision]'`` (any repo written by :func:`reidzoo.hub.push_to_hub`) or
            ``'local-dir:/path'`` (a folder written by :func:`reidzoo.hub.save_pretrained`).
        pretrained: load the published weights (sha256-checked, pinned revision).
        num_classes: classifier size; defaults to the weights' own (pretrained) or 0 (embedding only). A size that
            differs from the weights' re-initialises the classifier and loads everything else strictly.
        pretrained_cfg: a tag name or a full cfg dict to use instead of the registry's.
        pretrained_cfg_overlay: cfg fields to override, e.g. ``dict(file='weights.safetensors')``.
        checkpoint_path: a local ``.safetensors`` (or reidzoo ``.pt``) file loaded after construction.
        **kwargs: architecture arguments (``backbone='resnet18'``, ``num_frames=8``, ...).

    Returns:
        The model, in train mode as torch modules are (call ``.eval()`` for embeddings).

    Example:
        >>> model = reidzoo.create_model('tp_resnet50', backbone='resnet18').eval()
        >>> emb = model(torch.randn(2, 4, 3, 256, 128))  # (2, 512)
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    source, name = parse_model_name(model_name)
    if source in ('hf-hub', 'local-dir'):
        # timm semantics: the repo's config.json decides the architecture, its arguments and the classifier size;
        # its weights load only with pretrained=True
        arch, model_args, weights = hub.load_model_config(name, source=source)
        origin = f'{hub.CONFIG_NAME} of {model_name}'
        if not is_model(arch):
            close = ', '.join(suggest_models(arch)) or 'none'
            raise ValueError(f'{origin} names architecture {arch!r}, which this reidzoo does not have (closest: '
                             f'{close}). Upgrade reidzoo, or fix "architecture" in the file.')
        weights['model_args'] = model_args
        pretrained_cfg, named_weights = weights, True
    else:
        arch, tag = split_model_name_tag(name)
        model_entrypoint(arch)  # an unknown name fails here, naming the closest ones
        origin = f'the weights of {name}'
        named_weights = bool(tag) or isinstance(pretrained_cfg, (str, dict))
        # looked up once, here, and handed to the builder as a dict
        pretrained_cfg = weights_cfg_for(name, pretrained, pretrained_cfg)
    if named_weights and not pretrained:
        _logger.warning('%s names weights, but pretrained=False: the model is built as they record (architecture, '
                        'classifier size) and randomly initialised. Pass pretrained=True to load them.', model_name)
    # the architecture arguments recorded with the weights beat the variant's defaults (which its register function
    # passes on as explicit kwargs); the caller's beat both
    weights_args = {k: tuple(v) if isinstance(v, list) else v
                    for k, v in (pretrained_cfg.get('model_args') or {}).items()}
    kwargs = {**weights_args, **kwargs}
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    try:
        model = model_entrypoint(arch)(pretrained=pretrained, pretrained_cfg=pretrained_cfg,
                                       pretrained_cfg_overlay=pretrained_cfg_overlay, **kwargs)
    except TypeError as e:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not match:
            raise
        key = match.group(1)
        where = f'"model_args" of {origin}' if key in weights_args and key not in kwargs.keys() - weights_args.keys() \
            else 'the keyword arguments of create_model'
        raise TypeError(f'{arch} has no argument {key!r} (from {where}). Remove it; `reidzoo info {arch}` shows the '
                        f'model_args the architecture records.') from e
    if checkpoint_path:
        load_checkpoint(model, checkpoint_path)
    return model
