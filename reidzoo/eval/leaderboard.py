"""The leaderboard harness: score models on benchmarks with each dataset's standard protocol.

For every (model, dataset): embed every tracklet the protocol needs once, with the model's own test sampling,
cache the embeddings on disk (keyed by the weights' sha256, the tracklet's frames, the sampling and the input size;
atomic writes, reused on the next run), evaluate each named protocol, and report rank-1/5/10/20, mAP and mINP beside
the papers' numbers (``reidzoo/spec/paper_results.json``) with the difference. Writes ``leaderboard.json``,
``leaderboard.md``, a CMC plot per dataset and a picture of ranked results.

    reidzoo benchmark --models sinet_resnet50.mars --dataset mars --root /data/mars
    torchrun --nproc_per_node 4 -m reidzoo benchmark --models ... --dataset mars --root ...   # sharded
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .._atomic import atomic_write, atomic_write_text

__all__ = ['run_leaderboard', 'LeaderboardRow', 'FeatureCache', 'weights_id', 'load_paper_results']

PAPER_RESULTS = Path(__file__).resolve().parents[1] / 'spec' / 'paper_results.json'  # package data
SPLIT_DATASETS = {'ilidsvid': 10, 'prid2011': 10}


# --- feature cache -------------------------------------------------------------------------------------------------
def weights_id(model: nn.Module) -> str:
    """sha256 of the model's weights: the file's (from the pretrained cfg) or, failing that, of the tensors."""
    sha = getattr(model, 'pretrained_cfg', {}).get('sha256')  # present only when the cfg names a weights file
    if sha:
        return sha
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if v.numel() else b'')
    return h.hexdigest()


def tracklet_key(frames: Sequence[str]) -> str:
    """Identity of a tracklet for the cache: its frame paths."""
    return hashlib.sha1('\n'.join(frames).encode()).hexdigest()


class FeatureCache:
    """Embeddings of one model + sampling + input size, keyed by tracklet; one safetensors file, written atomically.

    An interrupted extraction writes nothing: new rows are added only once all missing tracklets of a request are
    embedded, through a temp file that replaces the old one.
    """

    def __init__(self, cache_dir: Path, namespace: str):
        self.path = Path(cache_dir) / f'{namespace}.safetensors'
        self._keys: dict[str, int] = {}
        self._feats: Optional[torch.Tensor] = None
        if self.path.exists():
            from safetensors import safe_open
            with safe_open(str(self.path), 'pt') as f:
                keys = json.loads(f.metadata()['keys'])
                self._feats = f.get_tensor('features')
            self._keys = {k: i for i, k in enumerate(keys)}

    def missing(self, keys: Sequence[str]) -> list[int]:
        return [i for i, k in enumerate(keys) if k not in self._keys]

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        return self._feats[torch.as_tensor([self._keys[k] for k in keys], dtype=torch.long)]

    def add(self, keys: Sequence[str], feats: torch.Tensor, persist: bool = True) -> None:
        """Add rows; ``persist=False`` keeps them in memory only (ranks other than 0 under torchrun)."""
        from safetensors.torch import save_file
        if not len(keys):
            return
        start = len(self._keys)
        self._feats = feats.float() if self._feats is None else torch.cat([self._feats, feats.float()])
        self._keys.update({k: start + i for i, k in enumerate(keys)})
        if not persist:
            return
        atomic_write(self.path, lambda tmp: save_file({'features': self._feats.contiguous()}, str(tmp),
                                                      metadata={'keys': json.dumps(list(self._keys))}))


# --- results ---------------------------------------------------------------------------------------------------------
@dataclass
class LeaderboardRow:
    model: str
    dataset: str
    protocol: str
    metrics: dict[str, float]
    cmc: list[float]
    num_queries: int
    num_gallery: int
    distance: str
    test_sampling: str
    rerank: bool = False
    paper: dict[str, float] = field(default_factory=dict)
    paper_source: str = ''
    extracted: int = 0


def load_paper_results(path: Path = PAPER_RESULTS) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data['results'] if isinstance(data, dict) and 'results' in data else data


def _paper_for(arch: str, dataset: str, rerank: bool, papers: list[dict[str, Any]]) -> tuple[dict, str]:
    for entry in papers:
        if entry.get('model') == arch and entry.get('dataset') == dataset and bool(entry.get('rerank')) == rerank:
            return entry.get('metrics', {}), entry.get('source', '')
    return {}, ''


# --- the harness -----------------------------------------------------------------------------------------------------
def _resolve_model(spec: str, device: torch.device, model_kwargs: dict[str, Any]) -> nn.Module:
    from .. import create_model
    from ..models import get_pretrained_cfg, split_model_name_tag
    path = Path(spec)
    if path.is_dir() and (path / 'config.json').exists():
        spec = f'local-dir:{path}'
    pretrained = True
    if not spec.startswith(('hf-hub:', 'local-dir:')):
        arch, tag = split_model_name_tag(spec)
        pretrained = bool(tag) or bool(get_pretrained_cfg(arch).get('hf_hub_id'))
    return create_model(spec, pretrained=pretrained, **model_kwargs).eval().to(device)


def _dataset_variants(name: str, root: Optional[str], kwargs: dict[str, Any]):
    from ..data import build_dataset
    splits = SPLIT_DATASETS.get(name if name != 'synthvid' else kwargs.get('layout', 'mars'), 1)
    if 'split_id' in kwargs:
        splits = 1
    for split in range(splits):
        kw = dict(kwargs, split_id=split) if splits > 1 else dict(kwargs)
        yield build_dataset(name, root, **kw)


def _distributed() -> tuple[int, int]:
    if int(os.environ.get('WORLD_SIZE', '1')) > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group('nccl' if torch.cuda.is_available() else 'gloo')
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def embed_tracklets(model: nn.Module, tracklets: Sequence[Any], cache: Optional[FeatureCache], *,
                    batch_size: int, progress: bool, num_workers: int = 0) -> tuple[torch.Tensor, int]:
    """Embeddings of ``tracklets`` (cached ones read, missing ones extracted, sharded across ranks)."""
    from .extract import extract_features
    keys = [tracklet_key(t.frames) for t in tracklets]
    todo = cache.missing(keys) if cache is not None else list(range(len(keys)))
    if todo:
        rank, world = _distributed()
        feats = extract_features(model, [tracklets[i] for i in todo], batch_size=batch_size, progress=progress,
                                 num_workers=num_workers, rank=rank, world_size=world)
        if world > 1:
            import torch.distributed as dist
            parts: list[Any] = [None] * world
            dist.all_gather_object(parts, feats)
            full = torch.empty(len(todo), parts[0].shape[1])
            for r, part in enumerate(parts):
                full[r::world] = part
            feats = full
        if cache is None:
            return feats, len(todo)
        cache.add([keys[i] for i in todo], feats, persist=rank == 0)
    return cache.get(keys), len(todo)


def run_leaderboard(
        models: Sequence[str],
        datasets: Sequence[tuple[str, Optional[str], dict[str, Any]]],
        *,
        protocols: Optional[Sequence[str]] = None,
        output_dir: str | Path = 'output/leaderboard',
        cache_dir: str | Path | None = None,
        rerank: bool = False,
        batch_size: int = 32,
        device: str | None = None,
        model_kwargs: Optional[dict[str, Any]] = None,
        num_workers: int = 0,
        progress: bool = True,
        plots: bool = True,
) -> list[LeaderboardRow]:
    """Score ``models`` on ``datasets`` (``(name, root, build kwargs)``) and write the leaderboard files.

    Args:
        models: ``arch.tag``, ``hf-hub:org/repo@rev``, ``local-dir:/path`` (or a folder written by save_pretrained).
        datasets: e.g. ``[('mars', '/data/mars', {})]``; iLIDS-VID and PRID run all 10 splits and average.
        protocols: protocol names; default each dataset's ``default_protocol``.
        cache_dir: feature cache (default ``<output_dir>/features``).
        rerank: also add k-reciprocal re-ranked rows.
    """
    from .protocols import average_results, build_eval_sets, evaluate_protocol, get_protocol
    out = Path(output_dir)
    cache_root = Path(cache_dir) if cache_dir else out / 'features'
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    papers = load_paper_results()
    rows: list[LeaderboardRow] = []
    ranked_example: dict[str, Any] = {}
    for spec in models:
        model = _resolve_model(spec, dev, model_kwargs or {})
        cfg = model.pretrained_cfg
        arch = cfg.get('architecture', spec)
        namespace = '-'.join([weights_id(model)[:24], cfg.get('test_sampling', ''), str(cfg.get('num_frames')),
                              'x'.join(map(str, cfg.get('input_size', ())))])
        cache = FeatureCache(cache_root, namespace)
        for ds_name, root, kwargs in datasets:
            per_protocol: dict[str, list] = {}
            extracted = 0
            for ds in _dataset_variants(ds_name, root, kwargs):
                for proto_name in (protocols or [ds.default_protocol]):
                    protocol = get_protocol(proto_name)
                    sets = build_eval_sets(ds, protocol)
                    feats, n_new = embed_tracklets(model, sets.unique_tracklets, cache, batch_size=batch_size,
                                                   progress=progress, num_workers=num_workers)
                    extracted += n_new
                    for rr in ([False, True] if rerank else [False]):
                        result = evaluate_protocol(feats, sets, protocol, distance=cfg.get('distance', 'cosine'),
                                                   rerank=rr)
                        per_protocol.setdefault(f'{proto_name}|{rr}', []).append((result, sets))
                    if not ranked_example and plots:
                        ranked_example = dict(model=spec, dataset=ds_name, sets=sets, feats=feats,
                                              distance=cfg.get('distance', 'cosine'))
            for key, results in per_protocol.items():
                proto_name, rr = key.split('|')
                result = average_results([r for r, _ in results])  # iLIDS-VID / PRID: mean over the 10 splits
                metrics = {k: v for k, v in result.as_dict().items() if k in ('mAP', 'mINP') or k.startswith('rank')}
                paper, source = _paper_for(arch, ds_name, rr == 'True', papers)
                rows.append(LeaderboardRow(
                    model=spec, dataset=ds_name + (f' ({len(results)} splits)' if len(results) > 1 else ''),
                    protocol=proto_name, metrics=metrics, cmc=[float(c) for c in result.cmc],
                    num_queries=int(results[0][0].num_queries), num_gallery=len(results[0][1].gallery_index),
                    distance=cfg.get('distance', 'cosine'), test_sampling=cfg.get('test_sampling', ''),
                    rerank=rr == 'True', paper=paper, paper_source=source, extracted=extracted))
    if _distributed()[0] == 0:
        write_outputs(rows, out, ranked_example if plots else None)
    return rows


# --- outputs ---------------------------------------------------------------------------------------------------------
def format_markdown(rows: Sequence[LeaderboardRow]) -> str:
    """The leaderboard as a Markdown table; paper numbers and the difference (measured − paper) in points."""
    head = ('| model | dataset | protocol | R1 | R5 | R10 | R20 | mAP | mINP | paper R1 / mAP | Δ R1 / Δ mAP |\n'
            '|---|---|---|---|---|---|---|---|---|---|---|')
    lines = [head]
    for r in rows:
        m = {k: 100 * v for k, v in r.metrics.items()}
        proto = r.protocol + (' + re-rank' if r.rerank else '')
        if r.paper:
            p1, pm = r.paper.get('rank1'), r.paper.get('mAP')
            paper = f'{p1 if p1 is not None else "–"} / {pm if pm is not None else "–"}'
            d1 = f'{m["rank1"] - p1:+.1f}' if p1 is not None else '–'
            dm = f'{m["mAP"] - pm:+.1f}' if pm is not None else '–'
            diff = f'{d1} / {dm}'
        else:
            paper, diff = '–', '–'
        lines.append(f'| {r.model} | {r.dataset} | {proto} | {m["rank1"]:.1f} | {m["rank5"]:.1f} | {m["rank10"]:.1f} '
                     f'| {m["rank20"]:.1f} | {m["mAP"]:.1f} | {m["mINP"]:.1f} | {paper} | {diff} |')
    return '\n'.join(lines) + '\n'


def write_outputs(rows: Sequence[LeaderboardRow], out: Path, ranked_example: Optional[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / 'leaderboard.json', json.dumps([asdict(r) for r in rows], indent=1))
    atomic_write_text(out / 'leaderboard.md', format_markdown(rows))
    try:
        import matplotlib
    except ImportError:
        print('matplotlib not installed (pip install reidzoo[plot]): skipping plots', file=sys.stderr)
        return
    matplotlib.use('Agg')
    plot_cmc(rows, out)
    if ranked_example:
        plot_ranked_results(**ranked_example, path=out / 'ranked_results.png')


def plot_cmc(rows: Sequence[LeaderboardRow], out: Path, max_rank: int = 20) -> list[Path]:
    """One CMC plot per dataset, a curve per model and protocol."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    paths = []
    for ds in sorted({r.dataset for r in rows}):
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for r in (r for r in rows if r.dataset == ds):
            k = min(max_rank, len(r.cmc))
            label = f'{r.model} ({r.protocol}{", re-rank" if r.rerank else ""}) R1 {100 * r.cmc[0]:.1f}'
            ax.plot(range(1, k + 1), [100 * c for c in r.cmc[:k]], marker='o', ms=3, label=label)
        ax.set(xlabel='rank', ylabel='matching rate (%)', title=f'CMC on {ds}', xlim=(1, max_rank))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='lower right')
        fig.tight_layout()
        safe = ''.join(c if c.isalnum() else '_' for c in ds)
        path = out / f'cmc_{safe}.png'
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_ranked_results(model: str, dataset: str, sets: Any, feats: torch.Tensor, distance: str, path: Path,
                        num_queries: int = 4, top_k: int = 5, query_frames: int = 4) -> Path:
    """Query tracklets (a few frames) beside their top-k gallery tracklets; green = true match, red = false.

    The queries are spread evenly over the query list (an unbiased sample, not the best or the worst cases); the
    gallery excludes the query's own camera for its identity, as the protocols do.
    """
    import matplotlib.pyplot as plt
    from PIL import Image
    from .distance import compute_distance
    qf = feats[torch.as_tensor(sets.query_index)]
    gf = feats[torch.as_tensor(sets.gallery_index)]
    dist = compute_distance(qf, gf, distance)
    dist = torch.as_tensor(dist).float()
    q_tr = [sets.unique_tracklets[i] for i in sets.query_index]
    g_tr = [sets.unique_tracklets[i] for i in sets.gallery_index]
    chosen = np.linspace(0, len(q_tr) - 1, num=min(num_queries, len(q_tr))).astype(int)
    cols = query_frames + top_k
    fig, axes = plt.subplots(len(chosen), cols, figsize=(1.0 * cols, 2.1 * len(chosen)), squeeze=False)
    for row, qi in enumerate(chosen):
        q = q_tr[qi]
        d = dist[qi].clone()
        same = torch.as_tensor([(g.pid == q.pid and g.camid == q.camid) for g in g_tr])
        d[same] = float('inf')  # the protocol's junk: same identity seen by the same camera
        order = torch.argsort(d)[:top_k].tolist()
        picks = np.linspace(0, len(q.frames) - 1, num=query_frames).astype(int)
        for c, fi in enumerate(picks):
            ax = axes[row][c]
            ax.imshow(Image.open(q.frames[fi]).convert('RGB'))
            ax.set_title(f'query {q.pid}' if c == 0 else '', fontsize=7)
        for c, gi in enumerate(order):
            g = g_tr[gi]
            ax = axes[row][query_frames + c]
            ax.imshow(Image.open(g.frames[len(g.frames) // 2]).convert('RGB'))
            ok = g.pid == q.pid
            for s in ax.spines.values():
                s.set_edgecolor('tab:green' if ok else 'tab:red')
                s.set_linewidth(3)
            ax.set_title(f'#{c + 1} {"✓" if ok else "✗"} {g.pid}', fontsize=7, color='green' if ok else 'red')
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f'{model} on {dataset}: query frames | top-{top_k} gallery tracklets (middle frame)', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
