"""Hugging Face Hub I/O: download and verify weights, write and read reidzoo repos, push them.

Every Hub request goes through ``huggingface_hub`` (``hf_hub_download``, ``HfApi``); reidzoo never builds a Hub URL.
So the usual environment works: ``HF_ENDPOINT`` (a mirror), ``HF_HUB_OFFLINE`` (cache only), ``HF_HOME`` /
``HF_HUB_CACHE`` (where the cache lives) and ``HF_TOKEN``. huggingface_hub reads these once, when it is imported;
the functions here read them again on every call (unless an explicit argument overrides them), so setting them
later in a running process works too.

A repo written by :func:`save_pretrained` (and uploaded by :func:`push_to_hub`) holds:

* ``model.safetensors``: the state dict (safetensors only, never pickle), metadata ``format=pt``, ``reidzoo.arch``;
* ``config.json``: ``architecture``, ``num_classes``, ``num_features``, ``model_args``, ``pretrained_cfg``
  (preprocessing: input size, frames, mean/std, test sampling, distance, ...), and the weights' ``sha256`` and
  ``num_bytes``, plus how they were made and what they score (``dataset``, ``protocol``, ``metrics``, ``source``);
* ``README.md``: a model card whose ``model-index`` holds the metrics, with the protocol in ``metric_config``.

Such a repo loads with ``reidzoo.create_model('hf-hub:org/name@<commit>', pretrained=True)`` or, as a folder,
``reidzoo.create_model('local-dir:/path', pretrained=True)``. Published weights are listed in
``weights_manifest.json``: ``reidzoo push`` prints the entry to add.

Every downloaded weight file is checked against its ``num_bytes`` and ``sha256`` before it is loaded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from ._atomic import atomic_write, atomic_write_text
from .spec.model_cfg import check_config_json, merge_model_cfg
from .version import __version__

__all__ = [
    'download_weights', 'load_safetensors', 'load_model_config', 'save_pretrained', 'push_to_hub', 'manifest_entry',
    'save_safetensors', 'verify_weights_file', 'sha256_file', 'WeightsIntegrityError', 'WeightsNotFoundError',
    'HubEndpointError', 'WEIGHTS_NAME', 'CONFIG_NAME', 'CARD_NAME',
]

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = 'model.safetensors'
CONFIG_NAME = 'config.json'
CARD_NAME = 'README.md'
LIBRARY_NAME = 'reidzoo'
_COMMIT_RE = re.compile(r'^[0-9a-f]{40}$')
_TRUE = {'1', 'on', 'yes', 'true'}

# pretrained-cfg fields that describe how to feed and score the model; they travel with the weights in config.json
_PREPROCESS_KEYS = (
    'input_size', 'num_frames', 'mean', 'std', 'interpolation', 'crop_pct', 'test_sampling', 'distance',
    'classifier', 'first_conv', 'fixed_input_size', 'license',
)


class WeightsIntegrityError(RuntimeError):
    """A weight file whose size or sha256 differs from the one recorded for it (manifest or config.json)."""


class WeightsNotFoundError(FileNotFoundError):
    """Weights (or a repo's config.json) that cannot be obtained from the Hub, a mirror or the local cache."""


class HubEndpointError(ValueError):
    """An ``HF_ENDPOINT`` (or ``endpoint=``) that is not an http(s) URL."""


# --- environment -------------------------------------------------------------------------------------------------
def _env_flag(name: str) -> Optional[bool]:
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() in _TRUE


def _hub_settings(
        endpoint: Optional[str] = None,
        cache_dir: Union[str, Path, None] = None,
        local_files_only: Optional[bool] = None,
) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """``(endpoint, cache_dir, offline_reason)``: explicit arguments first, then the environment as it is now.

    ``None`` for endpoint / cache dir lets huggingface_hub use its own (import-time) defaults; ``offline_reason`` is
    ``None`` when the Hub may be contacted, else why not.
    """
    from huggingface_hub import constants
    origin = 'endpoint=' if endpoint else 'HF_ENDPOINT='
    endpoint = endpoint or os.environ.get('HF_ENDPOINT') or None
    if endpoint:
        endpoint = endpoint.strip().rstrip('/')
        # huggingface_hub would fail later with httpx's bare "UnsupportedProtocol" on the first request
        if not re.match(r'^https?://[^/]', endpoint):
            raise HubEndpointError(
                f'{origin}{endpoint!r} is not an http(s) URL: give the scheme and host, e.g. '
                f'HF_ENDPOINT=https://huggingface.co or HF_ENDPOINT=http://127.0.0.1:8090 (a mirror).')
    if cache_dir is None:
        if os.environ.get('HF_HUB_CACHE'):
            cache_dir = os.environ['HF_HUB_CACHE']
        elif os.environ.get('HF_HOME'):
            cache_dir = os.path.join(os.environ['HF_HOME'], 'hub')
    env_offline = _env_flag('HF_HUB_OFFLINE')
    if local_files_only:
        reason = 'local_files_only=True'
    elif local_files_only is None and env_offline:
        reason = f'HF_HUB_OFFLINE={os.environ["HF_HUB_OFFLINE"]}'
    elif constants.HF_HUB_OFFLINE:  # huggingface_hub stays offline whatever the environment says now
        reason = 'HF_HUB_OFFLINE was set when huggingface_hub was imported'
    else:
        reason = None
    return endpoint, (str(Path(cache_dir).expanduser()) if cache_dir else None), reason


def _describe_settings(endpoint: Optional[str], cache_dir: Optional[str], offline_reason: Optional[str]) -> str:
    from huggingface_hub import constants
    if offline_reason:
        mode = f'offline ({offline_reason}): only the local cache was searched'
    else:
        mode = 'online (HF_HUB_OFFLINE is not set)'
    return f'endpoint {endpoint or constants.ENDPOINT}, cache {cache_dir or constants.HF_HUB_CACHE}, {mode}'


def _hub_download(
        repo_id: str,
        filename: str,
        revision: Optional[str],
        *,
        endpoint: Optional[str] = None,
        cache_dir: Union[str, Path, None] = None,
        local_files_only: Optional[bool] = None,
) -> Path:
    """``hf_hub_download`` with reidzoo's user agent and errors that say what to do."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
        RepositoryNotFoundError, RevisionNotFoundError,
    )
    endpoint, cache_dir, offline_reason = _hub_settings(endpoint, cache_dir, local_files_only)
    offline = offline_reason is not None
    where = f'{filename} of Hub repo {repo_id} at revision {revision or "main"}'
    settings = _describe_settings(endpoint, cache_dir, offline_reason)
    def download() -> str:
        return hf_hub_download(
            repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
            local_files_only=offline, library_name=LIBRARY_NAME, library_version=__version__)

    try:
        try:
            path = download()
        except _transport_errors():
            # a server that just failed a request may drop the pooled connection the next one reuses (olah does
            # after answering an unknown revision): huggingface_hub passes that reset through unwrapped; retry once
            path = download()
    except _transport_errors() as e:
        raise WeightsNotFoundError(
            f'Could not download {where} ({settings}): the endpoint cannot be reached or dropped the connection '
            f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else "no detail"}). Check the network and '
            f'HF_ENDPOINT, or use a prefilled cache with HF_HUB_OFFLINE=1.') from e
    except GatedRepoError as e:
        raise WeightsNotFoundError(
            f'Could not download {where}: the repo is gated or private ({settings}). Accept its terms on the Hub and '
            f'log in (`hf auth login`) or set HF_TOKEN.') from e
    except RepositoryNotFoundError as e:
        missing = _missing_revision(repo_id, revision, endpoint)  # a mirror may answer a missing branch this way
        if missing:
            raise WeightsNotFoundError(f'Could not download {where} ({settings}): {missing}') from e
        raise WeightsNotFoundError(
            f'Could not download {where}: the repo (or the file at that revision) was not found ({settings}). '
            f'Check the repo id and revision (weights_manifest.json / REIDZOO_MANIFESTS or the hf-hub: name), '
            f'that HF_ENDPOINT points at the Hub or mirror holding it, and for a private repo set HF_TOKEN.') from e
    except RevisionNotFoundError as e:
        raise WeightsNotFoundError(
            f'Could not download {where}: revision {revision!r} does not exist in {repo_id} ({settings}). '
            f'Use a commit listed in weights_manifest.json, or a branch or tag of the repo.') from e
    except LocalEntryNotFoundError as e:
        if offline:
            hint = ('Download it once while online (`reidzoo download <name>` or create_model(..., pretrained=True) '
                    'without HF_HUB_OFFLINE), point HF_HOME/HF_HUB_CACHE at a cache that holds it, or go online '
                    '(unset HF_HUB_OFFLINE).')
        else:
            missing = _missing_revision(repo_id, revision, endpoint)
            if missing:
                raise WeightsNotFoundError(f'Could not download {where} ({settings}): {missing}') from e
            cause = e.__cause__ or e.__context__
            detail = f' ({type(cause).__name__}: {str(cause).splitlines()[0]})' if cause and str(cause) else ''
            hint = (f'The endpoint could not be reached or answered with an error{detail}, and no cached copy exists: '
                    f'check the network and HF_ENDPOINT, or use a prefilled cache with HF_HUB_OFFLINE=1.')
        raise WeightsNotFoundError(f'Could not find {where} ({settings}). {hint}') from e
    except EntryNotFoundError as e:  # the remote variant (HTTP 404 on the file)
        raise WeightsNotFoundError(
            f'Could not download {where}: the repo exists but has no {filename} at that revision ({settings}). '
            f'Check "filename" and "revision" in the manifest entry, or that the repo was written by '
            f'reidzoo.hub.save_pretrained.') from e
    except OfflineModeIsEnabled as e:
        raise WeightsNotFoundError(f'Could not download {where}: {settings}. Unset HF_HUB_OFFLINE.') from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, 'response', None), 'status_code', '?')
        raise WeightsNotFoundError(
            f'Could not download {where}: HTTP {status} from the endpoint ({settings}): {str(e).splitlines()[0]}. '
            f'Check HF_ENDPOINT and retry; a mirror may be missing the repo or revision.') from e
    return Path(path)


def _missing_revision(repo_id: str, revision: Optional[str], endpoint: Optional[str]) -> Optional[str]:
    """Why a download at ``revision`` failed, if the reason is that the revision does not exist; else ``None``.

    Asked only after a failure: a server may answer a revision it does not have with a reset connection or an
    HTTP 500 (olah does) instead of the Hub's 404, which huggingface_hub then reports as "cannot reach the endpoint".
    """
    if not revision or revision == 'main':
        return None
    from huggingface_hub import HfApi
    api = HfApi(endpoint=endpoint, library_name=LIBRARY_NAME, library_version=__version__)
    for attempt in range(2):  # the server may have dropped the pooled connection after its failed answer
        try:
            refs = api.list_repo_refs(repo_id)
            break
        except Exception:  # noqa: BLE001 - the endpoint is unreachable as well: the caller's message says so
            if attempt:
                return None
    heads = {ref.name: ref.target_commit for ref in [*refs.branches, *refs.tags]}
    if revision in heads or revision in heads.values():
        return None
    if _COMMIT_RE.match(revision):  # an older commit is not a head: ask for it
        try:
            api.model_info(repo_id, revision=revision)
            return None
        except Exception:  # noqa: BLE001 - RevisionNotFound on the Hub, an HTTP error on some mirrors
            pass
    listed = ', '.join(f'{name} ({commit[:12]})' for name, commit in heads.items()) or 'none'
    kind = 'commit' if _COMMIT_RE.match(revision) else 'branch or tag'
    return (f'revision {revision!r} is not a {kind} of {repo_id} (branches and tags: {listed}). Use a commit listed '
            f'in weights_manifest.json / REIDZOO_MANIFESTS, or a branch or tag of the repo.')


# --- integrity ---------------------------------------------------------------------------------------------------
_VERIFIED: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Union[str, Path], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered per (real path, size, mtime) so repeated loads in a process hash once."""
    real = path.resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(real)
    return _VERIFIED[key]


def _verify_file(path: Path, *, sha256: Optional[str], num_bytes: Optional[int], origin: str, fix: str) -> None:
    """Raise :class:`WeightsIntegrityError` if ``path`` does not have the recorded size and hash."""
    real = path.resolve()
    cached = f'"{path}"' + (f' (-> "{real}")' if real != path else '')
    size = real.stat().st_size
    if num_bytes is not None and size != int(num_bytes):
        kind = 'truncated (an interrupted download?)' if size < int(num_bytes) else 'larger than recorded'
        raise WeightsIntegrityError(
            f'{origin}: the file is {kind}: {size} bytes, expected {int(num_bytes)}. Cached copy: {cached}. {fix}')
    if not sha256:
        _logger.warning('%s: no sha256 recorded, the file was not verified.', origin)
        return
    actual = _cached_sha256(path)
    if actual != sha256.lower():
        raise WeightsIntegrityError(
            f'{origin}: sha256 mismatch: expected {sha256.lower()}, got {actual} ({size} bytes). '
            f'Cached copy: {cached}. {fix}')


def verify_weights_file(path: Union[str, Path], cfg: dict[str, Any], origin: Optional[str] = None) -> None:
    """Check a local weight file against the ``sha256`` / ``num_bytes`` its cfg records (as for Hub downloads).

    Used for ``local-dir:`` folders, whose ``config.json`` records both, and for
    ``pretrained_cfg_overlay=dict(file=...)`` on a cfg that records them.

    Raises:
        WeightsIntegrityError: the file's size or sha256 differs from the recorded one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Weights file {path} does not exist (named by the cfg of '
                                f'{cfg.get("architecture", "?")}).')
    origin = origin or f'Weights file {path} (model {cfg.get("architecture", "?")})'
    fix = ('The file was changed, truncated or replaced after its config.json was written: write the folder again '
           '(reidzoo.hub.save_pretrained / `reidzoo export`), or restore the original file.')
    _verify_file(path, sha256=cfg.get('sha256'), num_bytes=cfg.get('num_bytes'), origin=origin, fix=fix)


def download_weights(
        cfg: dict[str, Any],
        *,
        cache_dir: Union[str, Path, None] = None,
        endpoint: Optional[str] = None,
        local_files_only: Optional[bool] = None,
) -> Path:
    """Download (or find in the Hub cache) the weight file named by a pretrained cfg and verify it.

    Args:
        cfg: a pretrained cfg (or manifest entry) with ``hf_hub_id``, ``revision`` (a 40-hex commit for published
            weights), ``filename`` and ``sha256`` (optionally ``num_bytes``).
        cache_dir: Hub cache; default ``HF_HUB_CACHE`` / ``HF_HOME/hub`` as set now, else huggingface_hub's.
        endpoint: Hub or mirror URL; default ``HF_ENDPOINT`` as set now, else huggingface_hub's.
        local_files_only: only look in the cache; default ``HF_HUB_OFFLINE``.

    Returns:
        Path of the verified file in the cache.

    Raises:
        WeightsNotFoundError: repo, revision or file missing, or not cached while offline.
        WeightsIntegrityError: the file's size or sha256 differs from the cfg's.
    """
    repo_id = cfg.get('hf_hub_id')
    if not repo_id:
        raise ValueError(f'pretrained cfg of {cfg.get("architecture", "?")} has no hf_hub_id: nothing to download.')
    filename = cfg.get('filename') or WEIGHTS_NAME
    revision = cfg.get('revision')
    if not revision or not _COMMIT_RE.match(str(revision)):
        _logger.warning('Weights of %s are not pinned to a commit (revision=%r): the repo may change under you.',
                        repo_id, revision)
    path = _hub_download(repo_id, filename, revision, endpoint=endpoint, cache_dir=cache_dir,
                         local_files_only=local_files_only)
    name = cfg.get('architecture', '?') + (f'.{cfg["tag"]}' if cfg.get('tag') else '')
    origin = f'Weights {filename} of {repo_id} at revision {revision or "main"} (model {name})'
    fix = ('Delete the cached copy (the paths shown) and load again to re-download it. If a fresh download fails the '
           'same way, the recorded sha256/num_bytes are wrong or the repo was rewritten: check the entry in '
           'weights_manifest.json / REIDZOO_MANIFESTS (or the config.json of an hf-hub: repo).')
    _verify_file(path, sha256=cfg.get('sha256'), num_bytes=cfg.get('num_bytes'), origin=origin, fix=fix)
    return path


def load_safetensors(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, on CPU. Other formats are refused: they may execute code."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    with open(path, 'rb') as f:
        head = f.read(9)
    # safetensors starts with a little-endian u64 header length, then a JSON object ('{'); a zip/pickle does not
    if len(head) < 9 or head[8:9] != b'{':
        raise ValueError(f'{path} is not a safetensors file (reidzoo loads weights from safetensors only, never '
                         f'pickles). Convert it with `reidzoo convert` or safetensors.torch.save_file.')
    try:
        return load_file(str(path), device='cpu')
    except SafetensorError as e:
        raise ValueError(f'{path} is not a readable safetensors file ({e}): it is truncated or corrupt. Write or '
                         f'download it again.') from e


def save_safetensors(tensors: dict[str, torch.Tensor], path: Union[str, Path],
                     metadata: Optional[dict[str, str]] = None) -> Path:
    """Write ``tensors`` as a safetensors file whose bytes depend only on the tensors and the metadata.

    ``safetensors`` stores ``__metadata__`` from a Rust hash map whose key order changes from process to process, so
    the same weights saved twice got two sha256. The header is rewritten with sorted keys and no whitespace (padded
    with spaces to 8 bytes, as safetensors does), so a manifest's sha256 names the weights, not the moment of
    export. The write is atomic.
    """
    import struct
    from safetensors.torch import save
    raw = save(tensors, metadata=metadata)
    (header_len,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + header_len])
    body = raw[8 + header_len:]  # the tensor bytes; header offsets are relative to their start
    text = json.dumps(header, sort_keys=True, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    data = struct.pack('<Q', len(text)) + text + body
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


# --- config.json -------------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, or ``None`` if it cannot go into JSON."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (tuple, list)):
        items = [_jsonable(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else items
    if isinstance(value, dict):
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return None if any(out[str(k)] is None and v is not None for k, v in value.items()) else out
    return None


def _model_args_from_json(model_args: dict[str, Any]) -> dict[str, Any]:
    # JSON has no tuples; model arguments such as img_size=(256, 128) were tuples when saved
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in model_args.items()}


def _read_config(path: Path, origin: str) -> dict[str, Any]:
    """A repo's ``config.json``, type-checked key by key (errors name the file and the key)."""
    try:
        config = json.loads(Path(path).read_text(encoding='utf-8'))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{CONFIG_NAME} of {origin} ({path}) is not valid JSON: {e}') from None
    arch = config.get('architecture') if isinstance(config, dict) else None
    if not arch:
        raise ValueError(f'{CONFIG_NAME} of {origin} ({path}) has no "architecture": it was not written by '
                         f'reidzoo.hub.save_pretrained.')
    check_config_json(config, f'{CONFIG_NAME} of {origin} ({path})')
    return config


def _parse_hub_name(name: str) -> tuple[str, Optional[str]]:
    repo_id, _, revision = name.partition('@')
    if repo_id.count('/') != 1 or not all(repo_id.split('/')):
        raise ValueError(f'hf-hub name {name!r} should look like "org/name" or "org/name@revision".')
    return repo_id, (revision or None)


def load_model_config(
        name: str,
        source: str = 'hf-hub',
        *,
        cache_dir: Union[str, Path, None] = None,
        endpoint: Optional[str] = None,
        local_files_only: Optional[bool] = None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Read the ``config.json`` of a reidzoo repo.

    Args:
        name: ``'org/name[@revision]'`` for ``source='hf-hub'`` (default revision ``main``), a folder for
            ``source='local-dir'``.
        source: ``'hf-hub'`` or ``'local-dir'``.
        cache_dir, endpoint, local_files_only: as in :func:`download_weights`.

    Returns:
        ``(architecture, model_args, weights_cfg)``: what the repo records, without the architecture's defaults
        (the builder merges those; this module does not know the registry). ``weights_cfg`` holds the repo's
        preprocessing cfg, provenance, ``num_classes``, ``sha256`` and ``num_bytes``, and names the weights: for
        ``hf-hub`` their repo, the commit the revision resolved to (so a later push to the branch cannot change what
        this model loads) and ``filename``; for ``local-dir`` the ``file`` in the folder (verified before loading).

    Raises:
        reidzoo.spec.model_cfg.CfgError: an unknown key, or a value of the wrong type, in ``config.json``.
    """
    if source == 'hf-hub':
        repo_id, revision = _parse_hub_name(name)
        path = _hub_download(repo_id, CONFIG_NAME, revision, endpoint=endpoint, cache_dir=cache_dir,
                             local_files_only=local_files_only)
        config = _read_config(path, f'hf-hub:{name}')
        # the cache stores files under snapshots/<commit>/, so the path tells which commit a branch resolved to
        commit = path.parent.name if _COMMIT_RE.match(path.parent.name) else revision
        weights = {'hf_hub_id': repo_id, 'revision': commit, 'filename': config.get('filename') or WEIGHTS_NAME}
    elif source == 'local-dir':
        folder = Path(name).expanduser()
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f'{path} does not exist: local-dir: expects a folder written by '
                                    f'reidzoo.hub.save_pretrained ({CONFIG_NAME} + {WEIGHTS_NAME}).')
        config = _read_config(path, f'local-dir:{name}')
        weights = {'file': str(folder / (config.get('filename') or WEIGHTS_NAME))}
    else:
        raise ValueError(f'Unknown model source {source!r}: use "hf-hub" or "local-dir".')
    arch = config['architecture']
    cfg = merge_model_cfg(config.get('pretrained_cfg') or {})
    for key in ('sha256', 'num_bytes', 'num_classes', 'dataset', 'protocol', 'metrics', 'license', 'source'):
        if config.get(key) is not None:
            cfg[key] = config[key]
    cfg.update(weights)
    cfg['architecture'] = arch
    model_args = _model_args_from_json(config.get('model_args', {}))
    return arch, model_args, cfg


# --- writing a repo folder ---------------------------------------------------------------------------------------
def _check_metrics(metrics: Optional[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key, value in (metrics or {}).items():
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f'Metric {key}={value} is not a fraction in [0, 1]: reidzoo records 0.853, not 85.3.')
        out[str(key)] = value
    return out


def _source_field(recipe: Union[str, dict[str, Any], None]) -> Optional[dict[str, Any]]:
    if recipe is None:
        return None
    if isinstance(recipe, dict):  # e.g. {'type': 'converted', 'repository': ..., 'file': ...}
        return dict(recipe)
    return {'type': 'reidzoo-train', 'recipe': str(recipe)}


_METRIC_NAMES = {'mAP': 'mAP', 'mINP': 'mINP', 'rank1': 'Rank-1', 'rank5': 'Rank-5', 'rank10': 'Rank-10',
                 'rank20': 'Rank-20'}


def _model_card(config: dict[str, Any], extra: Optional[str]) -> str:
    from huggingface_hub import EvalResult, ModelCardData
    arch, dataset, protocol = config['architecture'], config.get('dataset'), config.get('protocol')
    metrics = config.get('metrics') or {}
    eval_results = [
        EvalResult(task_type='person-re-identification', task_name='Video person re-identification',
                   dataset_type=dataset or 'unknown', dataset_name=dataset or 'unknown', dataset_split='test',
                   metric_type=key, metric_name=_METRIC_NAMES.get(key, key), metric_value=value,
                   metric_config=protocol)
        for key, value in metrics.items()] if metrics else None
    card_data = ModelCardData(
        model_name=arch, library_name=LIBRARY_NAME, license=config.get('license'),
        datasets=[dataset] if dataset else None,
        tags=['reidzoo', 'person-re-identification', 'video-person-re-identification', arch],
        eval_results=eval_results)
    pcfg = config.get('pretrained_cfg', {})
    c, h, w = pcfg.get('input_size', (3, 0, 0))
    lines = [
        f'# {arch}' + (f' trained on {dataset}' if dataset else ''),
        '',
        f'A video person re-identification model for the `reidzoo` library: architecture `{arch}`, '
        f'{config["num_features"]}-d embedding, '
        f'{config["num_classes"]} identity classes in the classifier.',
        '',
        '## Usage',
        '',
        '```python',
        'import reidzoo, torch',
        "model = reidzoo.create_model('hf-hub:<this repo>@<commit>', pretrained=True).eval()",
        f'clips = torch.randn(2, {pcfg.get("num_frames", 4)}, {c}, {h}, {w})  # (B, T, 3, H, W), normalised',
        'embeddings = model(clips)',
        '```',
        '',
        f'Input {h}x{w}, {pcfg.get("num_frames", "?")} frames per clip, mean {pcfg.get("mean")}, std {pcfg.get("std")}'
        f'; test-time sampling `{pcfg.get("test_sampling")}`, distance `{pcfg.get("distance")}`.',
        '',
        f'Weights: `{config["filename"]}`, sha256 `{config["sha256"]}` ({config["num_bytes"]} bytes).',
    ]
    if metrics:
        lines += ['', '## Evaluation', '', f'Protocol `{protocol}` on `{dataset}` (fractions in [0, 1]):', '',
                  '| metric | value |', '| --- | --- |']
        lines += [f'| {_METRIC_NAMES.get(k, k)} | {v:.4f} |' for k, v in metrics.items()]
    source = config.get('source')
    if source:
        lines += ['', '## Provenance', '', '```json', json.dumps(source, indent=2), '```']
    if pcfg.get('paper_name'):
        lines += ['', '## Paper', '', f'{pcfg["paper_name"]} ({pcfg.get("paper_ids", "")})']
    if extra:
        lines += ['', extra.strip()]
    return f'---\n{card_data.to_yaml()}\n---\n\n' + '\n'.join(lines) + '\n'


def save_pretrained(
        model: nn.Module,
        save_dir: Union[str, Path],
        *,
        dataset: Optional[str] = None,
        protocol: Optional[str] = None,
        metrics: Optional[dict[str, float]] = None,
        recipe: Union[str, dict[str, Any], None] = None,
        model_card: Optional[str] = None,
) -> Path:
    """Write ``model`` as a reidzoo repo folder: ``model.safetensors``, ``config.json`` and ``README.md``.

    Args:
        model: a reidzoo model (it carries ``pretrained_cfg`` with ``architecture`` and ``model_args``).
        save_dir: the folder (created).
        dataset: training dataset name, e.g. ``'mars'``.
        protocol: the protocol that produced ``metrics``, e.g. ``'mars_official'``.
        metrics: measured metrics as fractions in [0, 1] (``{'mAP': 0.81, 'rank1': 0.89}``).
        recipe: a reidzoo recipe name (``source = {'type': 'reidzoo-train', 'recipe': ...}``), or a full ``source``
            dict (``{'type': 'converted', 'repository': ..., 'file': ...}``).
        model_card: extra Markdown appended to the generated model card.

    Returns:
        ``save_dir`` as a Path.
    """
    cfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    arch = cfg.get('architecture')
    if not arch:
        raise ValueError(f'{type(model).__name__} has no pretrained_cfg["architecture"]: create it with '
                         f'reidzoo.create_model so the saved repo can be rebuilt.')
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    # clone: tensors that share storage (tied weights, views) make safetensors refuse the whole dict
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in model.state_dict().items()}
    weights_path = save_dir / WEIGHTS_NAME
    metadata = {'format': 'pt', 'reidzoo.arch': arch, 'reidzoo.version': __version__}
    save_safetensors(tensors, weights_path, metadata)

    model_args = _jsonable(cfg.get('model_args', {}))
    if model_args is None:
        raise ValueError(f'model_args of {arch} ({cfg.get("model_args")}) cannot be written to JSON.')
    pretrained_cfg = {k: _jsonable(cfg[k]) for k in cfg
                      if (k in _PREPROCESS_KEYS or k.startswith('paper_')) and _jsonable(cfg[k]) is not None}
    config: dict[str, Any] = {
        'architecture': arch,
        'num_classes': int(getattr(model, 'num_classes', 0)),
        'num_features': int(model.num_features),
        'model_args': model_args,
        'pretrained_cfg': pretrained_cfg,
        'filename': WEIGHTS_NAME,
        'sha256': sha256_file(weights_path),
        'num_bytes': weights_path.stat().st_size,
        'license': cfg.get('license', 'apache-2.0'),
        'reidzoo_version': __version__,
    }
    for key, value in (('dataset', dataset), ('protocol', protocol), ('metrics', _check_metrics(metrics) or None),
                       ('source', _source_field(recipe))):
        if value is not None:
            config[key] = value
    atomic_write_text(save_dir / CONFIG_NAME, json.dumps(config, indent=2) + '\n')
    atomic_write_text(save_dir / CARD_NAME, _model_card(config, model_card))
    return save_dir


# --- publishing --------------------------------------------------------------------------------------------------
def manifest_entry(save_dir: Union[str, Path], hf_hub_id: str, revision: str) -> dict[str, Any]:
    """The ``weights_manifest.json`` entry for a folder written by :func:`save_pretrained` and published at
    ``hf_hub_id`` / ``revision`` (the 40-hex commit).

    The entry validates against ``weights_manifest.schema.json`` when the folder records ``dataset``,
    ``protocol``, ``metrics`` and ``source``. The weights are re-hashed, so a file changed after saving is caught.
    """
    save_dir = Path(save_dir)
    config = json.loads((save_dir / CONFIG_NAME).read_text())
    weights_path = save_dir / (config.get('filename') or WEIGHTS_NAME)
    sha256 = sha256_file(weights_path)
    if config.get('sha256') and config['sha256'] != sha256:
        raise WeightsIntegrityError(
            f'{weights_path} changed after save_pretrained: sha256 {sha256}, config.json records {config["sha256"]}. '
            f'Save the model again.')
    pretrained_cfg = {k: config['pretrained_cfg'][k] for k in ('input_size', 'num_frames', 'mean', 'std',
                                                              'test_sampling', 'distance')
                      if k in config.get('pretrained_cfg', {})}
    pretrained_cfg['model_args'] = config.get('model_args', {})
    entry: dict[str, Any] = {
        'hf_hub_id': hf_hub_id, 'revision': revision, 'filename': weights_path.name, 'sha256': sha256,
        'num_bytes': weights_path.stat().st_size,
    }
    for key in ('dataset', 'protocol', 'metrics', 'license', 'source', 'num_classes'):
        if config.get(key) is not None:
            entry[key] = config[key]
    entry['pretrained_cfg'] = pretrained_cfg
    return entry


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub's HTTP client raises when an endpoint cannot be reached (it wraps these in its own errors
    for downloads, not for ``HfApi`` calls): ``httpx2`` in huggingface_hub 2.x, ``httpx`` in 1.x, and socket errors.

    Not ``OSError`` as a whole: huggingface_hub's own HTTP errors (404, 500, ...) subclass it."""
    import importlib
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ('httpx2', 'httpx'):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def push_to_hub(
        save_dir: Union[str, Path],
        repo_id: str,
        *,
        revision: str = 'main',
        commit_message: Optional[str] = None,
        token: Optional[str] = None,
        endpoint: Optional[str] = None,
        private: bool = False,
) -> dict[str, Any]:
    """Upload a folder written by :func:`save_pretrained` to a Hub repo (created if needed).

    Every non-hidden file is uploaded (``reidzoo export`` adds the training recipe next to the three repo files).

    Args:
        save_dir: the folder.
        repo_id: ``'org/name'``.
        revision: branch to commit to (created from ``main`` if missing).
        commit_message: default ``'Upload <arch> (reidzoo <version>)'``.
        token: Hub token; default the logged-in one / ``HF_TOKEN``.
        endpoint: Hub URL; default ``HF_ENDPOINT`` as set now.
        private: create the repo private.

    Returns:
        The manifest entry (see :func:`manifest_entry`) pinned to the commit of this upload.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    save_dir = Path(save_dir)
    config_path = save_dir / CONFIG_NAME
    if not config_path.is_file() or not (save_dir / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f'{save_dir} is not a folder written by reidzoo.hub.save_pretrained '
                                f'(needs {CONFIG_NAME} and {WEIGHTS_NAME}); `reidzoo export` writes one.')
    arch = json.loads(config_path.read_text()).get('architecture', '?')
    endpoint, _, _ = _hub_settings(endpoint)
    api = HfApi(endpoint=endpoint, token=token, library_name=LIBRARY_NAME, library_version=__version__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type='model')
        if revision != 'main':
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(save_dir), revision=revision, repo_type='model',
            commit_message=commit_message or f'Upload {arch} (reidzoo {__version__})',
            ignore_patterns=['.*', '**/.*'])  # leftovers of interrupted atomic writes
    except HfHubHTTPError as e:
        status = getattr(getattr(e, 'response', None), 'status_code', '?')
        raise RuntimeError(
            f'Upload of {save_dir} to {repo_id} (branch {revision}) at {api.endpoint} failed with HTTP {status}: '
            f'{str(e).splitlines()[0]}. Check that you are logged in with write access (`hf auth login` or HF_TOKEN) '
            f'and that the endpoint is a Hub that accepts uploads (a read-only mirror such as olah does not; publish '
            f'to a local mirror with reidzoo.hub_mirror.publish_folder_to_mirror).') from e
    except _transport_errors() as e:
        raise RuntimeError(
            f'Upload of {save_dir} to {repo_id} (branch {revision}) failed: the endpoint {api.endpoint} cannot be '
            f'reached ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else "no detail"}). Check the network, '
            f'and HF_ENDPOINT / --endpoint (unset it to upload to huggingface.co).') from e
    commit = info.oid
    return manifest_entry(save_dir, repo_id, commit)
