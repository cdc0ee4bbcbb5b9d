"""The weights manifest: which trained weights exist, where, and what they score.

``weights_manifest.json`` at the repository root is the project's list; ``REIDZOO_MANIFESTS`` (paths separated by
``os.pathsep``) adds an organisation's own manifests, later files overriding earlier entries of the same name.
Each entry becomes the pretrained cfg of its ``arch.tag`` (timm's ``default_cfgs`` role). The schema is
``reidzoo/weights_manifest.schema.json``; every file is validated when it is loaded.
"""
from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

__all__ = ['load_manifest', 'manifest_paths', 'manifest_entry_to_cfg', 'validate_manifest', 'MANIFEST_SCHEMA_PATH',
           'ManifestError']

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
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f'Manifest {path} (from {MANIFEST_ENV} or the repo root) does not exist.') from None
    except json.JSONDecodeError as e:
        raise ManifestError(f'Manifest {path} is not valid JSON: {e}') from None
    validate_manifest(data, str(path))
    return data['weights']


def load_manifest() -> dict[str, dict[str, Any]]:
    """All manifest entries, ``'arch.tag' -> entry``, merged in :func:`manifest_paths` order."""
    key = tuple(str(p) for p in manifest_paths())
    mtimes = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in map(Path, key))
    return dict(_load_cached(key, mtimes))


@lru_cache(maxsize=8)
def _load_cached(paths: tuple[str, ...], mtimes: tuple[int, ...]) -> tuple[tuple[str, dict[str, Any]], ...]:
    merged: dict[str, dict[str, Any]] = {}
    for p in paths:
        merged.update(_read(Path(p)))
    return tuple(merged.items())


def manifest_entry_to_cfg(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry as pretrained-cfg fields (weight source, provenance, and preprocessing overrides)."""
    cfg = {k: entry[k] for k in ('hf_hub_id', 'revision', 'filename', 'sha256', 'num_bytes', 'dataset', 'protocol',
                                  'metrics', 'license', 'source', 'num_classes') if k in entry}
    cfg.update(entry.get('pretrained_cfg', {}))
    return cfg
