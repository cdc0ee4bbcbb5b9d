"""Shared pytest fixtures.

* ``hub_mirror``: a real Hugging Face Hub mirror (olah) on a free loopback port, started once per session and always
  stopped; publish folders to it with ``hub_mirror.publish(folder, 'org/name')`` or
  :func:`reidzoo.hub_mirror.publish_folder_to_mirror`.
* ``hub_env``: points this test's Hub access at the mirror with a fresh, private Hub cache. huggingface_hub reads
  ``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` / ``HF_HOME`` only when it is imported, but reidzoo.hub re-reads them per call,
  so setting them here works in-process; code that calls huggingface_hub directly must pass ``endpoint=`` or run in
  a subprocess with the environment set first (``subprocess_env``).
* ``manifest_env``: writes an extra weights manifest and adds it through ``REIDZOO_MANIFESTS``.
* ``make_synthvid``: generates a small SynthVID folder (``build_dataset('synthvid', ...)`` kwargs) and returns its root.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_HF_VARS = ('HF_ENDPOINT', 'HF_HOME', 'HF_HUB_CACHE', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')


@pytest.fixture(scope='session')
def hub_mirror(tmp_path_factory):
    """An olah Hub mirror serving git repos from a session temp dir (``.endpoint``, ``.publish``)."""
    from reidzoo.hub_mirror import LocalHubMirror
    with LocalHubMirror(tmp_path_factory.mktemp('hub-mirror')) as mirror:
        yield mirror


@pytest.fixture
def hub_env(hub_mirror, tmp_path, monkeypatch) -> dict[str, str]:
    """Environment for reidzoo.hub calls in this test: the mirror as endpoint, an empty cache, online."""
    for var in _HF_VARS:
        monkeypatch.delenv(var, raising=False)
    env = {'HF_ENDPOINT': hub_mirror.endpoint, 'HF_HOME': str(tmp_path / 'hf-home'), 'HF_HUB_OFFLINE': '0',
           'HF_HUB_DISABLE_TELEMETRY': '1'}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # a CI that exported HF_HUB_OFFLINE=1 before pytest imported huggingface_hub must not turn these tests offline
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    return env


@pytest.fixture
def subprocess_env() -> Callable[..., dict[str, str]]:
    """``make(**vars)``: a copy of os.environ without HF_* settings, plus ``vars``, for a child Python process."""
    def make(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _HF_VARS}
        env.update({'OMP_NUM_THREADS': '1', 'HF_HUB_DISABLE_TELEMETRY': '1', 'PYTHONPATH': str(REPO_ROOT)})
        env.update(extra)
        return env
    return make


@pytest.fixture
def manifest_env(tmp_path, monkeypatch) -> Callable[[dict[str, Any]], Path]:
    """``add(weights)``: write ``{'schema_version': 1, 'weights': weights}`` and add it via ``REIDZOO_MANIFESTS``."""
    counter = iter(range(1_000_000))

    def add(weights: dict[str, Any]) -> Path:
        path = tmp_path / f'manifest-{next(counter)}.json'
        path.write_text(json.dumps({'schema_version': 1, 'weights': weights}, indent=2))
        current = os.environ.get('REIDZOO_MANIFESTS', '')
        monkeypatch.setenv('REIDZOO_MANIFESTS', os.pathsep.join(p for p in (current, str(path)) if p))
        return path

    monkeypatch.delenv('REIDZOO_MANIFESTS', raising=False)
    return add


@pytest.fixture(scope='session')
def make_synthvid(tmp_path_factory) -> Callable[..., str]:
    """``make_synthvid(name, **build_dataset_kwargs) -> root``: a new generated SynthVID folder on each call."""
    from reidzoo.data import build_dataset

    def make(name: str, **kwargs: Any) -> str:
        root = tmp_path_factory.mktemp(name) / 'synthvid'
        build_dataset('synthvid', str(root), **kwargs)
        return str(root)
    return make
