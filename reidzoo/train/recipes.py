"""Training recipes: YAML files that hold everything a run needs, and ``--set key=value`` overrides.

A recipe is data. The files under ``reidzoo/train/recipes/`` write down what each paper and its authors' code used
(batch, clip length and sampling, augmentation, optimiser with per-group learning rates, schedule, losses and their
weights, the ImageNet starting point as a timm name); where the paper and the code disagree, ``notes:`` says which one
the recipe follows. Every key has a default in :data:`DEFAULTS`, and an unknown key or a value of the wrong type
(``--set optim.lr=abc``) is an error naming the key, so a typo never silently trains something else.

The frame size is stated once, as the model's ``model_kwargs.img_size``; the model's cfg (and with it the transforms)
follows it. ``data.input_size`` is kept only so that older recipes load; it must then equal ``img_size``.

>>> recipe = load_recipe('sinet_resnet50_mars', overrides=['optim.lr=1e-4', 'data.root=/data/mars'])
>>> recipe.optim.lr
0.0001
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import yaml

__all__ = ['DEFAULTS', 'Recipe', 'RecipeError', 'list_recipes', 'load_recipe', 'recipe_path', 'apply_overrides']

RECIPE_DIR = Path(__file__).parent / 'recipes'

# Every recipe key, with its default. ``None`` means "take it from the model's pretrained_cfg" where that makes sense.
DEFAULTS: dict[str, Any] = {
    'name': None,
    'base': None,  # a recipe this one extends (name or path relative to this file); its keys are merged under ours
    'notes': '',  # where paper and code disagree, which one this recipe follows
    'model': None,  # registered architecture name, e.g. 'sinet_resnet50'
    'model_kwargs': {},  # e.g. backbone: resnet50.tv_in1k (a timm name with the authors' ImageNet weights)
    'pretrained_backbone': True,  # start the backbone from timm's ImageNet weights (timm's own Hub path)
    'data': {
        'dataset': None,  # reidzoo.data.build_dataset name
        'root': None,  # default: $REIDZOO_DATA/<dataset>
        'dataset_kwargs': {},
        'input_size': None,  # deprecated: the frame size is model_kwargs.img_size (if given, it must be equal)
        'seq_len': 4,  # frames per training clip
        'sampling': 'restricted',  # train sampling mode (reidzoo.data.sampling.TRAIN_MODES)
        'num_ids': 8,  # P identities per (global) batch
        'num_instances': 4,  # K clips per identity
        'min_frames': 1,  # drop training tracklets shorter than this (STMP drops < 8)
        'num_workers': 4,
        'augment': {},  # reidzoo.data.transforms.build_clip_transform overrides (hflip_prob, erase_prob, ...)
    },
    'optim': {
        'name': 'adam',  # 'adam' | 'adamw' | 'sgd'
        'lr': 3e-4,
        'weight_decay': 5e-4,
        'momentum': 0.9,  # sgd
        'nesterov': False,  # sgd
        'betas': [0.9, 0.999],  # adam
        # per-parameter learning-rate scales: [{'params': 'glob on parameter names', 'lr_scale': 0.1}], first wins
        'param_groups': [],
    },
    'schedule': {
        'epochs': 10,
        'name': 'multistep',  # 'multistep' | 'step' | 'constant' | 'cosine'
        'milestones': [],  # epochs (multistep)
        'step_size': 0,  # epochs (step)
        'gamma': 0.1,
        'warmup_epochs': 0,  # linear warm-up from warmup_factor x lr
        'warmup_factor': 0.01,
        'iters_per_epoch': None,  # default (and at most): one pass of the P x K sampler
    },
    'loss': {},  # term name -> {type, weight, input, params} (reidzoo.train.losses.ReIDLoss)
    'eval': {
        'protocol': None,  # default: the dataset's standard protocol
        'every_epochs': 0,  # 0: only at the end
        'at_end': True,  # evaluate the final weights (metrics.json, the model card's numbers)
        'test_sampling': None,  # default: model.pretrained_cfg['test_sampling']
        'seq_len': None,  # default: model.pretrained_cfg['num_frames']
        'distance': None,  # default: model.pretrained_cfg['distance']
        'batch_size': 32,  # clips per forward
        'num_workers': 4,
    },
    'train': {
        'seed': 0,
        'amp': 'auto',  # 'auto' (fp16 on CUDA, off on CPU) | 'fp16' | 'bf16' | 'none'
        'channels_last': 'auto',  # 'auto' = on for CUDA
        'device': 'auto',
        'deterministic': False,  # torch.use_deterministic_algorithms (slower on GPU)
        'sync_bn': False,  # convert BatchNorm to SyncBatchNorm under DDP
        'find_unused_parameters': False,  # DDP: for models with parameters a training forward may skip
        'grad_clip': None,  # max gradient norm
        'checkpoint_every': 500,  # steps; a checkpoint is also written at every epoch end
        'log_every': 10,  # steps between loss lines in log.jsonl
        'max_steps': None,  # stop early (debugging); the schedule still counts the full epochs
        'progress': True,  # tqdm bars
    },
}


# The types a leaf key accepts where its default does not say (None, or 'auto' beside a bool). Keys not listed take
# the type of their default (an int key accepts a float only if it is integral: 1e3 from YAML is 1000.0).
_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    'name': (str,), 'base': (str,), 'model': (str,), 'notes': (str,),
    'data.dataset': (str,), 'data.root': (str,), 'data.input_size': (list,),
    'schedule.iters_per_epoch': (int,),
    'eval.protocol': (str,), 'eval.test_sampling': (str,), 'eval.seq_len': (int,), 'eval.distance': (str,),
    'train.amp': (str, bool), 'train.channels_last': (str, bool), 'train.device': (str,),
    'train.grad_clip': _NUMBER, 'train.max_steps': (int,),
}
# element types of list-valued keys
_ITEM_TYPES: dict[str, tuple[type, ...]] = {
    'schedule.milestones': (int,), 'optim.betas': _NUMBER, 'data.input_size': (int,),
}
_TYPE_NAMES = {int: 'an integer', float: 'a number', bool: 'true or false', str: 'a string', list: 'a list',
               dict: 'a mapping'}


class RecipeError(ValueError):
    """A recipe file or override that cannot be used (names the file and the key)."""


def _allowed_types(dotted: str, default: Any) -> Optional[tuple[type, ...]]:
    if dotted in _TYPES:
        return _TYPES[dotted]
    if default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    return _NUMBER if isinstance(default, float) else (type(default),)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int subclass: `true` is no epoch count, and 1 is no switch
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _checked(dotted: str, value: Any, default: Any, source: str) -> Any:
    """``value`` for the leaf key ``dotted`` if its type fits (integral floats become ints), else a RecipeError."""
    types = _allowed_types(dotted, default)
    if value is None or types is None:  # None restores a default; a key without a known type is free-form
        return value
    if int in types and float not in types and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is(value, types):
        want = ' or '.join(_TYPE_NAMES.get(t, t.__name__) for t in types if not (t is int and float in types))
        got = 'a boolean' if isinstance(value, bool) else _TYPE_NAMES.get(type(value), type(value).__name__)
        raise RecipeError(f'{source}: recipe key {dotted!r} must be {want}, got {value!r} ({got}).')
    items = _ITEM_TYPES.get(dotted)
    if items and isinstance(value, list):
        value = [int(v) if int in items and isinstance(v, float) and v.is_integer() else v for v in value]
        bad = [v for v in value if not _is(v, items)]
        if bad:
            want = ' or '.join(_TYPE_NAMES[t] for t in items if not (t is int and float in items))
            raise RecipeError(f'{source}: every item of recipe key {dotted!r} must be {want}, got {bad[0]!r} in '
                              f'{value!r}.')
    return value


class Recipe(dict):
    """A recipe: a nested dict with attribute access (``recipe.optim.lr``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(key) from None
        return Recipe(value) if isinstance(value, dict) and not isinstance(value, Recipe) else value

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def to_dict(self) -> dict[str, Any]:
        """A plain deep copy (what is written to ``RUN_DIR/recipe.yaml``)."""
        return _plain(self)

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def list_recipes() -> list[str]:
    """Names of the recipes shipped with reidzoo (files starting with ``_`` are shared bases, not listed)."""
    return sorted(p.stem for p in RECIPE_DIR.glob('*.yaml') if not p.stem.startswith('_'))


def recipe_path(name_or_path: Union[str, Path]) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = RECIPE_DIR / f'{name_or_path}.yaml'
    if shipped.is_file():
        return shipped
    close = difflib.get_close_matches(str(name_or_path), list_recipes(), n=3)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise RecipeError(f'No recipe file {name_or_path!r} and no shipped recipe of that name.{hint} '
                      f'Shipped recipes: {", ".join(list_recipes())}.')


def _merge(base: dict[str, Any], update: dict[str, Any], source: str, schema: Optional[dict[str, Any]],
           prefix: str = '') -> None:
    """Deep-merge ``update`` into ``base``, rejecting keys the schema does not know (free-form dicts excepted)."""
    for key, value in update.items():
        dotted = f'{prefix}{key}'
        if schema is not None and key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=3)
            hint = f' Did you mean {", ".join(prefix + c for c in close)}?' if close else ''
            raise RecipeError(f'{source}: unknown recipe key {dotted!r}.{hint} '
                              f'Known keys here: {", ".join(prefix + k for k in schema)}.')
        sub_schema = schema.get(key) if schema is not None else None
        free_form = isinstance(sub_schema, dict) and not sub_schema  # model_kwargs, loss, augment, ...
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, source, None if free_form or schema is None else sub_schema, dotted + '.')
        else:
            if isinstance(sub_schema, dict) and value is not None and not isinstance(value, dict):
                raise RecipeError(f'{source}: recipe key {dotted!r} must be a mapping, got {value!r}.')
            if schema is not None and not isinstance(sub_schema, dict):
                value = _checked(dotted, value, sub_schema, source)
            base[key] = copy.deepcopy(value)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if '=' not in item:
        raise RecipeError(f'Override {item!r} must look like key.subkey=value (e.g. optim.lr=1e-4).')
    key, raw = item.split('=', 1)
    key = key.strip()
    if not key:
        raise RecipeError(f'Override {item!r} has an empty key.')
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise RecipeError(f'Override {item!r}: the value is not valid YAML ({e}).') from e
    # YAML 1.1 reads '1e-4' as a string; scientific notation is almost always meant as a number
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split('.'), value


def apply_overrides(recipe: dict[str, Any], overrides: Union[Iterable[str], dict[str, Any], None],
                    source: str = '--set') -> None:
    """Apply ``['optim.lr=1e-4', 'loss.triplet.margin=0.4']`` (or a ``{'optim.lr': 1e-4}`` dict) in place."""
    if not overrides:
        return
    items = [(k.split('.'), v) for k, v in overrides.items()] if isinstance(overrides, dict) else \
        [_parse_override(o) for o in overrides]
    for keys, value in items:
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        # a dotted override replaces the leaf; dict values merge as in files
        _merge(recipe, nested, f'{source} {".".join(keys)}', DEFAULTS)


def _fix_numbers(value: Any) -> Any:
    """YAML 1.1 leaves ``3e-4`` (no dot) as a string: read such strings as numbers."""
    if isinstance(value, dict):
        return {k: _fix_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in 'e.') and value.strip()[0] in '+-.0123456789' \
                else value
        except ValueError:
            return value
    return value


def load_recipe(
        name_or_path: Union[str, Path, dict[str, Any]],
        overrides: Union[Iterable[str], dict[str, Any], None] = None,
) -> Recipe:
    """Load a recipe (shipped name, YAML path or dict), fill defaults, apply overrides and check it.

    Args:
        name_or_path: ``'sinet_resnet50_mars'``, ``'path/to/recipe.yaml'`` or an already parsed dict.
        overrides: ``key.subkey=value`` strings (values parsed as YAML) or a dict of dotted keys.

    Raises:
        RecipeError: unknown key, wrong type or missing required value; the message names the file and the key.
    """
    if isinstance(name_or_path, dict):
        source, raw = '<dict>', copy.deepcopy(name_or_path)
        raw = _with_base(raw, source, None, ())
    else:
        source, raw = _read(name_or_path, None, ())
    recipe = copy.deepcopy(DEFAULTS)
    _merge(recipe, raw, source, DEFAULTS)
    recipe['base'] = None  # resolved: the stored recipe is self-contained
    apply_overrides(recipe, overrides)
    if overrides:  # a bad value may come from either: name both
        given = [f'{k}={v}' for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides)
        source = f'{source} with --set {" ".join(given)}'
    _validate(recipe, source)
    return Recipe(recipe)


def _read(name_or_path: Union[str, Path], relative_to: Optional[Path], chain: tuple[str, ...]
          ) -> tuple[str, dict[str, Any]]:
    """A recipe file's mapping with its ``base:`` chain merged in (the file's own keys win)."""
    candidate = Path(name_or_path)
    if relative_to is not None and not candidate.is_absolute() and (relative_to / candidate).is_file():
        candidate = relative_to / candidate
    path = recipe_path(candidate if candidate.is_file() else name_or_path)
    source = str(path)
    if source in chain:
        raise RecipeError(f'{source}: recipe bases form a cycle ({" -> ".join(chain + (source,))}).')
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f'{path}: not valid YAML ({e}).') from e
    if not isinstance(raw, dict):
        raise RecipeError(f'{path}: a recipe must be a YAML mapping, got {type(raw).__name__}.')
    raw.setdefault('name', path.stem)
    return source, _with_base(_fix_numbers(raw), source, path.parent, chain + (source,))


def _with_base(raw: dict[str, Any], source: str, folder: Optional[Path], chain: tuple[str, ...]) -> dict[str, Any]:
    base = raw.pop('base', None)
    if not base:
        return raw
    _, merged = _read(base, folder, chain)
    merged.pop('name', None)
    _merge(merged, raw, source, None)
    return merged


def _validate(recipe: dict[str, Any], source: str) -> None:
    if not recipe['model']:
        raise RecipeError(f'{source}: the recipe names no model (set model: <architecture>, e.g. tp_resnet50).')
    if not recipe['data']['dataset']:
        raise RecipeError(f'{source}: the recipe names no dataset (set data.dataset, e.g. mars or synthvid).')
    if not recipe['loss']:
        raise RecipeError(f'{source}: the recipe has no loss terms (set loss.<name>: {{type: ..., weight: ...}}).')
    data, optim, sched = recipe['data'], recipe['optim'], recipe['schedule']
    ev, train = recipe['eval'], recipe['train']
    # the P x K batch (data.num_ids x data.num_instances) and the evaluation batch must hold something
    for key, value, low in (('data.seq_len', data['seq_len'], 1), ('data.num_ids', data['num_ids'], 1),
                            ('data.num_instances', data['num_instances'], 1),
                            ('data.min_frames', data['min_frames'], 1),
                            ('eval.batch_size', ev['batch_size'], 1), ('data.num_workers', data['num_workers'], 0),
                            ('eval.num_workers', ev['num_workers'], 0), ('eval.every_epochs', ev['every_epochs'], 0),
                            ('train.checkpoint_every', train['checkpoint_every'], 0),
                            ('train.log_every', train['log_every'], 0),
                            ('train.max_steps', train['max_steps'], 1), ('eval.seq_len', ev['seq_len'], 1),
                            ('schedule.iters_per_epoch', sched['iters_per_epoch'], 1)):
        if value is not None and (not _is(value, (int,)) or value < low):
            kind = 'a positive integer' if low else 'an integer >= 0'
            raise RecipeError(f'{source}: {key} must be {kind}, got {value!r}.')
    for key, value in (('optim.lr', optim['lr']), ('optim.weight_decay', optim['weight_decay']),
                       ('train.grad_clip', train['grad_clip']), ('schedule.warmup_epochs', sched['warmup_epochs'])):
        if value is not None and not (_is(value, _NUMBER) and 0 <= value < float('inf')):
            raise RecipeError(f'{source}: {key} must be a finite number >= 0, got {value!r}.')
    size = data['input_size']
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise RecipeError(f'{source}: data.input_size must be [H, W] (positive integers), got {size!r}; better, drop '
                          f'it: the frame size is model_kwargs.img_size.')
    if optim['name'] not in ('adam', 'adamw', 'sgd'):
        raise RecipeError(f'{source}: optim.name must be adam, adamw or sgd, got {optim["name"]!r}.')
    if sched['name'] not in ('multistep', 'step', 'constant', 'cosine'):
        raise RecipeError(f'{source}: schedule.name must be multistep, step, constant or cosine, '
                          f'got {sched["name"]!r}.')
    if not _is(sched['epochs'], (int,)) or sched['epochs'] < 1:
        raise RecipeError(f'{source}: schedule.epochs must be a positive integer, got {sched["epochs"]!r}.')
    for group in optim['param_groups']:
        if not isinstance(group, dict) or 'params' not in group or 'lr_scale' not in group:
            raise RecipeError(f'{source}: each optim.param_groups entry needs params (a glob on parameter names) and '
                              f'lr_scale, got {group!r}.')
    for name, spec in recipe['loss'].items():
        if spec is not None and not isinstance(spec, dict):
            raise RecipeError(f'{source}: loss.{name} must be a mapping (type, weight, ...), got {spec!r}.')
    if recipe['train']['amp'] not in ('auto', 'fp16', 'bf16', 'none', False, True):
        raise RecipeError(f'{source}: train.amp must be auto, fp16, bf16 or none, got {recipe["train"]["amp"]!r}.')


def default_data_root(dataset: str) -> Optional[str]:
    """``$REIDZOO_DATA/<dataset>`` when ``REIDZOO_DATA`` is set."""
    base = os.environ.get('REIDZOO_DATA')
    return str(Path(base) / dataset) if base else None
