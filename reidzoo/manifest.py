"""The weights manifest: which trained weights exist, where, and what they score.

``weights_manifest.json`` at the repository root is the project's list; ``REIDZOO_MANIFESTS`` (paths separated by
``os.pathsep``) adds an organisation's own manifests, later files overriding earlier entries of the same name.
Each entry becomes the pretrained cfg of its ``arch.tag`` (timm's ``default_cfgs`` role). The schema is
``reidzoo/weights_manifest.schema.json``; every file is validated when it is loaded. A file that cannot be used is
skipped with a warning naming it: only loading a tag that file lists fails (with the file's error), so one
organisation's broken manifest never breaks random-init models or other weights.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

__all__ = ['load_manifest', 'manifest_paths', 'manifest_entry_to_cfg', 'validate_manifest', 'get_manifest_entry',
           'manifest_problems', 'MANIFEST_SCHEMA_PATH', 'ManifestError']

MANIFEST_SCHEMA_PATH = Path(__file__).with_name('weights_manifest.schema.json')
MANIFEST_ENV = 'REIDZOO_MANIFESTS'


class ManifestError(ValueError):
    """A manifest file that does not follow the schema."""


def _default_manifest_path() -> Optional[Path]:
    candidates = [
        Path(__file__).resolve().parent.parent / 'weights_manifest.json',  # repo checkout / editable / torch.hub
        Path(sys.prefix) / 'share' / 'reidzoo' / 'weights_manifest.json',  # installed wheel (setup.cfg data_files)
    ]
    return next((p for p in candidates if p.is_file()), None)


def manifest_paths() -> list[Path]:
    """The manifest files in load order: the project's, then those named by ``REIDZOO_MANIFESTS``."""
    paths = [p for p in [_default_manifest_path()] if p is not None]
    for item in os.environ.get(MANIFEST_ENV, '').split(os.pathsep):
        if item.strip():
            paths.append(Path(item.strip()).expanduser())
    return paths


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(MANIFEST_SCHEMA_PATH.read_text())


def validate_manifest(data: Any, source: str = '<manifest>') -> None:
    """Raise :class:`ManifestError` naming the file, the entry and the problem if ``data`` breaks the schema."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f'  at {"/".join(map(str, e.absolute_path)) or "<root>"}: {e.message}' for e in errors[:10]]
        raise ManifestError(f'{source} does not follow {MANIFEST_SCHEMA_PATH.name}:\n' + '\n'.join(lines))


def _read(path: Path) -> dict[str, Any]:
    """The ``weights`` of one manifest file; :class:`ManifestError` naming the file if it cannot be used."""
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ManifestError(f'Manifest {path} (from {MANIFEST_ENV} or the repo root) does not exist.') from None
    except IsADirectoryError:
        raise ManifestError(f'Manifest {path} (from {MANIFEST_ENV}) is a directory: name the JSON file itself.') \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f'Manifest {path} cannot be read: {e}') from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f'Manifest {path} is not valid JSON: {e}') from None
    validate_manifest(data, str(path))
    return data['weights']


def _declared_names(path: Path) -> Optional[frozenset[str]]:
    """The ``arch.tag`` names a manifest that failed validation lists, or ``None`` if they cannot be read."""
    try:
        weights = json.loads(path.read_text(encoding='utf-8')).get('weights')
    except (OSError, ValueError, AttributeError):
        return None
    return frozenset(weights) if isinstance(weights, dict) else None


@dataclass(frozen=True)
class _Problem:
    """A manifest file that could not be used, and the names it would have served (``None``: unknown)."""
    path: Path
    error: ManifestError
    names: Optional[frozenset[str]]

    def covers(self, name: str) -> bool:
        return self.names is None or name in self.names


def _state() -> tuple[dict[str, dict[str, Any]], tuple[_Problem, ...]]:
    key = tuple(str(p) for p in manifest_paths())
    mtimes = tuple(_mtime(Path(p)) for p in key)
    entries, problems = _load_cached(key, mtimes)
    return dict(entries), problems


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def load_manifest(strict: bool = False) -> dict[str, dict[str, Any]]:
    """All usable manifest entries, ``'arch.tag' -> entry``, merged in :func:`manifest_paths` order.

    A file that cannot be used (missing, a directory, not JSON, against the schema) is skipped with a warning naming
    it, so architectures and other weights keep working; asking for a tag it would serve raises its error (see
    :func:`get_manifest_entry`). ``strict=True`` raises the first such :class:`ManifestError` instead.
    """
    entries, problems = _state()
    if strict and problems:
        raise problems[0].error
    return entries


def manifest_problems() -> list[ManifestError]:
    """The errors of the manifest files that are currently skipped (empty when every file is usable)."""
    return [p.error for p in _state()[1]]


def get_manifest_entry(name: str) -> Optional[dict[str, Any]]:
    """The entry of ``'arch.tag'``, or ``None`` if no manifest lists it.

    Raises:
        ManifestError: ``name`` is not in the usable files and a skipped file lists it, or may list it (a file that
            is not readable JSON): the error names that file and what is wrong with it.
    """
    entries, problems = _state()
    # a later file overrides earlier ones, so a broken file after the one serving `name` could hold its newer entry
    relevant = [p for p in problems if p.covers(name) and (name not in entries or p.names is not None)]
    if relevant:
        detail = '\n'.join(str(p.error) for p in relevant)
        raise ManifestError(f'{name} may be listed by a manifest that cannot be used; fix it (or remove it from '
                            f'{MANIFEST_ENV}) to load these weights:\n{detail}')
    entry = entries.get(name)
    return None if entry is None else dict(entry)


@lru_cache(maxsize=8)
def _load_cached(paths: tuple[str, ...], mtimes: tuple[int, ...]) \
        -> tuple[tuple[tuple[str, dict[str, Any]], ...], tuple[_Problem, ...]]:
    merged: dict[str, dict[str, Any]] = {}
    problems = []
    for p in map(Path, paths):
        try:
            merged.update(_read(p))
        except ManifestError as e:
            problems.append(_Problem(p, e, _declared_names(p) if p.is_file() else None))
            # once per file state (this function is cached on the files' mtimes): the rest of reidzoo keeps working
            warnings.warn(f'Skipping weights manifest {p}: {e}\nArchitectures and other weights still work; loading '
                          f'a tag this file lists raises this error until the file is fixed.', stacklevel=4)
    return tuple(merged.items()), tuple(problems)


def manifest_entry_to_cfg(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry as pretrained-cfg fields (weight source, provenance, and preprocessing overrides)."""
    cfg = {k: entry[k] for k in ('hf_hub_id', 'revision', 'filename', 'sha256', 'num_bytes', 'dataset', 'protocol',
                                  'metrics', 'license', 'source', 'num_classes') if k in entry}
    cfg.update(entry.get('pretrained_cfg', {}))
    return cfg
