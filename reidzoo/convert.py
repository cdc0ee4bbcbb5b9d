"""Convert the authors' released checkpoints (SINet, COSAM, STMP) into reidzoo models.

The shared front-end lives here: safe loading of ``.pth``/``.pth.tar`` files, unwrapping of training checkpoints
(``{'state_dict', 'rank1', 'epoch'}``, ``module.`` prefixes, DataParallel duplicates), and the ``reidzoo convert``
command. The family-specific key mapping lives next to each architecture, as
``reidzoo.models.<family>.convert_official_state_dict(state_dict, arch, **kwargs)``; a family may also provide
``official_model_args(state_dict, arch) -> (arch, model_kwargs)`` so the command can infer the architecture.

Loading never unpickles arbitrary objects by default: ``torch.load(weights_only=True)`` with an allow-list of the
numpy scalar types that training scripts store next to the weights (the authors' ``rank1`` is a ``numpy.float64``).
``trust_pickle=True`` (``--trust-pickle``) lifts that for files you trust.

Example:
    >>> sd = convert_official_checkpoint('sinet', 'sinet_mars.pth.tar')
    >>> model = reidzoo.create_model('sinet_resnet50', num_classes=625)
    >>> model.load_state_dict(sd)

Command line::

    reidzoo convert --list
    reidzoo convert --from sinet-official best_model.pth.tar ./sinet_resnet50.mars [--arch sinet_resnet50]
"""
from __future__ import annotations

import importlib
import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn as nn

from ._atomic import atomic_write
from .hub import sha256_file
from .models import create_model, get_arch_default_cfg
from .models._builder import load_state_dict_checked

__all__ = [
    'FAMILIES', 'RELEASED_CHECKPOINTS', 'NotACheckpointError', 'numpy_safe_globals', 'load_torch_file',
    'load_official_checkpoint', 'unwrap_state_dict', 'convert_official_checkpoint', 'build_converted_model',
    'convert_checkpoint',
]

# family -> (authors' repository, default arch when the checkpoint cannot tell)
FAMILIES: dict[str, tuple[str, Optional[str]]] = {
    'sinet': ('https://github.com/baist/SINet', None),
    'cosam': ('https://github.com/InnovArul/vidreid_cosegmentation', None),
    'stmp': ('https://github.com/yolomax/person-reid-lib', 'stmp_inception_v3'),
}


# licence of the authors' code and released weights, recorded in the converted folder's config.json
_LICENSES = {'sinet': 'mit'}


def _drive(file_id: str) -> str:
    return f'https://drive.google.com/file/d/{file_id}/view?usp=sharing'


# What the authors released (README of github.com/baist/SINet @ 3f3d838). Metrics: mAP/rank-1 in percent, the
# paper's Tables 1-2 and the README's "reproduce" column. COSAM and STMP published no checkpoints.
RELEASED_CHECKPOINTS: list[dict[str, Any]] = [
    {'family': 'sinet', 'arch': arch, 'dataset': dataset, 'url': _drive(file_id), 'paper': paper, 'readme': readme}
    for arch, dataset, file_id, paper, readme in (
        ('sbnet_resnet50', 'mars', '1l0VeAzZ1-Z7Gbrp6jLuF_C6MIAiamrpQ', (85.7, 90.2), (85.6, 90.7)),
        ('idnet_resnet50', 'mars', '1XxJUxaUXDDB1cq6d6W5aGfwj54OvqW5N', (85.9, 90.5), (85.9, 90.4)),
        ('sinet_resnet50', 'mars', '18YKaBdexzc49A-zhmT8vJY_xug_eLiYF', (86.2, 91.0), (86.3, 90.9)),
        ('sbnet_resnet50', 'lsvid', '1bAxPRKoFoLluP3dVpzpsEJCY_kJhaL2v', (77.1, 85.1), (77.2, 85.3)),
        ('idnet_resnet50', 'lsvid', '1l-vH5huoodRjiNBbfWAZIjLdXekAi70X', (78.0, 86.2), (78.2, 86.0)),
        ('sinet_resnet50', 'lsvid', '1Xdd_XUPyhbrrB06wDq_qUdUzMKdjD9FK', (79.6, 87.4), (79.9, 87.2)),
    )
]
NOT_RELEASED = {
    'sanet': 'SANet (TCSVT 2021, MARS: https://drive.google.com/file/d/1yhX4trD02-ryJ7jRObstmHk9IZb9Smc3) is in '
             'the same README but is not a reidzoo architecture.',
    'cosam': 'COSAM: no checkpoints were published (the notebook loads an unreleased local file).',
    'stmp': 'STMP: no checkpoints were published (save_model=False by default).',
}


# --- loading ------------------------------------------------------------------------------------------------------
class NotACheckpointError(ValueError):
    """A file given as a checkpoint is not a ``torch.save`` file (or is truncated / damaged)."""


def numpy_safe_globals() -> list[Any]:
    """The allow-list for numpy scalars in checkpoints: ``scalar`` under its numpy 1 and 2 module names,
    ``numpy.dtype`` and the ``numpy.dtypes`` classes (numpy >= 1.25 pickles a dtype's state with them)."""
    import numpy as np
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed: list[Any] = [(scalar, 'numpy.core.multiarray.scalar'), (scalar, 'numpy._core.multiarray.scalar'),
                          (np.dtype, 'numpy.dtype')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [cls for name in dir(dtypes) if name.endswith('DType')
                    for cls in [getattr(dtypes, name)] if isinstance(cls, type)]
    return allowed


def load_torch_file(path: Union[str, Path], *, trust_pickle: bool = False, allow_numpy: bool = False,
                    trust_hint: str = 'pass trust_pickle=True', what: str = 'checkpoint') -> Any:
    """``torch.load`` a file without executing code stored in it (the one safe loader of ``torch.save`` files).

    By default the file is read with ``weights_only=True``: tensors, containers and plain Python values only, plus
    the numpy scalars allow-listed by :func:`numpy_safe_globals` when ``allow_numpy``. An unpickle that would need any
    other object (a class, a function such as ``os.system``) is refused before anything is constructed.

    Args:
        path: the file.
        trust_pickle: allow any pickled object (``weights_only=False``). Only for files from a source you trust:
            unpickling can run code.
        allow_numpy: allow numpy scalars and dtypes (what training scripts store next to the weights).
        trust_hint: how the caller opts in, named in the error (e.g. ``'pass --trust-pickle'``).
        what: what the file should be, named in the errors.

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: the file holds other objects (the message names the first refused one).
        NotACheckpointError: the file is not a ``torch.save`` file, or it is damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{what.capitalize()} {path} does not exist.')
    with open(path, 'rb') as f:
        head = f.read(16)
    # torch.save writes a zip archive (torch >= 1.6) or a bare pickle (protocol 2+ starts with 0x80); a
    # safetensors file starts with its header length then '{'. Anything else is named here instead of surfacing
    # as an IndexError / KeyError from deep inside the unpickler.
    is_safetensors = len(head) > 8 and head[8:9] == b'{'
    if not (head.startswith(b'PK\x03\x04') or head[:1] == b'\x80' or is_safetensors):
        raise NotACheckpointError(
            f'{path} is not a {what}: a torch.save file is a zip archive or a pickle, this file starts with '
            f'{head[:8]!r}' + (' (it is empty)' if not head else '') + '.')
    if trust_pickle:
        warnings.warn(f'Loading {path} with an unrestricted unpickler (trust_pickle=True): this can run code stored '
                      f'in the file. Only do this for files from a source you trust.', stacklevel=3)
        return torch.load(path, map_location='cpu', weights_only=False)
    try:
        with torch.serialization.safe_globals(numpy_safe_globals() if allow_numpy else []):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is long (and suggests weights_only=False); keep the line that names the refused object
        lines = [re.sub(r'\x1b\[[0-9;]*m', '', line).strip() for line in str(e).splitlines()]
        culprit = next((m.group(1) for line in lines for m in [re.search(r'GLOBAL ([\w.]+)', line)] if m), None)
        if culprit is None:  # not a pickle that names objects: a damaged file
            reason = next((x for x in lines if 'WeightsUnpickler error' in x), type(e).__name__)
            raise NotACheckpointError(f'{path} is not a {what} or is damaged ({reason}).') from None
        allowed = 'tensors, containers and numpy scalars' if allow_numpy else 'tensors and plain Python values'
        raise pickle.UnpicklingError(
            f'{path} holds objects other than {allowed} (the first is {culprit}), so it was not loaded. Unpickling '
            f'such a file can run code stored in it; if you trust the file, {trust_hint}.') from None
    except Exception as e:  # noqa: BLE001 - torn zip archives, truncated pickles: the unpickler's errors vary
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise NotACheckpointError(f'{path} is not a {what} or is damaged ({type(e).__name__}: {first})') from None


def load_official_checkpoint(path: Union[str, Path], trust_pickle: bool = False) -> Any:
    """Load an authors' ``torch.save`` file without executing arbitrary code (:func:`load_torch_file`).

    Args:
        path: the checkpoint file.
        trust_pickle: allow any pickled object (``weights_only=False``). Only for files from a source you trust:
            unpickling can run code.

    Raises:
        pickle.UnpicklingError: the file holds objects outside tensors, containers and numpy scalars (the message
            names the object and how to proceed), or it is not a checkpoint.
    """
    return load_torch_file(path, trust_pickle=trust_pickle, allow_numpy=True,
                           trust_hint='pass trust_pickle=True (`reidzoo convert --trust-pickle`)')


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The flat tensor dict inside a training checkpoint.

    Handles ``{'state_dict': ..., 'rank1': ..., 'epoch': ...}`` (also ``'model'``) and bare state dicts, strips
    DataParallel's ``module.`` prefix, and drops DataParallel-wrapped duplicates such as STMP's
    ``feature.module.feature.*`` (the same tensors as ``module.feature.feature.*``); a ``.module.`` segment without
    a twin is unwrapped instead.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'Expected a checkpoint dict or a state dict, got {type(checkpoint).__name__}.')
    sd = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f'The checkpoint is not a state dict: entries {bad[:5]} are not tensors (top-level keys: '
                         f'{sorted(checkpoint)[:10]}).')
    sd = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if '.module.' not in key:
            out.setdefault(key, value)
            continue
        twin = key.replace('.module.', '.', 1)
        if twin in sd:
            if sd[twin].shape != value.shape:
                raise ValueError(f'{key} looks like a DataParallel copy of {twin} but has shape {tuple(value.shape)} '
                                 f'vs {tuple(sd[twin].shape)}.')
            continue  # the duplicate of a wrapped sub-module
        out[twin] = value
    return out


def _family_module(family: str):
    family = family.removesuffix('-official')
    if family not in FAMILIES:
        raise ValueError(f'Unknown checkpoint family {family!r}; choose one of {sorted(FAMILIES)}.')
    module = importlib.import_module(f'reidzoo.models.{family}')
    if not hasattr(module, 'convert_official_state_dict'):
        raise ValueError(f'reidzoo.models.{family} has no convert_official_state_dict: this reidzoo cannot convert '
                         f'{family} checkpoints.')
    return family, module


def _resolve_arch(family: str, module, arch: Optional[str]) -> Optional[str]:
    """``arch``, else the family's default; families that cannot infer it from the weights need one."""
    arch = arch or FAMILIES[family][1]
    if arch is None and not hasattr(module, 'official_model_args'):
        names = [n for n in getattr(module, '__all__', []) if n.startswith(family)]
        raise ValueError(f'Pass the architecture of this {family} checkpoint (arch=... / --arch), one of {names}.')
    return arch


def convert_official_checkpoint(
        family: str,
        checkpoint: Union[str, Path, Mapping[str, Any]],
        arch: Optional[str] = None,
        trust_pickle: bool = False,
        **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Convert an authors' checkpoint to a reidzoo state dict.

    Args:
        family: ``'sinet'``, ``'cosam'`` or ``'stmp'`` (``'sinet-official'`` etc. are accepted).
        checkpoint: a file path, or the object ``torch.load`` returned (a checkpoint dict or a bare state dict).
        arch: the reidzoo architecture (``None``: the family infers it when it can).
        trust_pickle: see :func:`load_official_checkpoint`.
        **kwargs: passed to the family's ``convert_official_state_dict``.

    Returns:
        Tensors keyed for ``reidzoo.create_model(arch, ...)``; they load with strict matching.
    """
    family, module = _family_module(family)
    arch = _resolve_arch(family, module, arch)
    if isinstance(checkpoint, (str, Path)):
        checkpoint = load_official_checkpoint(checkpoint, trust_pickle=trust_pickle)
    return module.convert_official_state_dict(unwrap_state_dict(checkpoint), arch, **kwargs)


def build_converted_model(
        family: str,
        state_dict: dict[str, torch.Tensor],
        arch: Optional[str] = None,
        **model_kwargs: Any,
) -> nn.Module:
    """The reidzoo model for a converted state dict, with the weights loaded strictly.

    The architecture and its kwargs come from the family's ``official_model_args`` when it has one; otherwise
    ``arch`` is required and ``num_classes`` is read from the classifier weight.
    """
    family, module = _family_module(family)
    inferred: dict[str, Any] = {}
    arch = _resolve_arch(family, module, arch)
    if hasattr(module, 'official_model_args'):
        arch, inferred = module.official_model_args(state_dict, arch)
    if 'num_classes' not in inferred:
        classifier = get_arch_default_cfg(arch).get('classifier', 'classifier')
        weight = state_dict.get(f'{classifier}.weight')
        inferred['num_classes'] = int(weight.shape[0]) if weight is not None else 0
    model = create_model(arch, **{**inferred, **model_kwargs})
    load_state_dict_checked(model, state_dict, source=f'the converted {family} checkpoint')
    return model


# --- writing ------------------------------------------------------------------------------------------------------
def save_converted(model: nn.Module, out_dir: Union[str, Path], source: dict[str, Any],
                   dataset: Optional[str] = None) -> Path:
    """Write a reidzoo repo folder (``reidzoo.hub.save_pretrained``; a minimal ``model.safetensors`` +
    ``config.json`` writer when that is unavailable)."""
    try:
        from .hub import save_pretrained
    except ImportError:
        save_pretrained = None
    if save_pretrained is not None:
        return save_pretrained(model, out_dir, dataset=dataset, recipe=source)
    from safetensors.torch import save_file
    out_dir = Path(out_dir)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    weights = out_dir / 'model.safetensors'
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata={'format': 'pt'}))
    cfg = model.pretrained_cfg
    config = {
        'architecture': cfg['architecture'], 'num_classes': model.num_classes, 'num_features': model.num_features,
        'model_args': cfg.get('model_args', {}),
        'pretrained_cfg': {k: v for k, v in cfg.items() if k not in ('model_args', 'architecture')},
        'filename': weights.name, 'sha256': sha256_file(weights), 'num_bytes': weights.stat().st_size, 'source': source,
        **({'dataset': dataset} if dataset else {}),
    }
    text = json.dumps(config, indent=2, default=list) + '\n'
    atomic_write(out_dir / 'config.json', lambda tmp: tmp.write_text(text, encoding='utf-8'))
    return out_dir


def convert_checkpoint(
        family: str,
        src: Union[str, Path],
        out_dir: Union[str, Path],
        arch: Optional[str] = None,
        dataset: Optional[str] = None,
        trust_pickle: bool = False,
) -> nn.Module:
    """Convert the authors' checkpoint ``src`` of ``family`` (``'sinet'``, ``'cosam'``, ``'stmp'``) to a Hub repo folder.

    Writes ``out_dir/model.safetensors`` and ``config.json`` (with the source file's name and sha256 as provenance) and
    returns the loaded model.
    """
    src = Path(src)
    state_dict = convert_official_checkpoint(family, src, arch, trust_pickle=trust_pickle)
    model = build_converted_model(family, state_dict, arch)
    source = {'type': 'converted', 'repository': FAMILIES[family][0], 'file': src.name, 'sha256': sha256_file(src)}
    if family in _LICENSES:
        model.pretrained_cfg['license'] = _LICENSES[family]
    save_converted(model, out_dir, source, dataset=dataset)
    return model
