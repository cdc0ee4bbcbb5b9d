"""The leaderboard end to end on a tiny SynthVID with two tiny models, its feature cache, and the speed benchmark."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reidzoo
from reidzoo.data import build_dataset
from reidzoo.eval import evaluate_rank
from reidzoo.eval.distance import compute_distance
from reidzoo.eval.cache import FeatureCache, cache_namespace, tracklet_key
from reidzoo.eval.leaderboard import run_leaderboard
from reidzoo.eval.protocols import build_eval_sets, get_protocol
from reidzoo.hub import save_pretrained

REPO = Path(__file__).resolve().parents[1]
DS_KWARGS = dict(layout='mars', num_ids=8, seed=5, frame_size=(32, 16), lengths=(3, 9, 5))


@pytest.fixture(scope='module')
def synth_root(make_synthvid):
    return make_synthvid('lb', **DS_KWARGS)


@pytest.fixture(scope='module')
def two_models(tmp_path_factory):
    """Two tiny models written as Hub repo folders (what `reidzoo export` writes)."""
    out = tmp_path_factory.mktemp('models')
    dirs = []
    for i, (arch, kwargs) in enumerate([('tp_resnet50', dict(backbone='test_resnet')),
                                        ('sta_resnet50', dict(backbone='test_resnet'))]):
        torch.manual_seed(i)
        model = reidzoo.create_model(arch, **kwargs).eval()
        dirs.append(str(save_pretrained(model, out / arch)))
    return dirs


def _features_from_cache(cache_dir, model_dir, tracklets):
    model = reidzoo.create_model(f'local-dir:{model_dir}', pretrained=True)
    namespace = cache_namespace(model)
    assert (Path(cache_dir) / f'{namespace}.safetensors').is_file()
    return FeatureCache(cache_dir, namespace).get([tracklet_key(t.frames) for t in tracklets])


def test_leaderboard_end_to_end_and_cache(synth_root, two_models, tmp_path, monkeypatch):
    out, cache_dir = tmp_path / 'out', tmp_path / 'cache'
    rows = run_leaderboard(two_models, [('synthvid', synth_root, DS_KWARGS)], output_dir=out, cache_dir=cache_dir,
                           progress=False, batch_size=16)
    assert [r.protocol for r in rows] == ['synthvid_standard'] * 2
    assert all(r.extracted > 0 for r in rows)
    ds = build_dataset('synthvid', synth_root, **DS_KWARGS)
    sets = build_eval_sets(ds, 'synthvid_standard')
    protocol = get_protocol('synthvid_standard')
    for row, model_dir in zip(rows, two_models):
        feats = _features_from_cache(cache_dir, model_dir, sets.unique_tracklets)
        dist = compute_distance(feats[torch.as_tensor(sets.query_index)], feats[torch.as_tensor(sets.gallery_index)],
                                row.distance)
        ref = evaluate_rank(dist, sets.q_pids, sets.g_pids, sets.q_camids, sets.g_camids,
                            max_rank=protocol.max_rank, ap=protocol.ap, skip_no_positive=protocol.skip_no_positive,
                            g_junk=sets.g_junk)
        assert row.metrics['rank1'] == pytest.approx(float(ref.cmc[0]))
        assert row.metrics['rank5'] == pytest.approx(float(ref.cmc[4]))
        assert row.metrics['mAP'] == pytest.approx(ref.mAP)
        assert row.metrics['mINP'] == pytest.approx(ref.mINP)
    table = (out / 'leaderboard.md').read_text()
    assert f'{100 * rows[0].metrics["mAP"]:.1f}' in table and 'synthvid_standard' in table
    assert json.loads((out / 'leaderboard.json').read_text())[1]['metrics'] == rows[1].metrics
    assert (out / 'cmc_synthvid.png').stat().st_size > 1000 and (out / 'ranked_results.png').stat().st_size > 1000

    # second run: every embedding comes from the cache, nothing is extracted
    import reidzoo.eval.extract as extract_module
    monkeypatch.setattr(extract_module, 'extract_features', lambda *a, **k: pytest.fail('extracted again'))
    again = run_leaderboard(two_models, [('synthvid', synth_root, DS_KWARGS)], output_dir=out, cache_dir=cache_dir,
                            progress=False, plots=False)
    assert [r.extracted for r in again] == [0, 0]
    assert [r.metrics for r in again] == [r.metrics for r in rows]


def test_killed_extraction_leaves_no_cache_entry(synth_root, two_models, tmp_path, monkeypatch):
    calls = {'n': 0}

    def dying_forward(self, x, _orig=reidzoo.models.temporal.TemporalPoolingNet.forward):
        calls['n'] += 1
        if calls['n'] == 2:
            raise KeyboardInterrupt('killed mid-extraction')
        return _orig(self, x)

    cache_dir = tmp_path / 'cache'
    with monkeypatch.context() as m:
        m.setattr(reidzoo.models.temporal.TemporalPoolingNet, 'forward', dying_forward)
        with pytest.raises(KeyboardInterrupt):
            run_leaderboard(two_models[:1], [('synthvid', synth_root, DS_KWARGS)], output_dir=tmp_path / 'out',
                            cache_dir=cache_dir, progress=False, batch_size=4, plots=False)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())  # no entry, no temp file
    rows = run_leaderboard(two_models[:1], [('synthvid', synth_root, DS_KWARGS)], output_dir=tmp_path / 'out',
                           cache_dir=cache_dir, progress=False, plots=False)
    assert rows[0].extracted > 0 and len(list(cache_dir.glob('*.safetensors'))) == 1
    assert not list(cache_dir.glob('.*'))


def test_benchmark_cli_and_paper_columns(synth_root, two_models, tmp_path, capsys):
    from reidzoo.cli import main
    assert main(['benchmark', '--models', two_models[0], '--dataset', 'synthvid', '--root', synth_root,
                 '--dataset-kwargs', json.dumps(DS_KWARGS), '--output', str(tmp_path / 'o'), '--workers', '0',
                 '--no-plots']) == 0
    out = capsys.readouterr().out
    assert '| model | dataset | protocol | R1 |' in out and 'synthvid_standard' in out


def test_paper_numbers_and_difference_in_table():
    from reidzoo.eval.leaderboard import LeaderboardRow, format_markdown, load_paper_results
    papers = load_paper_results()
    sinet = next(p for p in papers if p['model'] == 'sinet_resnet50' and p['dataset'] == 'mars')
    row = LeaderboardRow(model='sinet_resnet50.mars', dataset='mars', protocol='mars_query_in_gallery',
                         metrics=dict(rank1=0.9, rank5=0.95, rank10=0.97, rank20=0.98, mAP=0.85, mINP=0.6),
                         cmc=[0.9] * 20, num_queries=1980, num_gallery=11310, distance='cosine',
                         test_sampling='interleaved', paper=sinet['metrics'])
    line = format_markdown([row]).splitlines()[-1]
    assert f'{90 - sinet["metrics"]["rank1"]:+.1f}' in line and f'{85 - sinet["metrics"]["mAP"]:+.1f}' in line


def test_speed_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'speed.py'), '--smoke', '--out', str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / 'speed.json').read_text())
    row = data['rows'][0]
    assert 'error' not in row, row
    assert row['model'] == 'tp_resnet50' and row['clips_per_s'] > 0 and row['params_m'] > 1
    assert row['gflops_per_clip'] > 0 and data['pipeline_frames_per_s'] > 0
    assert '| tp_resnet50 |' in (tmp_path / 'speed.md').read_text()


def test_rerank_rows(synth_root, two_models, tmp_path):
    rows = run_leaderboard(two_models[:1], [('synthvid', synth_root, DS_KWARGS)], output_dir=tmp_path / 'o',
                           cache_dir=tmp_path / 'c', progress=False, plots=False, rerank=True)
    assert [r.rerank for r in rows] == [False, True]
    assert rows[0].metrics != rows[1].metrics  # k-reciprocal re-ranking changes the distances
    assert 're-rank' in (tmp_path / 'o' / 'leaderboard.md').read_text()


def test_torchrun_sharded_extraction_matches_one_process(synth_root, two_models, tmp_path, subprocess_env):
    """Two gloo ranks each embed half the tracklets; rank 0 gathers, caches and scores: same table as one process."""
    single = run_leaderboard(two_models[:1], [('synthvid', synth_root, DS_KWARGS)], output_dir=tmp_path / 'one',
                             cache_dir=tmp_path / 'c1', progress=False, plots=False)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nnodes', '1', '--nproc_per_node', '2',
           '-m', 'reidzoo', 'benchmark', '--models', two_models[0], '--dataset', 'synthvid', '--root', synth_root,
           '--dataset-kwargs', json.dumps(DS_KWARGS), '--output', str(tmp_path / 'two'),
           '--cache-dir', str(tmp_path / 'c2'), '--workers', '0', '--no-plots']
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = json.loads((tmp_path / 'two' / 'leaderboard.json').read_text())
    assert len(sharded) == 1
    for key, value in single[0].metrics.items():
        assert sharded[0]['metrics'][key] == pytest.approx(value, abs=1e-6), key
