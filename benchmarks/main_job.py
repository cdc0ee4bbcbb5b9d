"""The main job on the embedded default: the whole product, end to end, on generated data.

1. generate SynthVID (MARS layout) -- a procedurally rendered video re-ID benchmark;
2. train a small variant of every family (the ``*_synthvid`` recipes: tiny backbones, 64x32 frames);
3. export each run as a Hub repo folder and publish it to a real Hub mirror on loopback (olah serving local git
   repos), recording the manifest entries (pinned commit, sha256) in ``<out>/weights_manifest.json``;
4. in a fresh process with ``HF_ENDPOINT`` pointing at the mirror and ``REIDZOO_MANIFESTS`` at that manifest, load
   every model back through ``reidzoo.create_model(tag, pretrained=True)`` and ``torch.hub.load(..., source='local')``
   and check both give the trained model's embeddings;
5. run the leaderboard on SynthVID with its protocol (table, CMC plot, ranked results), beside a per-frame
   colour-histogram matcher measured in the same run.

Every number printed comes from this run. Re-running reuses the dataset, the finished runs, the published repos,
the Hub cache and the feature cache, so a second run takes a minute or two.

    python benchmarks/main_job.py                      # everything, into output/main_job
    python benchmarks/main_job.py --families tp,sinet  # a subset
    python benchmarks/main_job.py --fresh              # forget earlier runs
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# family -> its SynthVID recipe (reidzoo/train/recipes/<name>.yaml)
FAMILY_RECIPES = {
    'tp': 'tp_synthvid',
    'cosam': 'cosam_synthvid',
    'sinet': 'sinet_synthvid',
    'stmp': 'stmp_synthvid',
    'sta': 'sta_synthvid',
    'cstnet': 'cstnet_synthvid',
}
HUB_ORG = 'reidzoo-synthvid'
TAG = 'synthvid'


def _stage(name: str, t0: float, timings: dict) -> None:
    timings[name] = time.perf_counter() - t0
    print(f'[main job] {name}: {timings[name]:.1f} s', flush=True)


def train_families(out: Path, families: list[str], timings: dict) -> dict[str, Path]:
    """Train (or reuse) one run per family; returns family -> run dir."""
    from reidzoo.train import train
    from reidzoo.train.recipes import list_recipes
    runs = {}
    available = set(list_recipes())
    for family in families:
        recipe = FAMILY_RECIPES[family]
        if recipe not in available:
            print(f'[main job] no recipe {recipe!r} for {family}: skipped', flush=True)
            continue
        run_dir = out / 'runs' / recipe
        done = run_dir / 'done.json'
        t0 = time.perf_counter()
        if done.exists():
            print(f'[main job] {recipe}: finished earlier, reusing {run_dir}', flush=True)
        else:
            resume = (run_dir / 'checkpoint.pt').exists()
            result = train(recipe if not resume else None, output_dir=run_dir, resume=resume)
            done.write_text(json.dumps({'step': result.step, 'metrics': result.metrics}, default=str))
        _stage(f'train {recipe}', t0, timings)
        runs[family] = run_dir
    return runs


def export_and_publish(out: Path, runs: dict[str, Path], mirror, timings: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """Export each run and publish it to the mirror; returns ``arch.tag`` -> manifest entry, and -> export folder."""
    from reidzoo.hub import sha256_file
    from reidzoo.hub_mirror import publish_folder_to_mirror
    from reidzoo.train.export import export_run
    t0 = time.perf_counter()
    published_file = out / 'published.json'
    published = json.loads(published_file.read_text()) if published_file.exists() else {}
    entries, exports = {}, {}
    for family, run_dir in runs.items():
        export_dir = out / 'export' / run_dir.name
        if not (export_dir / 'model.safetensors').exists():
            export_run(run_dir, export_dir)
        config = json.loads((export_dir / 'config.json').read_text())
        arch = config['architecture']
        repo_id = f'{HUB_ORG}/{arch}'
        sha = sha256_file(export_dir / 'model.safetensors')
        previous = published.get(repo_id)
        if previous and previous['sha256'] == sha and mirror.repo_dir(repo_id).exists():
            entry = previous  # same weights already published at that commit
        else:
            entry = publish_folder_to_mirror(export_dir, mirror, repo_id)
        entry.setdefault('license', 'apache-2.0')
        entry.setdefault('source', {'type': 'reidzoo-train', 'recipe': run_dir.name})
        published[repo_id] = entry
        entries[f'{arch}.{TAG}'] = entry
        exports[f'{arch}.{TAG}'] = export_dir.name
    published_file.write_text(json.dumps(published, indent=1))
    manifest = {'schema_version': 1, 'description': 'SynthVID weights trained and published by the main job '
                                                    '(loopback Hub mirror).', 'weights': entries}
    from reidzoo.manifest import validate_manifest
    validate_manifest(manifest, str(out / 'weights_manifest.json'))
    (out / 'weights_manifest.json').write_text(json.dumps(manifest, indent=1))
    _stage('export + publish', t0, timings)
    return entries, exports


def score(out: Path, tags: list[str], runs: dict[str, str]) -> int:
    """Stage run in a child process whose environment points huggingface_hub at the mirror."""
    import torch
    import reidzoo
    from reidzoo.eval.leaderboard import format_markdown, run_leaderboard
    from reidzoo.train.recipes import load_recipe
    timings: dict = {}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    checks = []
    for tag in tags:
        arch = tag.split('.')[0]
        model = reidzoo.create_model(tag, pretrained=True).eval()
        hub_model = torch.hub.load(str(REPO_ROOT), arch, source='local', pretrained=True, verbose=False).eval()
        cfg = model.pretrained_cfg
        c, h, w = cfg['input_size']
        x = torch.randn(2, cfg['num_frames'], c, h, w)
        from safetensors.torch import load_file
        trained = load_file(str(out / 'export' / runs[tag] / 'model.safetensors'))
        with torch.no_grad():
            a, b = model(x), hub_model(x)
        same_weights = all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
        diff = (a - b).abs().max().item()
        checks.append((tag, cfg['revision'][:10], same_weights, diff))
        if not same_weights or diff > 0:
            print(f'[main job] {tag}: loaded weights differ from the trained ones (max diff {diff})', file=sys.stderr)
            return 1
    lines = ['| weights | revision | create_model = trained | torch.hub = create_model |', '|---|---|---|---|']
    lines += [f'| {t} | {r} | {"yes" if s else "NO"} | {"yes" if d == 0 else f"NO ({d:.2g})"} |'
              for t, r, s, d in checks]
    print('\n'.join(lines))
    _stage('load back (create_model + torch.hub)', t0, timings)

    t0 = time.perf_counter()
    recipe = load_recipe(FAMILY_RECIPES['tp'])
    ds_kwargs = dict(recipe['data'].get('dataset_kwargs', {}))
    rows = run_leaderboard(tags, [('synthvid', None, ds_kwargs)], output_dir=out / 'leaderboard', progress=True)
    _stage('leaderboard', t0, timings)
    baseline = colour_histogram_row(ds_kwargs)
    table = format_markdown(rows)
    report = ['## SynthVID leaderboard (generated data, not a real benchmark)', '',
              f'Dataset: SynthVID, MARS layout, {json.dumps(ds_kwargs)}; protocol and numbers measured in this run.', '',
              table, baseline, '', '## Weights loaded back from the loopback Hub mirror', '', *lines, '']
    (out / 'leaderboard' / 'README_section.md').write_text('\n'.join(report))
    print('\n'.join(report))
    (out / 'score_timings.json').write_text(json.dumps(timings))
    return 0


def colour_histogram_row(ds_kwargs: dict) -> str:
    """The per-frame colour-histogram matcher on the same data (what appearance alone gives without learning)."""
    from reidzoo.cli.synth import colour_histogram_baseline
    from reidzoo.data import build_dataset
    ds = build_dataset('synthvid', None, **ds_kwargs)
    r = colour_histogram_baseline(ds).as_dict()
    r1, m_ap = r['rank1'], r['mAP']
    return (f'Colour-histogram matcher (no learning), same query/gallery: R1 {100 * r1:.1f}, mAP {100 * m_ap:.1f}.')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=str(REPO_ROOT / 'output' / 'main_job'))
    parser.add_argument('--families', default=','.join(FAMILY_RECIPES), help='comma-separated subset of ' +
                        ', '.join(FAMILY_RECIPES))
    parser.add_argument('--fresh', action='store_true', help='delete earlier runs, exports and caches first')
    parser.add_argument('--score-stage', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.score_stage:
        spec = json.loads(args.score_stage)
        return score(out, spec['tags'], spec['runs'])
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # SynthVID, the Hub cache and timm's cache live under the job folder: nothing outside it is touched
    os.environ.setdefault('REIDZOO_CACHE', str(out / 'cache'))
    os.environ.setdefault('HF_HOME', str(out / 'hf_home'))
    families = [f.strip() for f in args.families.split(',') if f.strip()]
    unknown = sorted(set(families) - set(FAMILY_RECIPES))
    if unknown:
        parser.error(f'unknown families {unknown}; choose from {list(FAMILY_RECIPES)}')
    timings: dict = {}
    t_all = time.perf_counter()
    runs = train_families(out, families, timings)
    from reidzoo.hub_mirror import LocalHubMirror
    with LocalHubMirror(out / 'hub_mirror') as mirror:
        entries, exports = export_and_publish(out, runs, mirror, timings)
        env = dict(os.environ, HF_ENDPOINT=mirror.endpoint, REIDZOO_MANIFESTS=str(out / 'weights_manifest.json'),
                   HF_HUB_DISABLE_TELEMETRY='1')
        spec = {'tags': sorted(entries), 'runs': exports}
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, __file__, '--out', str(out), '--score-stage', json.dumps(spec)],
                            env=env).returncode
        _stage('score (child process)', t0, timings)
    timings['total'] = time.perf_counter() - t_all
    (out / 'timings.json').write_text(json.dumps(timings, indent=1))
    print(f'[main job] total {timings["total"]:.0f} s; results in {out}/leaderboard', flush=True)
    return rc


if __name__ == '__main__':
    sys.exit(main())
