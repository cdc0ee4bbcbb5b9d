"""The leaderboard's report: ``leaderboard.json``, a Markdown table, a CMC plot per dataset and ranked results.

Rows come from :func:`reidzoo.eval.leaderboard.run_leaderboard`; a paper's number appears beside a row only when
the row is the paper's setting (:func:`reidzoo.eval.papers.paper_for`), otherwise "–".
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .._atomic import atomic_write_text
from .distance import compute_distance

__all__ = ['LeaderboardRow', 'RankedExample', 'format_markdown', 'write_outputs', 'plot_cmc', 'plot_ranked_results']


@dataclass
class LeaderboardRow:
    """One (model, dataset, protocol, re-ranking) result.

    Attributes:
        model: the model as named on the command line.
        dataset: dataset name, with ``' (10 splits)'`` when split results were averaged.
        protocol: protocol name.
        metrics: rank1/rank5/rank10/rank20/mAP/mINP as fractions.
        cmc: the CMC curve.
        num_queries, num_gallery: query count and gallery size (of the first split).
        distance: distance used.
        test_sampling: the model's test-time clip sampling.
        rerank: k-reciprocal re-ranking applied.
        paper: the matching paper row's metrics (percent), empty when no paper row is this model's setting.
        paper_source: where the paper number comes from.
        extracted: tracklets embedded in this run (0 when all came from the cache).
    """
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


@dataclass
class RankedExample:
    """What :func:`plot_ranked_results` draws: one model's query / gallery embeddings on one dataset."""
    model: str
    dataset: str
    sets: Any
    feats: torch.Tensor
    distance: str


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


def write_outputs(rows: Sequence[LeaderboardRow], out: Path, ranked_example: Optional[RankedExample] = None, *,
                  plots: bool = True) -> None:
    """Write ``leaderboard.json`` and ``leaderboard.md``; with ``plots``, ``cmc_<dataset>.png`` and (given an
    example) ``ranked_results.png``. ``plots=False`` writes no image at all."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / 'leaderboard.json', json.dumps([asdict(r) for r in rows], indent=1))
    atomic_write_text(out / 'leaderboard.md', format_markdown(rows))
    if not plots:
        return
    try:
        import matplotlib
    except ImportError:
        print('matplotlib not installed (pip install reidzoo[plot]): skipping plots', file=sys.stderr)
        return
    matplotlib.use('Agg')
    plot_cmc(rows, out)
    if ranked_example is not None:
        plot_ranked_results(**asdict_shallow(ranked_example), path=out / 'ranked_results.png')


def asdict_shallow(example: RankedExample) -> dict[str, Any]:
    """The example's fields without copying tensors (``dataclasses.asdict`` deep-copies)."""
    return {k: getattr(example, k) for k in RankedExample.__dataclass_fields__}


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
