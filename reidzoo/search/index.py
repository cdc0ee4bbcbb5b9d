"""An on-disk gallery index: tracklet embeddings with their metadata, searched exactly or with faiss.

Layout of an index folder (written atomically: a hidden temp folder renamed into place)::

    INDEX_DIR/
      index.json         format name and version, metric, dim, count, kind, faiss parameters, the model that made
                         the embeddings, and the size and sha256 of every other file
      embeddings.npy     (count, dim) float32; L2-normalised when the metric is cosine
      metadata.jsonl     one JSON object per row (tracklet name, thumbnail frame, camid, pid, ...)
      faiss.index        only for kind 'ivf' / 'hnsw': the faiss index over the same rows (faiss.write_index)

Metric follows the model's distance (:mod:`reidzoo.eval.distance`): ``'cosine'`` is an inner product on
L2-normalised vectors, ``'euclidean'`` / ``'sqeuclidean'`` are L2. Results carry distances in the index's metric, so
they equal :func:`reidzoo.eval.compute_distance` up to float32 rounding.

Kinds: ``'exact'`` is a chunked torch matmul + top-k (no faiss needed, memory bounded by the chunk size);
``'ivf'`` is faiss ``IndexIVFFlat`` (an inverted file over k-means cells, exact distances inside the probed cells);
``'hnsw'`` is faiss ``IndexHNSWFlat`` (a navigable small-world graph). ``'auto'`` picks exact below
:data:`EXACT_MAX` rows and HNSW above: in ``benchmarks/search_speed.py``, on 1M embeddings whose identities spread
over all 512 dimensions, IVF's recall@10 fell to ~0.5 and HNSW's to 0.93 (efSearch 128); IVF builds faster and
reached 0.965 at 43x on lower-dimensional data. Check an index with :meth:`GalleryIndex.estimate_recall`.
Parameters come from :func:`ivf_defaults` / :func:`hnsw_defaults`; see ``docs/search.md``.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from .._atomic import current_umask, fsync_dir, replace_dir
from ..eval.distance import DISTANCES
from ..hub import sha256_file
from ..version import __version__

__all__ = [
    'GalleryIndex', 'SearchResult', 'IndexFormatError', 'KINDS', 'EXACT_MAX', 'FORMAT_NAME', 'FORMAT_VERSION',
    'ivf_defaults', 'hnsw_defaults', 'check_finite',
]

FORMAT_NAME = 'reidzoo-gallery-index'
FORMAT_VERSION = 1
KINDS = ('auto', 'exact', 'ivf', 'hnsw')
# 'auto' below this many rows: exact search. One query against 50k 512-d rows is ~25M multiply-adds (a few ms), and
# a faiss index's build (HNSW: about a minute per 100k rows on 2 cores) is not worth it for small galleries.
EXACT_MAX = 50_000

MANIFEST_NAME = 'index.json'
EMBEDDINGS_NAME = 'embeddings.npy'
METADATA_NAME = 'metadata.jsonl'
FAISS_NAME = 'faiss.index'

_EXACT_CHUNK_ELEMENTS = 1 << 24  # query x gallery scores per exact-search chunk: 64 MB of float32
_ADD_CHUNK_ROWS = 1 << 16  # rows handed to faiss per add() call, so a memory-mapped gallery is read in pieces


class IndexFormatError(ValueError):
    """An index folder is missing a file, or a file is truncated, corrupt or does not match ``index.json``."""


class SearchResult(NamedTuple):
    """Top-k results of a batch of queries; unpacks as ``distances, indices, metadata = index.search(q, k)``.

    ``distances`` and ``indices`` are ``(num_queries, k)`` arrays, nearest first; distances are in the index's metric.
    Where fewer than ``k`` rows were found (an approximate index that probed too few cells, or a gallery smaller than
    ``k``), the index is -1, the distance ``inf`` and the metadata ``None``.
    """
    distances: np.ndarray
    indices: np.ndarray
    metadata: list[list[Optional[dict[str, Any]]]]


def ivf_defaults(count: int) -> dict[str, int]:
    """IVF parameters for a gallery of ``count`` rows: ``nlist`` cells, ``nprobe`` cells visited per query, and the
    number of k-means training rows.

    ``nlist`` ~ 4 sqrt(count) rounded to a power of two (faiss's guideline is 4-16 sqrt(count)): 1024 cells for
    100k rows, 4096 for 1M, so a cell holds a few identities' tracklets and a query's neighbours share its cells.
    ``nprobe`` = 16 (nlist/256 above 4096 cells) reached recall@10 >= 0.95 on clustered 512-d embeddings in
    ``benchmarks/search_speed.py``. k-means trains on 48 rows per cell (faiss warns below 39), which keeps the
    training of a 1M gallery to about a minute on 2 cores.
    """
    nlist = 2 ** int(round(math.log2(max(16.0, 4 * math.sqrt(max(count, 1))))))
    nlist = int(min(max(nlist, 16), 65536, max(1, count // 39)))
    return {'nlist': nlist, 'nprobe': _default_nprobe(nlist), 'train_rows': min(count, 48 * nlist)}


def _default_nprobe(nlist: int) -> int:
    return int(min(nlist, max(16, nlist // 256)))


def hnsw_defaults(count: int) -> dict[str, int]:
    """HNSW parameters: ``M`` graph neighbours per node, ``ef_construction`` and ``ef_search`` beam widths.

    M=32 is a common setting for high-dimensional float vectors (memory: ~M*2*4 bytes per row on top of the
    vectors). The search beam grows with the gallery, because recall at a fixed beam falls as the graph grows: on
    clustered 512-d embeddings (``benchmarks/search_speed.py``, isotropic identities, the hardest case) efSearch 32
    gave recall@10 0.995 at 100k rows, 0.951 at 300k (64: 0.994), and at 1M 0.66 (64: 0.85, 128: 0.93). So 32 up to
    150k rows, 64 up to 500k, 128 above; on large galleries check :meth:`GalleryIndex.estimate_recall` and raise it
    if needed. ef_search is raised to k when k is larger.
    """
    ef_search = 32 if count <= 150_000 else 64 if count <= 500_000 else 128
    return {'M': 32, 'ef_construction': 80, 'ef_search': ef_search}


def check_finite(embeddings: np.ndarray, what: str = 'embedding',
                 names: Optional[Sequence[Any]] = None) -> None:
    """Raise ``ValueError`` naming the first row with a NaN or infinite value (and its tracklet name if known)."""
    bad = ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        row = int(rows[0])
        label = f' ({names[row]})' if names is not None and row < len(names) and names[row] else ''
        raise ValueError(
            f'{what} row {row}{label} is not finite ({embeddings[row][~np.isfinite(embeddings[row])][0]}); '
            f'{len(rows)} row(s) in all. A NaN embedding usually means a model run in float16 overflowed or a '
            f'frame failed to load: re-extract those tracklets.')


def _as_matrix(x: Union[np.ndarray, torch.Tensor], what: str, dim: Optional[int] = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x)
    if x.ndim == 1 and dim is not None and x.shape[0] == dim:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f'{what} must be 2-D (rows, dim), got shape {x.shape}')
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f'{what} have dim {x.shape[1]} but the index holds {dim}-d embeddings: embed them with the '
                         f'model that built the index.')
    return np.ascontiguousarray(x, dtype=np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)  # the same epsilon as torch.nn.functional.normalize


def _import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("kind 'ivf' and 'hnsw' need faiss: pip install faiss-cpu (or reidzoo's search extra), "
                          "or use kind='exact'") from e
    return faiss


class GalleryIndex:
    """Gallery embeddings plus one metadata dict per row, searchable by example.

    Build with :meth:`build`, extend with :meth:`add`, write with :meth:`save`, read with :meth:`load`, query with
    :meth:`search`. ``model`` is free-form provenance (architecture, tag, model kwargs, test sampling) that the
    ``reidzoo search`` command uses to embed queries the same way.
    """

    def __init__(self, embeddings: np.ndarray, metadata: list[dict[str, Any]], *, metric: str, kind: str,
                 params: Optional[Mapping[str, int]] = None, model: Optional[Mapping[str, Any]] = None,
                 faiss_index: Any = None) -> None:
        self.embeddings = embeddings
        self.metadata = metadata
        self.metric = metric
        self.kind = kind
        self.params = dict(params or {})
        self.model = dict(model or {})
        self._faiss = faiss_index

    # --- construction --------------------------------------------------------------------------------------------
    @classmethod
    def build(
            cls,
            embeddings: Union[np.ndarray, torch.Tensor],
            metadata: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
            *,
            metric: str = 'cosine',
            kind: str = 'auto',
            nlist: Optional[int] = None,
            nprobe: Optional[int] = None,
            hnsw_m: Optional[int] = None,
            ef_search: Optional[int] = None,
            model: Optional[Mapping[str, Any]] = None,
            seed: int = 0,
    ) -> 'GalleryIndex':
        """Index ``embeddings`` (``(N, D)``) with one metadata dict per row.

        Args:
            embeddings: gallery embeddings (numpy or torch); refused if any row is NaN/inf (the row is named).
            metadata: JSON-serialisable dicts, one per row (``None`` rows become ``{}``); e.g. ``name``,
                ``thumbnail`` (a frame path), ``camid``, ``pid``.
            metric: the model's distance: ``'cosine'``, ``'euclidean'`` or ``'sqeuclidean'``.
            kind: ``'exact'``, ``'ivf'``, ``'hnsw'`` or ``'auto'`` (exact below :data:`EXACT_MAX` rows, else HNSW).
            nlist, nprobe: IVF cells and cells probed per query (default :func:`ivf_defaults`).
            hnsw_m, ef_search: HNSW graph degree and search beam (default :func:`hnsw_defaults`).
            model: provenance of the embeddings, stored in ``index.json``.
            seed: seed of the k-means training sample.
        """
        if metric not in DISTANCES:
            raise ValueError(f'metric must be one of {DISTANCES}, got {metric!r}')
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
        emb = _as_matrix(embeddings, 'gallery embeddings')
        meta = cls._check_metadata(metadata, len(emb))
        check_finite(emb, 'gallery embedding', [m.get('name') for m in meta])
        if metric == 'cosine':
            emb = _normalize(emb)
        if kind == 'auto':
            kind = 'exact' if len(emb) < EXACT_MAX else 'hnsw'
            if kind == 'hnsw' and importlib.util.find_spec('faiss') is None:
                # faiss is an optional extra: stay correct (exact) rather than fail, and say how to get faster
                warnings.warn(f'{len(emb)} gallery rows would get a faiss HNSW index, but faiss is not installed: '
                              f'using exact search (pip install faiss-cpu for faster search)', stacklevel=2)
                kind = 'exact'
        params: dict[str, int] = {}
        if kind == 'ivf':
            n_cells = int(nlist or ivf_defaults(len(emb))['nlist'])
            if len(emb) < n_cells:
                raise ValueError(f'IVF with nlist={n_cells} needs at least {n_cells} gallery rows (got {len(emb)}); '
                                 f"use kind='exact' or a smaller nlist")
            params = {'nlist': n_cells, 'nprobe': int(nprobe or _default_nprobe(n_cells)),
                      'train_rows': min(len(emb), 48 * n_cells)}
        elif kind == 'hnsw':
            d = hnsw_defaults(len(emb))
            params = {'M': int(hnsw_m or d['M']), 'ef_construction': d['ef_construction'],
                      'ef_search': int(ef_search or d['ef_search'])}
            params['ef_construction'] = max(params['ef_construction'], params['M'])
        index = cls(emb, meta, metric=metric, kind=kind, params=params, model=model)
        if kind != 'exact':
            index._faiss = index._new_faiss(seed)
            index._faiss_add(emb)
        return index

    @staticmethod
    def _check_metadata(metadata: Optional[Sequence[Optional[Mapping[str, Any]]]], count: int) -> list[dict]:
        if metadata is None:
            return [{} for _ in range(count)]
        meta = [dict(m) if m is not None else {} for m in metadata]
        if len(meta) != count:
            raise ValueError(f'got {count} embedding rows but {len(meta)} metadata rows: give one dict per row')
        for i, m in enumerate(meta):
            try:
                json.dumps(m)
            except (TypeError, ValueError) as e:
                raise ValueError(f'metadata row {i} is not JSON-serialisable ({e}): use str/int/float/list/dict '
                                 f'values') from e
        return meta

    def _faiss_metric(self, faiss):
        return faiss.METRIC_INNER_PRODUCT if self.metric == 'cosine' else faiss.METRIC_L2

    def _new_faiss(self, seed: int):
        faiss = _import_faiss()
        dim = self.dim
        metric = self._faiss_metric(faiss)
        if self.kind == 'hnsw':
            index = faiss.IndexHNSWFlat(dim, self.params['M'], metric)
            index.hnsw.efConstruction = self.params['ef_construction']
            return index
        nlist = self.params['nlist']
        quantizer = faiss.IndexFlatIP(dim) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        # k-means on a seeded random sample: training on every row of a 1M gallery costs minutes for no recall gain
        rng = np.random.default_rng(seed)
        count = len(self.embeddings)
        rows = np.sort(rng.choice(count, size=min(count, self.params['train_rows']), replace=False))
        index.cp.seed = seed
        index.train(np.ascontiguousarray(self.embeddings[rows], dtype=np.float32))
        index.own_fields = True  # keep the quantizer alive with the index (the Python wrapper would drop it)
        quantizer.this.disown()
        return index

    def _faiss_add(self, emb: np.ndarray) -> None:
        for start in range(0, len(emb), _ADD_CHUNK_ROWS):
            self._faiss.add(np.ascontiguousarray(emb[start:start + _ADD_CHUNK_ROWS], dtype=np.float32))

    def add(self, embeddings: Union[np.ndarray, torch.Tensor],
            metadata: Optional[Sequence[Optional[Mapping[str, Any]]]] = None) -> 'GalleryIndex':
        """Append rows (and their metadata). IVF keeps its trained cells: rebuild (``build`` on all rows) when the
        gallery has grown several-fold, so the cells fit the new data. Returns ``self``."""
        emb = _as_matrix(embeddings, 'added embeddings', self.dim)
        meta = self._check_metadata(metadata, len(emb))
        check_finite(emb, 'added embedding', [m.get('name') for m in meta])
        if self.metric == 'cosine':
            emb = _normalize(emb)
        self.embeddings = np.concatenate([np.asarray(self.embeddings), emb])
        self.metadata.extend(meta)
        if self._faiss is not None:
            self._faiss_add(emb)
        return self

    # --- properties ----------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def __repr__(self) -> str:
        extra = ''.join(f', {k}={v}' for k, v in self.params.items())
        return f'GalleryIndex(count={len(self)}, dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}{extra})'

    # --- search --------------------------------------------------------------------------------------------------
    def search(self, queries: Union[np.ndarray, torch.Tensor], k: int = 10, *, nprobe: Optional[int] = None,
               ef_search: Optional[int] = None, exact: bool = False) -> SearchResult:
        """Top-``k`` gallery rows for each query, nearest first.

        Args:
            queries: ``(Q, D)`` (or one ``(D,)``) embeddings from the model that built the index.
            k: results per query.
            nprobe: IVF cells to visit (overrides the stored value for this call).
            ef_search: HNSW beam width (overrides the stored value; raised to ``k`` if smaller).
            exact: ignore the faiss index and search every row exactly.
        """
        if k < 1:
            raise ValueError(f'k must be >= 1, got {k}')
        q = _as_matrix(queries, 'query embeddings', self.dim)
        check_finite(q, 'query embedding')
        if self.metric == 'cosine':
            q = _normalize(q)
        if self.kind == 'exact' or exact or self._faiss is None:
            dist, idx = self._exact_search(q, k)
        else:
            dist, idx = self._faiss_search(q, k, nprobe, ef_search)
        meta = [[self.metadata[j] if j >= 0 else None for j in row] for row in idx.tolist()]
        return SearchResult(dist, idx, meta)

    def estimate_recall(self, k: int = 10, sample: int = 200, *, seed: int = 0, **search_kwargs: Any) -> float:
        """Recall@k of this index against exact search, with ``sample`` random gallery rows as queries.

        Approximate recall depends on the data (how clustered the embeddings are), so measure it on yours: below
        0.95, raise ``nprobe`` / ``ef_search`` (``search_kwargs`` are passed to :meth:`search`). 1.0 for ``'exact'``.
        Each sampled row is left out of its own results (an index always finds a row's own cell or graph node, so
        counting the row itself would flatter the estimate).
        """
        if self.kind == 'exact' or self._faiss is None or len(self) <= 1:
            return 1.0
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(self), size=min(sample, len(self)), replace=False))
        queries = np.ascontiguousarray(self.embeddings[rows], dtype=np.float32)
        found = self.search(queries, k + 1, **search_kwargs).indices
        truth = self.search(queries, k + 1, exact=True).indices
        hits = []
        for row, a, b in zip(rows, found, truth):
            want = [j for j in b.tolist() if j >= 0 and j != row][:k]
            got = set([j for j in a.tolist() if j >= 0 and j != row][:k])
            hits.append(len(got.intersection(want)) / max(1, len(want)))
        return float(np.mean(hits))

    def _to_distance(self, scores: np.ndarray) -> np.ndarray:
        """Inner products (cosine) or squared L2 (faiss / exact) -> the index's metric."""
        if self.metric == 'cosine':
            return (1.0 - scores).astype(np.float32)
        if self.metric == 'euclidean':
            return np.sqrt(np.maximum(scores, 0)).astype(np.float32)
        return np.maximum(scores, 0).astype(np.float32)

    @torch.no_grad()
    def _exact_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunked matmul + running top-k: memory is one ``q_chunk x g_chunk`` block, never ``Q x N``."""
        n = len(self)
        kk = min(k, n)
        g_chunk = int(min(max(n, 1), max(4096, _EXACT_CHUNK_ELEMENTS // max(len(q), 1))))
        q_chunk = int(max(1, _EXACT_CHUNK_ELEMENTS // g_chunk))
        out_d = np.full((len(q), k), np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        cosine = self.metric == 'cosine'
        for qs in range(0, len(q), q_chunk):
            qt = torch.from_numpy(q[qs:qs + q_chunk])
            q_sq = qt.pow(2).sum(1, keepdim=True)
            best_s = torch.full((len(qt), 0), 0.0)
            best_i = torch.zeros((len(qt), 0), dtype=torch.int64)
            for gs in range(0, n, g_chunk):
                block = np.ascontiguousarray(self.embeddings[gs:gs + g_chunk], dtype=np.float32)
                # a memory-mapped index is read-only; torch wants writable memory, so copy just this block
                g = torch.from_numpy(block if block.flags.writeable else block.copy())
                s = qt @ g.t()
                if not cosine:  # rank by -(squared L2) so one largest-k merge serves both metrics
                    s.mul_(2).sub_(q_sq).sub_(g.pow(2).sum(1))
                top_s, top_i = s.topk(min(kk, s.shape[1]), dim=1)
                best_s = torch.cat([best_s, top_s], 1)
                best_i = torch.cat([best_i, top_i + gs], 1)
                best_s, pos = best_s.topk(min(kk, best_s.shape[1]), dim=1)
                best_i = best_i.gather(1, pos)
            scores = best_s.numpy() if cosine else -best_s.numpy()
            out_d[qs:qs + q_chunk, :kk] = self._to_distance(scores)
            out_i[qs:qs + q_chunk, :kk] = best_i.numpy()
        return out_d, out_i

    def _faiss_search(self, q: np.ndarray, k: int, nprobe: Optional[int],
                      ef_search: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
        faiss = _import_faiss()
        if self.kind == 'ivf':
            params = faiss.SearchParametersIVF(nprobe=int(min(nprobe or self.params['nprobe'], self.params['nlist'])))
        else:
            params = faiss.SearchParametersHNSW(efSearch=int(max(ef_search or self.params['ef_search'], k)))
        scores, idx = self._faiss.search(q, k, params=params)
        dist = self._to_distance(scores)
        dist[idx < 0] = np.inf
        return dist, idx.astype(np.int64)

    # --- persistence ---------------------------------------------------------------------------------------------
    def _manifest(self, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        manifest = {'format': FORMAT_NAME, 'format_version': FORMAT_VERSION, 'reidzoo_version': __version__,
                    'metric': self.metric, 'normalized': self.metric == 'cosine', 'dim': self.dim,
                    'count': len(self), 'dtype': 'float32', 'kind': self.kind, 'params': self.params,
                    'model': self.model, 'files': files}
        if self._faiss is not None:
            manifest['faiss_version'] = _import_faiss().__version__
        return manifest

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the index folder atomically: every file goes to a hidden temp folder beside ``path``, is fsynced
        and hashed, and the folder is renamed into place. An existing index at ``path`` is replaced (it is moved
        aside first and removed after the rename); a non-empty folder that is not an index is refused."""
        path = Path(path)
        if path.exists() and not (path / MANIFEST_NAME).is_file() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f'{path} exists and is not a reidzoo gallery index (no {MANIFEST_NAME}); '
                                  f'choose another --out folder or remove it')
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
        try:
            files: dict[str, dict[str, Any]] = {}

            def write(name: str, writer) -> None:
                writer(tmp / name)
                with open(tmp / name, 'rb+') as f:
                    os.fsync(f.fileno())
                files[name] = {'bytes': (tmp / name).stat().st_size, 'sha256': sha256_file(tmp / name)}

            def write_npy(p: Path) -> None:
                with open(p, 'wb') as f:  # a file object: np.save would append '.npy' to a path
                    np.save(f, np.asarray(self.embeddings, dtype=np.float32), allow_pickle=False)

            def write_jsonl(p: Path) -> None:
                with open(p, 'w', encoding='utf-8') as f:
                    f.writelines(json.dumps(m, separators=(',', ':')) + '\n' for m in self.metadata)

            write(EMBEDDINGS_NAME, write_npy)
            write(METADATA_NAME, write_jsonl)
            if self._faiss is not None:
                faiss = _import_faiss()
                write(FAISS_NAME, lambda p: faiss.write_index(self._faiss, str(p)))  # streams, no in-memory copy
            text = json.dumps(self._manifest(files), indent=1)
            write(MANIFEST_NAME, lambda p: p.write_text(text, encoding='utf-8'))
            os.chmod(tmp, 0o777 & ~current_umask())
            fsync_dir(tmp)
            replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, verify: bool = True, mmap: bool = True) -> 'GalleryIndex':
        """Read an index folder written by :meth:`save`.

        Args:
            path: the index folder.
            verify: check every file's size and sha256 against ``index.json`` (a 1M x 512 gallery hashes in a few
                seconds); sizes and shapes are always checked.
            mmap: memory-map ``embeddings.npy`` instead of reading it (an IVF/HNSW search never touches it).

        Raises:
            IndexFormatError: naming the file that is missing, truncated, corrupt or inconsistent.
        """
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise IndexFormatError(f'{manifest_path} not found: {path} is not a reidzoo gallery index (build one with '
                                   f'`reidzoo index build` or GalleryIndex.save)')
        try:
            manifest = json.loads(manifest_path.read_text(encoding='utf-8'))
        except (ValueError, UnicodeDecodeError) as e:
            raise IndexFormatError(f'{manifest_path} is not valid JSON ({e}): the index is corrupt; rebuild it') from e
        if not isinstance(manifest, dict) or manifest.get('format') != FORMAT_NAME:
            raise IndexFormatError(f'{manifest_path} is not a {FORMAT_NAME} manifest (format='
                                   f'{manifest.get("format") if isinstance(manifest, dict) else None!r})')
        version = manifest.get('format_version')
        if version != FORMAT_VERSION:
            raise IndexFormatError(f'{manifest_path} has format_version {version!r}; this reidzoo reads version '
                                   f'{FORMAT_VERSION}: upgrade reidzoo or rebuild the index')
        try:
            metric, kind = manifest['metric'], manifest['kind']
            dim, count = int(manifest['dim']), int(manifest['count'])
            files = manifest['files']
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFormatError(f'{manifest_path} lacks or mangles field {e}: the index is corrupt; rebuild it') \
                from e
        needed = [EMBEDDINGS_NAME, METADATA_NAME] + ([FAISS_NAME] if kind in ('ivf', 'hnsw') else [])
        for name in needed:
            file = path / name
            if name not in files:
                raise IndexFormatError(f'{manifest_path} does not list {name}: the index is corrupt; rebuild it')
            if not file.is_file():
                raise IndexFormatError(f'{file} is missing: the index is incomplete; rebuild it')
            size = file.stat().st_size
            if size != files[name]['bytes']:
                raise IndexFormatError(f'{file} is {size} bytes but {MANIFEST_NAME} records {files[name]["bytes"]}: '
                                       f'the file is truncated or was replaced; rebuild the index')
            if verify and sha256_file(file) != files[name]['sha256']:
                raise IndexFormatError(f'{file} does not match the sha256 in {MANIFEST_NAME}: the file is corrupt or '
                                       f'was modified; rebuild the index')
        emb_file = path / EMBEDDINGS_NAME
        try:
            emb = np.load(emb_file, mmap_mode='r' if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise IndexFormatError(f'{emb_file} is not a readable .npy array ({e}); rebuild the index') from e
        if emb.shape != (count, dim) or emb.dtype != np.float32:
            raise IndexFormatError(f'{emb_file} holds {emb.dtype} {emb.shape} but {MANIFEST_NAME} says float32 '
                                   f'({count}, {dim}); rebuild the index')
        meta_file = path / METADATA_NAME
        metadata = []
        with open(meta_file, encoding='utf-8') as f:
            for line_no, line in enumerate(f, 1):
                try:
                    metadata.append(json.loads(line))
                except ValueError as e:
                    raise IndexFormatError(f'{meta_file} line {line_no} is not valid JSON ({e}); rebuild the index') \
                        from e
        if len(metadata) != count:
            raise IndexFormatError(f'{meta_file} has {len(metadata)} rows but {MANIFEST_NAME} says {count}; rebuild '
                                   f'the index')
        faiss_index = None
        if kind in ('ivf', 'hnsw'):
            faiss = _import_faiss()
            faiss_file = path / FAISS_NAME
            try:
                faiss_index = faiss.read_index(str(faiss_file))
            except RuntimeError as e:
                raise IndexFormatError(f'{faiss_file} is not a readable faiss index ({str(e).splitlines()[0]}); '
                                       f'rebuild the index') from e
            if faiss_index.ntotal != count or faiss_index.d != dim:
                raise IndexFormatError(f'{faiss_file} holds {faiss_index.ntotal} x {faiss_index.d} but '
                                       f'{MANIFEST_NAME} says {count} x {dim}; rebuild the index')
        return cls(emb, metadata, metric=metric, kind=kind, params=manifest.get('params'),
                   model=manifest.get('model'), faiss_index=faiss_index)
