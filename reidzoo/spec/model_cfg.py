"""The typed model config and the one resolver of its precedence (timm's ``resolve_data_config`` for clips).

A model's *cfg* says how to feed and score it: the frame size and clip length it was built for, the normalisation,
the test-time sampling and the distance. Three layers can state these facts:

1. the **architecture defaults** (each family's ``default_cfgs``, in the registry);
2. the **weights** (a manifest entry's ``pretrained_cfg``, or a repo's ``config.json``): how they were trained;
3. the **caller** (``pretrained_cfg_overlay=``, ``test_sampling=`` of extraction, a recipe's values).

:func:`merge_model_cfg` is the only place that decides between them: caller > weights > architecture defaults. The
builder uses it to produce ``model.pretrained_cfg``; :func:`resolve_model_cfg` uses it to read a built model's data
config (with the model's own ``img_size`` / ``num_frames`` as the truth for the size it takes), so extraction, the
transforms and the trainer need no defaults of their own. :func:`check_config_json` type-checks a repo's
``config.json`` key by key, so a wrong file fails with the key's name rather than a ``TypeError`` deep in a model.

This module is part of the spec layer: it imports nothing of reidzoo (nor torch or timm).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

# ImageNet normalisation, the values of timm.data.IMAGENET_DEFAULT_MEAN / _STD (tests/test_model_contract.py checks
# they agree). Stated here rather than imported so that reading the registry (`reidzoo list`) needs no timm import,
# which alone costs seconds.
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

__all__ = [
    'ModelCfg', 'CfgError', 'DEFAULT_TEST_SAMPLING', 'DEFAULT_DISTANCE', 'DATA_KEYS', 'WEIGHTS_KEYS',
    'merge_model_cfg', 'resolve_model_cfg', 'check_config_json', 'check_cfg_types',
]

# the one default of each data fact that an architecture may leave unstated
DEFAULT_TEST_SAMPLING = 'dense'
DEFAULT_DISTANCE = 'cosine'
DEFAULT_INTERPOLATION = 'bicubic'

# cfg fields that are tuples in code and come back from JSON as lists
_TUPLE_KEYS = ('input_size', 'mean', 'std')


class CfgError(ValueError):
    """A cfg (or a repo's ``config.json``) with an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class ModelCfg:
    """How to feed and score one built model (read it with :func:`resolve_model_cfg`).

    Attributes:
        architecture: registered architecture name.
        input_size: ``(3, H, W)`` of the frames the model was built for.
        num_frames: frames per test clip (the clip length the model was built for).
        mean: per-channel normalisation mean (RGB, 0-1 scale).
        std: per-channel normalisation std.
        interpolation: resize interpolation of the frames (``'bilinear'``, ``'bicubic'``).
        crop_pct: centre-crop fraction (1.0: the frame is resized, never cropped, as re-ID tracklets are).
        train_sampling: how training clips are drawn from a tracklet (``None``: the trainer's default).
        test_sampling: how test clips are drawn (``'dense'``, ``'all'``, ``'interleaved'``, ...).
        distance: the distance the embeddings are ranked with (``'cosine'``, ``'euclidean'``, ``'sqeuclidean'``).
        fixed_input_size: True if the model only takes ``input_size`` frames.
        train_aug: augmentation overrides of the training transform.
    """
    input_size: tuple[int, int, int]
    num_frames: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    architecture: str = ''
    interpolation: str = DEFAULT_INTERPOLATION
    crop_pct: float = 1.0
    train_sampling: Optional[str] = None
    test_sampling: str = DEFAULT_TEST_SAMPLING
    distance: str = DEFAULT_DISTANCE
    fixed_input_size: bool = False
    train_aug: Mapping[str, Any] = field(default_factory=dict)

    @property
    def img_size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        return self.input_size[1], self.input_size[2]

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], where: str = 'pretrained_cfg') -> 'ModelCfg':
        """The data fields of a pretrained cfg (other keys, such as the weights' source, are ignored).

        Raises:
            CfgError: a required field is missing or a field has the wrong type (naming ``where`` and the key).
        """
        check_cfg_types(cfg, where)
        missing = [f.name for f in fields(cls) if f.name in ('input_size', 'num_frames', 'mean', 'std')
                   and cfg.get(f.name) is None]
        if missing:
            raise CfgError(f'{where} has no {", ".join(missing)}: every architecture states them in its default_cfgs; '
                           f'build the model with reidzoo.create_model, or pass them explicitly.')
        values = {f.name: _normalise(f.name, cfg[f.name]) for f in fields(cls) if cfg.get(f.name) is not None}
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (tuples kept)."""
        return asdict(self)


# --- key tables: what a cfg may hold, and the type of each value ----------------------------------------------------
# (kind, length): 'int', 'float' (int accepted), 'str', 'bool', 'dict', 'ints'/'floats' (sequences of that length)
_Kind = tuple[str, Optional[int]]
DATA_KEYS: dict[str, _Kind] = {
    'input_size': ('ints', 3), 'num_frames': ('int', None), 'mean': ('floats', 3), 'std': ('floats', 3),
    'interpolation': ('str', None), 'crop_pct': ('float', None), 'train_sampling': ('str', None),
    'test_sampling': ('str', None), 'distance': ('str', None), 'fixed_input_size': ('bool', None),
    'train_aug': ('dict', None),
}
# what names the weights and where they came from
WEIGHTS_KEYS: dict[str, _Kind] = {
    'hf_hub_id': ('str', None), 'revision': ('str', None), 'filename': ('str', None), 'file': ('str', None),
    'sha256': ('str', None), 'num_bytes': ('int', None), 'num_classes': ('int', None), 'tag': ('str', None),
    'dataset': ('str', None), 'protocol': ('str', None), 'metrics': ('dict', None), 'source': ('dict', None),
    'license': ('str', None),
}
# descriptive fields of the architecture
_ARCH_KEYS: dict[str, _Kind] = {
    'architecture': ('str', None), 'classifier': ('str', None), 'first_conv': ('str', None),
    'model_args': ('dict', None),
}
_CFG_KEYS = {**DATA_KEYS, **WEIGHTS_KEYS, **_ARCH_KEYS}
_FREE_PREFIXES = ('paper_',)  # paper_name, paper_ids, ...: free text

# the top level of a repo's config.json (written by reidzoo.hub.save_pretrained)
_CONFIG_JSON_KEYS: dict[str, _Kind] = {
    'architecture': ('str', None), 'num_classes': ('int', None), 'num_features': ('int', None),
    'model_args': ('dict', None), 'pretrained_cfg': ('dict', None), 'filename': ('str', None),
    'sha256': ('str', None), 'num_bytes': ('int', None), 'license': ('str', None), 'reidzoo_version': ('str', None),
    'dataset': ('str', None), 'protocol': ('str', None), 'metrics': ('dict', None), 'source': ('dict', None),
}
# architecture arguments whose type every family shares (the rest are family-specific and checked by the model)
_MODEL_ARG_KEYS: dict[str, _Kind] = {
    'img_size': ('ints', 2), 'num_frames': ('int', None), 'backbone': ('str', None), 'num_classes': ('int', None),
}


def _type_ok(value: Any, kind: _Kind) -> bool:
    name, length = kind
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if name == 'int':
        return is_int
    if name == 'float':
        return (is_int or isinstance(value, float)) and math.isfinite(value)
    if name == 'str':
        return isinstance(value, str)
    if name == 'bool':
        return isinstance(value, bool)
    if name == 'dict':
        return isinstance(value, Mapping)
    if name in ('ints', 'floats'):
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            return False
        return all(_type_ok(v, ('int' if name == 'ints' else 'float', None)) for v in value)
    raise AssertionError(name)


def _describe(kind: _Kind) -> str:
    name, length = kind
    if name in ('ints', 'floats'):
        return f'a list of {length} {"integers" if name == "ints" else "numbers"}'
    return {'int': 'an integer', 'float': 'a number', 'str': 'a string', 'bool': 'true or false',
            'dict': 'an object'}[name]


def _check(mapping: Mapping[str, Any], table: Mapping[str, _Kind], where: str, strict: bool) -> None:
    for key, value in mapping.items():
        kind = table.get(key)
        if kind is None:
            if strict and not key.startswith(_FREE_PREFIXES):
                raise CfgError(f'{where}: unknown key {key!r} (known: {", ".join(sorted(table))}). Remove it, or '
                               f'upgrade reidzoo if a newer version wrote the file.')
            continue
        if value is not None and not _type_ok(value, kind):
            raise CfgError(f'{where}: {key!r} is {value!r} ({type(value).__name__}), expected {_describe(kind)}. '
                           f'Fix the value in the file.')


def check_cfg_types(cfg: Mapping[str, Any], where: str = 'pretrained_cfg', *, strict: bool = False) -> None:
    """Raise :class:`CfgError` naming ``where`` and the key if a known cfg key has a value of the wrong type.

    ``strict=True`` also refuses keys this version of reidzoo does not know (free-text ``paper_*`` keys are allowed).
    """
    _check(cfg, _CFG_KEYS, where, strict)


def check_config_json(config: Mapping[str, Any], where: str) -> None:
    """Type-check a repo's ``config.json`` (top level, ``pretrained_cfg`` and the shared ``model_args``).

    Raises:
        CfgError: an unknown key, or a value of the wrong type, named with its path (``pretrained_cfg.num_frames``).
    """
    if not isinstance(config, Mapping):
        raise CfgError(f'{where}: expected a JSON object, got {type(config).__name__}.')
    _check(config, _CONFIG_JSON_KEYS, where, strict=True)
    _check(config.get('pretrained_cfg') or {}, {**DATA_KEYS, **_ARCH_KEYS, 'license': ('str', None)},
           f'{where}: pretrained_cfg', strict=True)
    _check(config.get('model_args') or {}, _MODEL_ARG_KEYS, f'{where}: model_args', strict=False)


def _normalise(key: str, value: Any) -> Any:
    # JSON has no tuples; code compares input_size / mean / std as tuples
    if key in _TUPLE_KEYS and isinstance(value, list):
        return tuple(value)
    return value


# --- the resolver ------------------------------------------------------------------------------------------------
def merge_model_cfg(
        arch: Mapping[str, Any],
        weights: Optional[Mapping[str, Any]] = None,
        caller: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The pretrained cfg with precedence caller > weights > architecture defaults (the only place that decides it).

    Args:
        arch: the architecture's default cfg.
        weights: what the weights record (a manifest entry's cfg fields, or a repo's ``config.json``), if any.
        caller: the caller's overrides; keys whose value is ``None`` mean "not given" and are skipped.

    Returns:
        A new dict (deep copies of the inputs' values), with ``input_size`` / ``mean`` / ``std`` as tuples.
    """
    cfg: dict[str, Any] = {}
    for layer, skip_none in ((arch, False), (weights, False), (caller, True)):
        for key, value in (layer or {}).items():
            if skip_none and value is None:
                continue
            cfg[key] = _normalise(key, copy.deepcopy(value))
    return cfg


def resolve_model_cfg(model: Any = None, *, cfg: Optional[Mapping[str, Any]] = None, **overrides: Any) -> ModelCfg:
    """The data config of a built model, with the caller's overrides on top (timm's ``resolve_data_config``).

    The model's ``pretrained_cfg`` (already merged by the builder) is the base; the model's own ``img_size`` and
    ``num_frames`` attributes are the truth for the frame size and clip length it takes; ``overrides`` (any
    :class:`ModelCfg` field, ``None`` = not given) win over both.

    Args:
        model: a reidzoo model (anything with ``pretrained_cfg`` and, ideally, ``img_size`` / ``num_frames``).
        cfg: a pretrained cfg dict to use instead of ``model.pretrained_cfg``.
        **overrides: e.g. ``test_sampling='all'``, ``num_frames=8``, ``input_size=(3, 128, 64)``.

    Raises:
        TypeError: an override that is not a :class:`ModelCfg` field.
        CfgError: a missing or mistyped field.

    Example:
        >>> data_cfg = resolve_model_cfg(model, test_sampling=args.test_sampling)  # doctest: +SKIP
        >>> data_cfg.img_size, data_cfg.num_frames, data_cfg.test_sampling  # doctest: +SKIP
    """
    known = {f.name for f in fields(ModelCfg)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f'resolve_model_cfg got unknown override(s) {unknown}; ModelCfg fields: {sorted(known)}.')
    base = dict(cfg if cfg is not None else (getattr(model, 'pretrained_cfg', None) or {}))
    built: dict[str, Any] = {}
    img_size = getattr(model, 'img_size', None)
    if img_size is not None:
        built['input_size'] = (3, *(int(s) for s in img_size))
    num_frames = getattr(model, 'num_frames', None)
    if num_frames is not None:
        built['num_frames'] = int(num_frames)
    where = f'pretrained_cfg of {base.get("architecture") or type(model).__name__}'
    return ModelCfg.from_dict(merge_model_cfg(base, built, overrides), where)
