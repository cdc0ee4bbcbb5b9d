"""``create_model``: the one-liner (``timm.create_model`` semantics, for video re-ID models)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch.nn as nn

from ._builder import load_checkpoint, resolve_pretrained_cfg
from ._registry import model_entrypoint, split_model_name_tag

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
        from ..hub import load_model_config
        arch, model_args, hub_cfg = load_model_config(name, source=source)
        pretrained_cfg = hub_cfg
        kwargs = {**model_args, **kwargs}
        name = arch
    else:
        arch, tag = split_model_name_tag(name)
        if tag and pretrained_cfg is None:
            pretrained_cfg = tag
        name = arch
        if pretrained or tag:
            # the architecture arguments recorded with the weights (manifest `pretrained_cfg.model_args`) must beat
            # the variant's defaults, which its register function passes on as explicit kwargs; the caller's win
            weights_args = resolve_pretrained_cfg(arch, pretrained_cfg, pretrained_cfg_overlay).get('model_args') or {}
            kwargs = {**{k: tuple(v) if isinstance(v, list) else v for k, v in weights_args.items()}, **kwargs}
    create_fn = model_entrypoint(name)
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    model = create_fn(pretrained=pretrained, pretrained_cfg=pretrained_cfg,
                      pretrained_cfg_overlay=pretrained_cfg_overlay, **kwargs)
    if checkpoint_path:
        load_checkpoint(model, checkpoint_path)
    return model
