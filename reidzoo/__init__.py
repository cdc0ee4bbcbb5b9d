"""reidzoo: a model zoo for video person re-identification.

>>> import reidzoo
>>> reidzoo.list_models('cosam_*')
>>> model = reidzoo.create_model('sinet_resnet50.mars', pretrained=True).eval()

``import reidzoo`` is fast: the model API (``create_model``, ``list_models``, ...) and the subpackages
(``reidzoo.data``, ``reidzoo.eval``, ``reidzoo.hub``, ``reidzoo.train``, ``reidzoo.convert``, ...) are imported on
first use (PEP 562 module ``__getattr__``), so ``reidzoo --version`` does not pay for torch and timm.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these names load lazily
    from . import convert, data, eval, hub, models, spec, train  # noqa: F401
    from .models import (  # noqa: F401
        ModelOutput, VideoReIDModel, create_model, get_pretrained_cfg, is_model, list_models, list_modules,
        list_pretrained, register_model,
    )

# public name -> module that defines it (the model API, as timm exposes it at the top level)
_LAZY_ATTRS: dict[str, str] = {name: 'reidzoo.models' for name in (
    'ModelOutput', 'VideoReIDModel', 'create_model', 'get_pretrained_cfg', 'is_model', 'list_models', 'list_modules',
    'list_pretrained', 'register_model',
)}
# subpackages / modules reachable as attributes after a bare ``import reidzoo``
_LAZY_MODULES: tuple[str, ...] = (
    'cli', 'convert', 'data', 'deploy', 'eval', 'hub', 'layers', 'manifest', 'match', 'models', 'search', 'spec',
    'train', 'utils',
)

__all__ = ['__version__', *_LAZY_ATTRS, *_LAZY_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f'{__name__}.{name}')
    else:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
