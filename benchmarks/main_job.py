"""The main job on the embedded default: the whole product, end to end, on generated data.

1. generate SynthVID (MARS layout) -- a procedurally rendered video re-ID benchmark;
2. train a small variant of every family (the ``*_synthvid`` recipes: tiny backbones, 64x32 frames; SINet's recipe
   renders the same people and tracklets at 128x64, a second folder, which the job checks and reports);
3. export each run as a Hub repo folder and publish it to a real Hub mirror on loopback (olah serving local git
   repos), recording the manifest entries (pinned commit, sha256) in ``<out>/weights_manifest.json``;
4. in a fresh process with ``HF_ENDPOINT`` pointing at the mirror and ``REIDZOO_MANIFESTS`` at that manifest, load
   every model back through ``reidzoo.create_model(tag, pretrained=True)`` and ``torch.hub.load(..., source='local')``
   and check both give the trained model's embeddings;
5. run the leaderboard on ONE SynthVID folder (the shared recipe data, named in the output) with its protocol
   (table sorted by mAP, CMC plot, ranked results), beside a per-frame colour-histogram matcher scored by the same
   pipeline;
6. print the ``REIDZOO_MANIFESTS=... HF_HOME=... HF_HUB_OFFLINE=1`` line that makes the weights usable afterwards,
   and check it: a fresh process with only those variables loads every weight offline;
7. with ``--update-readme``, rewrite README's block between ``<!-- main-job:leaderboard:start -->`` and
   ``<!-- main-job:leaderboard:end -->`` and ``docs/cmc_synthvid.png``, ``docs/ranked_results.png`` from this run.

Every number printed comes from this run. Re-running reuses the dataset, the finished runs, the published repos,
the Hub cache and the feature cache, so a second run takes a minute or two.

    python benchmarks/main_job.py                      # everything, into output/main_job
    python benchmarks/main_job.py --families tp,sinet  # a subset
    python benchmarks/main_job.py --fresh              # forget earlier runs
    python benchmarks/main_job.py --update-readme      # and refresh README's SynthVID block and docs/*.png
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
from typing import Optional

from reidzoo._atomic import atomic_write, atomic_write_text

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


def load_back(out: Path, tags: list[str], runs: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Load every tag through create_model and torch.hub; returns the check table and tag -> short description.

    Raises SystemExit(1) if a loaded model differs from the trained weights.
    """
    import torch
    from safetensors.torch import load_file

    from reidzoo.models import create_model
    checks, described = [], {}
    for tag in tags:
        arch = tag.split('.')[0]
        model = create_model(tag, pretrained=True).eval()
        hub_model = torch.hub.load(str(REPO_ROOT), arch, source='local', pretrained=True, verbose=False).eval()
        cfg = model.pretrained_cfg
        c, h, w = cfg['input_size']
        x = torch.randn(2, cfg['num_frames'], c, h, w)
        trained = load_file(str(out / 'export' / runs[tag] / 'model.safetensors'))
        with torch.no_grad():
            a, b = model(x), hub_model(x)
        same_weights = all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
        diff = (a - b).abs().max().item()
        checks.append((tag, cfg['revision'][:10], same_weights, diff))
        if not same_weights or diff > 0:
            print(f'[main job] {tag}: loaded weights differ from the trained ones (max diff {diff})', file=sys.stderr)
            raise SystemExit(1)
        backbone = cfg.get('model_args', {}).get('backbone')
        described[tag] = f'{tag} ({backbone + " trunk, " if backbone else ""}{h}×{w} input)'
    lines = ['| weights | revision | create_model = trained | torch.hub = create_model |', '|---|---|---|---|']
    lines += [f'| {t} | {r} | {"yes" if s else "NO"} | {"yes" if d == 0 else f"NO ({d:.2g})"} |'
              for t, r, s, d in checks]
    return lines, described


def training_datasets(families: list[str], scored) -> list[str]:
    """Which SynthVID folder each family trained on, and how each differs from the scored one.

    The recipes share ``_synthvid_base``'s data but a recipe may change the frame size (SINet's trunk needs larger
    frames), which makes a second folder: the same seed and parameters give the same people, cameras and tracklets,
    rendered at another size. This checks that claim on the data instead of asserting it.
    """
    from reidzoo.data import build_dataset
    from reidzoo.train.recipes import load_recipe

    def structure(ds):
        return [(t.pid, t.camid, len(t.frames)) for s in (ds.train, ds.query, ds.gallery, ds.junk) for t in s]

    notes, reference = [], structure(scored)
    for family in families:
        data = load_recipe(FAMILY_RECIPES[family])['data']
        ds = build_dataset(data['dataset'], data.get('root'), **dict(data.get('dataset_kwargs', {})))
        if ds.root == scored.root:
            notes.append(f'{family}: trained on the scored folder')
        elif getattr(ds, 'record', None) is not None and structure(ds) == reference:
            h, w = ds.record.frame_size
            notes.append(f'{family}: trained on the same identities and tracklets rendered at {h}×{w} '
                         f'(`{_shown(ds.root)}`)')
        else:
            notes.append(f'{family}: trained on a different dataset, {ds!r}')
    return notes


def score(out: Path, tags: list[str], runs: dict[str, str], families: list[str]) -> int:
    """Stage run in a child process whose environment points huggingface_hub at the mirror."""
    import torch

    from reidzoo.cli.synth import colour_histogram_baseline
    from reidzoo.data import build_dataset
    from reidzoo.eval.leaderboard import run_leaderboard
    from reidzoo.train.recipes import load_recipe
    timings: dict = {}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    checks, described = load_back(out, tags, runs)
    print('\n'.join(checks))
    _stage('load back (create_model + torch.hub)', t0, timings)

    t0 = time.perf_counter()
    # one scored dataset: the folder the shared SynthVID recipe data describes (see training_datasets for the others)
    data = load_recipe(FAMILY_RECIPES['tp'])['data']
    dataset = build_dataset(data['dataset'], data.get('root'), **dict(data.get('dataset_kwargs', {})))
    print(f'[main job] scoring on {dataset.record.describe()} at {dataset.root}', flush=True)
    rows = run_leaderboard(tags, [('synthvid', dataset.root, {})], output_dir=out / 'leaderboard', progress=True)
    _stage('leaderboard', t0, timings)
    baseline = colour_histogram_baseline(dataset).as_dict()
    notes = training_datasets(families, dataset)
    section = readme_section(out, rows, described, baseline, dataset, notes)
    atomic_write_text(out / 'leaderboard' / 'README_section.md', section)
    print(section)

    # --- reidzoo match step (issue 12; owner: reidzoo/match/): the trained models on multi-camera SynthVID videos ---
    from reidzoo import create_model
    from reidzoo.match.benchmark import run_match_step
    t0 = time.perf_counter()
    match_section = run_match_step(out / 'match', {tag: create_model(tag, pretrained=True) for tag in tags})
    atomic_write_text(out / 'match' / 'README_section.md', match_section)
    print(match_section)
    _stage('match (SynthVID videos)', t0, timings)
    # --- end of the match step ---
    (out / 'score_timings.json').write_text(json.dumps(timings))
    return 0


def _shown(path: str | Path) -> str:
    """A path as README and the log show it: relative to the checkout when inside it, else absolute."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


def _pct(x: Optional[float]) -> str:
    return '–' if x is None else f'{100 * x:.1f}'


def readme_section(out: Path, rows, described: dict[str, str], baseline: dict[str, float], dataset,
                   notes: list[str]) -> str:
    """README's SynthVID leaderboard block, from this run only: table sorted by mAP, the data, how to reuse."""
    rows = sorted(rows, key=lambda r: r.metrics['mAP'], reverse=True)
    keys = ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')
    table = ['| model | R1 | R5 | R10 | R20 | mAP | mINP |', '|---|---|---|---|---|---|---|']
    table += [f'| {described.get(r.model, r.model)} | ' + ' | '.join(_pct(r.metrics.get(k)) for k in keys) + ' |'
              for r in rows]
    table.append('| per-frame colour-histogram matcher (no learning) | '
                 + ' | '.join(_pct(baseline.get(k)) for k in keys) + ' |')
    rec = dataset.record
    protocol = rows[0].protocol if rows else dataset.default_protocol
    text = [
        f'From the main job run of {time.strftime("%Y-%m-%d")} (`python benchmarks/main_job.py`, {os.cpu_count()} '
        f'CPU cores). Scored on **{rec.describe()}** (`{_shown(rec.root)}`), protocol '
        f'`{protocol}`, sorted by mAP. Every model was trained from scratch for a minute or three on a CPU, so these '
        'numbers compare pipelines, not architectures. Training is deterministic on one machine (a re-run prints the '
        'same table); another CPU or BLAS build can change the numbers by a few points.',
        '',
        *table,
        '',
        'Training data: ' + '; '.join(notes) + '.',
        '',
        '![CMC on SynthVID](docs/cmc_synthvid.png)',
        '![Ranked results on SynthVID](docs/ranked_results.png)',
        '',
        'The weights are published to the loopback mirror and cached; to use them afterwards (from the checkout):',
        '',
        '```bash',
        f'export {reuse_env(out, relative=True)}',
        'python -c "import reidzoo; print(reidzoo.list_pretrained(\'*synthvid\'))"',
        f'reidzoo benchmark --models tp_resnet50.synthvid --dataset synthvid --root '
        f'{_shown(rec.root)}',
        '```',
        '',
    ]
    return '\n'.join(text)


def reuse_env(out: Path, relative: bool = False) -> str:
    """The variables a user sets to load the job's SynthVID weights later, offline, from the job's Hub cache."""
    def path(p: Path) -> str:
        p = p.resolve()
        if relative and p.is_relative_to(REPO_ROOT):
            return f'$PWD/{p.relative_to(REPO_ROOT)}'
        return str(p)
    return (f'REIDZOO_MANIFESTS={path(out / "weights_manifest.json")} HF_HOME={path(Path(os.environ["HF_HOME"]))} '
            'HF_HUB_OFFLINE=1')


def check_offline_reuse(out: Path, tags: list[str]) -> None:
    """Load every tag in a fresh process with only the printed variables (no mirror): the lines must be enough."""
    env = {k: v for k, v in os.environ.items() if k not in ('HF_ENDPOINT', 'REIDZOO_MANIFESTS', 'HF_HUB_OFFLINE')}
    env.update(dict(item.split('=', 1) for item in reuse_env(out).split()))
    code = ('import sys; from reidzoo.models import create_model\n'
            'for tag in sys.argv[1:]: create_model(tag, pretrained=True)\n')
    proc = subprocess.run([sys.executable, '-c', code, *tags], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'[main job] loading the weights with only `{reuse_env(out)}` failed:\n{proc.stderr}')
    print(f'[main job] checked: with only these variables set, all {len(tags)} weights load offline', flush=True)


def note_run_time(out: Path, seconds: float, trained: int, total: int, load: float) -> None:
    """Append this run's wall time to the README section (only the parent process knows it)."""
    path = out / 'leaderboard' / 'README_section.md'
    if trained == total:
        how = 'a fresh run: every model trained'
    elif trained == 0:
        how = 'a re-run: every model reused from an earlier run'
    else:
        how = f'{trained} of {total} models trained in this run, the others reused from an earlier one'
    line = (f'This run took {seconds / 60:.1f} min on {os.cpu_count()} CPU cores ({how}; load average '
            f'{load:.1f} at the start, so other work on the machine {"slowed it" if load > 1 else "did not slow it"}).')
    atomic_write_text(path, path.read_text(encoding='utf-8').rstrip() + '\n\n' + line + '\n')
    print(f'[main job] {line}', flush=True)


README_START, README_END = '<!-- main-job:leaderboard:start -->', '<!-- main-job:leaderboard:end -->'
PICTURES = ('cmc_synthvid.png', 'ranked_results.png')


def update_readme(out: Path, readme: Path = REPO_ROOT / 'README.md', docs: Path = REPO_ROOT / 'docs') -> None:
    """Replace README's block between the main-job markers with this run's section and refresh docs/*.png."""
    text = readme.read_text(encoding='utf-8')
    if text.count(README_START) != 1 or text.count(README_END) != 1 or text.index(README_START) > text.index(README_END):
        raise SystemExit(f'[main job] --update-readme: {readme} needs exactly one {README_START} line followed by one '
                         f'{README_END} line around the SynthVID leaderboard; add them and re-run.')
    section = (out / 'leaderboard' / 'README_section.md').read_text(encoding='utf-8')
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    for name in PICTURES:
        atomic_write(docs / name, lambda tmp, name=name: shutil.copyfile(out / 'leaderboard' / name, tmp))
    atomic_write_text(readme, f'{head}{README_START}\n{section.rstrip()}\n{README_END}{tail}')
    print(f'[main job] README.md leaderboard block and docs/{{{",".join(PICTURES)}}} updated from this run', flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=str(REPO_ROOT / 'output' / 'main_job'),
                        help='job folder: data, runs, exports, mirror, Hub cache, leaderboard (default: output/main_job)')
    parser.add_argument('--families', default=','.join(FAMILY_RECIPES), help='comma-separated subset of ' +
                        ', '.join(FAMILY_RECIPES) + ' (default: all)')
    parser.add_argument('--fresh', action='store_true', help='delete earlier runs, exports and caches first '
                        '(default: reuse them)')
    parser.add_argument('--update-readme', action='store_true',
                        help="rewrite README.md's SynthVID leaderboard block (between the main-job marker comments) "
                             'and docs/cmc_synthvid.png, docs/ranked_results.png from this run; needs every family '
                             '(default: off, results only in OUT/leaderboard)')
    parser.add_argument('--score-stage', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.score_stage:
        spec = json.loads(args.score_stage)
        return score(out, spec['tags'], spec['runs'], spec['families'])
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
    if args.update_readme and set(families) != set(FAMILY_RECIPES):
        parser.error('--update-readme rewrites the table of every family: run without --families')
    timings: dict = {}
    t_all = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    runs = train_families(out, families, timings)
    from reidzoo.hub_mirror import LocalHubMirror
    with LocalHubMirror(out / 'hub_mirror') as mirror:
        entries, exports = export_and_publish(out, runs, mirror, timings)
        env = dict(os.environ, HF_ENDPOINT=mirror.endpoint, REIDZOO_MANIFESTS=str(out / 'weights_manifest.json'),
                   HF_HUB_DISABLE_TELEMETRY='1')
        spec = {'tags': sorted(entries), 'runs': exports, 'families': list(runs)}
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, __file__, '--out', str(out), '--score-stage', json.dumps(spec)],
                            env=env).returncode
        _stage('score (child process)', t0, timings)
    if rc == 0:
        print(f'[main job] to use these SynthVID weights afterwards, set:\n  export {reuse_env(out)}', flush=True)
        check_offline_reuse(out, sorted(entries))
        trained = [k for k, v in timings.items() if k.startswith('train ') and v > 1]
        note_run_time(out, time.perf_counter() - t_all, len(trained), len(runs), load_at_start)
        if args.update_readme:
            update_readme(out)
    timings['total'] = time.perf_counter() - t_all
    (out / 'timings.json').write_text(json.dumps(timings, indent=1))
    print(f'[main job] total {timings["total"]:.0f} s; results in {out}/leaderboard', flush=True)
    return rc


if __name__ == '__main__':
    sys.exit(main())
