"""Datasets, frame sampling, transforms and loaders for video re-ID.

>>> from reidzoo.data import build_dataset
>>> ds = build_dataset('mars', '/data/mars')
>>> ds.show_summary()
"""
import importlib

from .dataset import (
    DatasetError, DatasetFormatError, DatasetNotFoundError, Tracklet, VideoReIDDataset, build_dataset, list_datasets,
    register_dataset,
)
# importing the parsers registers them with build_dataset (the registry is in .dataset, which they import)
from .datasets import DukeMTMCVideoReID, ILIDSVID, LSVID, Mars, PRID2011, load_prid2011_splits
from .synthvid import SynthVID, build_synthvid, read_record

# The loading pipeline lives in modules imported on first use (they pull in torch and friends); their public names are
# re-exported lazily so that ``from reidzoo.data import <name>`` works for every one of them.
_LAZY_MODULES = ('sampling', 'transforms', 'video_dataset', 'samplers', 'io')


def _lazy_module(module: str):
    try:
        return importlib.import_module(f'{__name__}.{module}')
    except ModuleNotFoundError as e:
        if e.name == f'{__name__}.{module}':  # that module does not exist (yet); other import errors propagate
            return None
        raise


def _public_names(mod) -> list[str]:
    if hasattr(mod, '__all__'):
        return list(mod.__all__)
    return [n for n, v in vars(mod).items() if not n.startswith('_') and not isinstance(v, type(importlib))]


def __getattr__(name: str):
    if not name.startswith('_'):
        for module in _LAZY_MODULES:
            mod = _lazy_module(module)
            if mod is not None and name in _public_names(mod):
                value = getattr(mod, name)
                globals()[name] = value
                return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    names = set(globals())
    for module in _LAZY_MODULES:
        mod = _lazy_module(module)
        if mod is not None:
            names.update(_public_names(mod))
    return sorted(names)
