"""Model registry, modelled on ``timm.models._registry``.

reidzoo keeps its own registry (rather than registering into timm's) so that ``timm.list_models()`` stays
clean and reidzoo can own its pretrained tags, which come from ``weights_manifest.json`` (see
:mod:`reidzoo.manifest`) instead of being hard-coded next to the architecture.

Names:
    ``arch``      an architecture, e.g. ``sinet_resnet50``; one ``@register_model`` function each.
    ``arch.tag``  a published set of weights for it, e.g. ``sinet_resnet50.mars``.
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import re
import sys
import warnings
from typing import Any, Callable, Iterable, Optional, Union

from ..manifest import get_manifest_entry, load_manifest, manifest_entry_to_cfg
from ..spec.model_cfg import merge_model_cfg

__all__ = [
    'register_model', 'list_models', 'list_pretrained', 'is_model', 'model_entrypoint', 'split_model_name_tag',
    'get_arch_default_cfg', 'get_pretrained_cfg', 'get_weights_cfg', 'get_pretrained_tags', 'list_modules',
    'suggest_models',
]

_model_entrypoints: dict[str, Callable[..., Any]] = {}
_model_to_module: dict[str, str] = {}
_module_to_models: dict[str, set[str]] = {}
_model_default_cfgs: dict[str, dict[str, Any]] = {}


def split_model_name_tag(model_name: str, no_tag: str = '') -> tuple[str, str]:
    """Split ``'arch.tag'`` into ``('arch', 'tag')`` on the first dot (as timm does)."""
    model_name, *tag_list = model_name.split('.', 1)
    return model_name, (tag_list[0] if tag_list else no_tag)


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator registering a model entrypoint under its function name.

    The defining module's ``default_cfgs[fn.__name__]`` (a plain dict) becomes the architecture's default
    pretrained cfg: input size, frames per clip, normalisation, test sampling and distance.
    """
    mod = sys.modules[fn.__module__]
    module_name = fn.__module__.split('.')[-1]
    model_name = fn.__name__
    if hasattr(mod, '__all__'):
        if model_name not in mod.__all__:
            mod.__all__.append(model_name)
    else:
        mod.__all__ = [model_name]
    if model_name in _model_entrypoints:
        warnings.warn(f'Overwriting {model_name} in registry with {fn.__module__}.{model_name}.', stacklevel=2)
    _model_entrypoints[model_name] = fn
    _model_to_module[model_name] = module_name
    _module_to_models.setdefault(module_name, set()).add(model_name)
    default_cfgs = getattr(mod, 'default_cfgs', {})
    if model_name in default_cfgs:
        _model_default_cfgs[model_name] = dict(default_cfgs[model_name], architecture=model_name)
    return fn


def _natural_key(string_: str) -> list[Union[int, str]]:
    return [int(s) if s.isdigit() else s for s in re.split(r'(\d+)', string_.lower())]


def _as_list(x: Union[str, Iterable[str], None]) -> list[str]:
    if not x:
        return []
    return [x] if isinstance(x, str) else list(x)


def get_pretrained_tags(arch: str) -> list[str]:
    """Published tags of ``arch``, in manifest order (the first one is the default)."""
    return [tag for name, tag in (split_model_name_tag(k) for k in load_manifest()) if name == arch]


def list_models(
        filter: Union[str, Iterable[str]] = '',
        module: str = '',
        pretrained: bool = False,
        exclude_filters: Union[str, Iterable[str]] = '',
        include_tags: Optional[bool] = None,
) -> list[str]:
    """Registered model names, like ``timm.list_models``.

    Args:
        filter: fnmatch wildcard(s), e.g. ``'cosam_*'``; a filter with a tag (``'*.mars'``) matches tags.
        module: only models from this module (``'sinet'``, ``'cosam'``, ...).
        pretrained: only models with published weights in the manifest(s).
        exclude_filters: wildcard(s) removed from the result.
        include_tags: list ``arch.tag`` names; defaults to ``pretrained``.
    """
    if include_tags is None:
        include_tags = pretrained
    names: set[str] = set(_module_to_models.get(module, set()) if module else _model_entrypoints)
    if include_tags:
        tagged = set()
        for arch in names:
            tags = get_pretrained_tags(arch)
            tagged.update(f'{arch}.{t}' for t in tags)
            if not pretrained and not tags:
                tagged.add(arch)
        names = tagged
    elif pretrained:
        names = {n for n in names if get_pretrained_tags(n)}
    filters = _as_list(filter)
    if filters:
        selected: set[str] = set()
        for f in filters:
            if include_tags and '.' not in f:
                f = f + '*'  # 'sinet*' should match 'sinet_resnet50.mars'
            selected.update(fnmatch.filter(names, f))
        names = selected
    for xf in _as_list(exclude_filters):
        names -= set(fnmatch.filter(names, xf))
    return sorted(names, key=_natural_key)


def list_pretrained(
        filter: Union[str, Iterable[str]] = '',
        exclude_filters: Union[str, Iterable[str]] = '',
) -> list[str]:
    """Every published ``arch.tag``, like ``timm.list_pretrained``."""
    return list_models(filter=filter, pretrained=True, exclude_filters=exclude_filters, include_tags=True)


def list_modules() -> list[str]:
    """The model family modules that registered models."""
    return sorted(_module_to_models)


def is_model(model_name: str) -> bool:
    """True if ``model_name`` (with or without a tag) names a registered architecture."""
    arch, _ = split_model_name_tag(model_name)
    return arch in _model_entrypoints


def suggest_models(model_name: str, n: int = 5) -> list[str]:
    """The registered names closest to ``model_name`` (for error messages)."""
    arch, _ = split_model_name_tag(model_name)
    close = difflib.get_close_matches(arch, list(_model_entrypoints), n=n, cutoff=0.4)
    if not close:  # fall back to a shared family prefix, e.g. 'sinet' -> sinet_resnet50
        close = [m for m in sorted(_model_entrypoints) if m.startswith(arch.split('_')[0])][:n]
    return close


def model_entrypoint(model_name: str) -> Callable[..., Any]:
    """The entrypoint function of ``model_name``; raises ``RuntimeError`` naming the closest models."""
    arch, _ = split_model_name_tag(model_name)
    if arch not in _model_entrypoints:
        hint = suggest_models(arch)
        hint_msg = f' Did you mean: {", ".join(hint)}?' if hint else ''
        raise RuntimeError(
            f'Unknown model ({model_name!r}).{hint_msg} `reidzoo.list_models()` lists all {len(_model_entrypoints)}.')
    return _model_entrypoints[arch]


def get_arch_default_cfg(arch: str) -> dict[str, Any]:
    """A copy of the architecture's default cfg (no weights)."""
    model_entrypoint(arch)
    return copy.deepcopy(_model_default_cfgs.get(arch, {'architecture': arch}))


def get_weights_cfg(model_name: str) -> dict[str, Any]:
    """What the weights of ``arch.tag`` record (manifest fields, ``tag``), without the architecture defaults.

    For a bare ``arch`` the first published tag is used, as timm does; ``{}`` if nothing is published for it. A tag
    that is not published raises ``RuntimeError`` naming the published ones (or the manifest that cannot be read).
    """
    arch, tag = split_model_name_tag(model_name)
    model_entrypoint(arch)
    tags = get_pretrained_tags(arch)
    if not tag:
        if not tags:
            return {}
        tag = tags[0]
    entry = get_manifest_entry(f'{arch}.{tag}')  # raises the error of a broken manifest that would serve it
    if entry is None:
        published = ', '.join(f'{arch}.{t}' for t in tags) or 'none'
        raise RuntimeError(
            f'Invalid pretrained tag ({tag}) for {arch}. Published weights for {arch}: {published}. '
            f'Add an entry to weights_manifest.json (or a file in REIDZOO_MANIFESTS) to publish new ones.')
    return dict(manifest_entry_to_cfg(entry), tag=tag)


def get_pretrained_cfg(model_name: str) -> dict[str, Any]:
    """The pretrained cfg of ``arch`` or ``arch.tag``: the architecture defaults overlaid by the manifest entry.

    For a bare ``arch`` the first published tag (if any) is used, as timm does (``create_model(arch)`` without
    ``pretrained=True`` uses the architecture defaults alone). A tag that is not published raises ``RuntimeError``
    naming the published ones.
    """
    arch, _ = split_model_name_tag(model_name)
    return merge_model_cfg(get_arch_default_cfg(arch), get_weights_cfg(model_name))
