"""The trainer end to end on a tiny SynthVID: learning, exact resume, DDP, NaN stop, export -> Hub -> create_model,
and the ImageNet start through timm's Hub path (reidzoo.train)."""
import json
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import reidzoo
from reidzoo.train import NonFiniteLossError, Trainer, evaluate_model, load_recipe, train
from reidzoo.train.checkpoint import atomic_write, load_checkpoint
from reidzoo.train.losses import LOSS_TYPES, register_loss

SYNTH_IDS = 48  # 24 training identities: with 12 the test mAP barely moves (measured)


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory) -> str:
    """SynthVID in the MARS layout, 48 identities of 64x32 frames, generated once for this module."""
    from reidzoo.data.synthvid import build_synthvid
    root = tmp_path_factory.mktemp('synthvid') / 'mars'
    build_synthvid(root, layout='mars', num_ids=SYNTH_IDS, seed=0, frame_size=(64, 32))
    return str(root)


def _overrides(root: str, **extra) -> list[str]:
    base = {'data.root': root, 'data.dataset_kwargs.num_ids': SYNTH_IDS, 'train.progress': False,
            'data.num_workers': 0, 'eval.num_workers': 0}
    base.update(extra)
    return [f'{k}={v}' for k, v in base.items()]


def _log(run_dir: Path, kind: str) -> list[dict]:
    lines = (Path(run_dir) / 'log.jsonl').read_text().splitlines()
    return [r for r in map(json.loads, lines) if r['type'] == kind]


@pytest.fixture(scope='module')
def trained(synth_root, tmp_path_factory):
    """tp_synthvid (timm test_resnet trunk, 32x16 input) trained ~130 steps; the same model's mAP at initialisation."""
    run_dir = tmp_path_factory.mktemp('runs') / 'tp'
    recipe = load_recipe('tp_synthvid', _overrides(synth_root, **{'train.checkpoint_every': 0}))
    trainer = Trainer(recipe, run_dir)
    trainer.setup()
    before = evaluate_model(trainer.model, trainer.dataset, recipe.eval.protocol, batch_size=64)
    result = trainer.fit()
    return result, before, run_dir, trainer


def test_training_improves_map(trained):
    result, before, run_dir, trainer = trained
    after = result.metrics
    assert after['protocol'] == before['protocol'] == 'synthvid_standard'
    # measured on 2 CPU cores: mAP 0.08 at initialisation -> 0.29 after ~20 s of training
    assert after['mAP'] >= before['mAP'] + 0.12, (before, after)
    assert after['mAP'] >= 2 * before['mAP'], (before, after)
    assert after['rank1'] > before['rank1']
    assert result.epoch == 16 and result.step > 100
    losses = _log(run_dir, 'train')
    assert all(set(r) >= {'ce', 'triplet', 'loss', 'lr'} for r in losses)
    first, last = losses[0], losses[-1]
    assert last['triplet'] < first['triplet'] and last['lr'] == pytest.approx(3e-4)  # decayed at epoch 12
    assert json.loads((run_dir / 'metrics.json').read_text())['mAP'] == after['mAP']
    assert load_checkpoint(run_dir / 'checkpoint.pt')['step'] == result.step
    # the progress bar's total is the run's real length (each epoch's P x K plan has its own length)
    assert trainer.total_steps == result.step


class _Crash(Exception):
    pass


def _same_run(full_dir: Path, full, other_dir: Path, other) -> None:
    assert other.step == full.step
    a, b = full.model.state_dict(), other.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _log(full_dir, 'train') == _log(other_dir, 'train')  # every loss of every step


def test_kill_and_resume_matches_uninterrupted(synth_root, tmp_path, subprocess_env, capsys):
    """A run crashed between checkpoints, or SIGKILLed at any moment, and resumed ends with the weights and the
    per-step losses of an uninterrupted run."""
    ov = _overrides(synth_root, **{'schedule.epochs': 2, 'schedule.milestones': '[1]', 'train.checkpoint_every': 3,
                                   'train.log_every': 1, 'eval.at_end': False,
                                   'data.augment': '{erase_prob: 0.5}'})  # augmentation randomness must resume too
    full = train('tp_synthvid', ov, output_dir=tmp_path / 'full')
    assert full.step >= 9

    def crash(trainer, record):
        if record['step'] == 7:  # after the step-6 checkpoint, mid-epoch: step 7 is redone after resuming
            raise _Crash()
    with pytest.raises(_Crash):
        train('tp_synthvid', ov, output_dir=tmp_path / 'crashed', callbacks=[crash])
    ckpt = load_checkpoint(tmp_path / 'crashed' / 'checkpoint.pt')
    assert ckpt['step'] == 6 and ckpt['step_in_epoch'] > 0  # the crash really fell inside an epoch
    capsys.readouterr()
    _same_run(tmp_path / 'full', full, tmp_path / 'crashed', train(None, output_dir=tmp_path / 'crashed', resume=True))
    assert f'resuming {tmp_path / "crashed"} from step 6 (epoch 0, batch 6 of ' in capsys.readouterr().err

    # a real SIGKILL of `python -m reidzoo.train`, possibly in the middle of writing a checkpoint (every step here)
    killed = tmp_path / 'killed'
    cmd = [sys.executable, '-m', 'reidzoo.train', '--recipe', 'tp_synthvid', '--output', str(killed),
           '--set', *ov, 'train.checkpoint_every=1']
    # the same intra-op thread count as this process: CPU kernels split reductions by thread, so float sums (and
    # with them bit-exact resumption) depend on it
    env = subprocess_env(OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            log = killed / 'log.jsonl'
            if log.exists() and '"step": 3,' in log.read_text():
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 2 <= load_checkpoint(killed / 'checkpoint.pt')['step'] < full.step
    _same_run(tmp_path / 'full', full, killed, train(None, output_dir=killed, resume=True))
    # a resumed run may not silently change what it computes (optim.lr may change: see the non-finite-loss test)
    with pytest.raises(Exception, match=r'data\.seq_len changed'):
        train(None, ['data.seq_len=2'], output_dir=killed, resume=True)


def test_workers_give_the_same_batches_and_bf16_autocast_runs(synth_root, tmp_path):
    """Clips depend on (seed, epoch, index) only: loader workers change nothing. bf16 autocast trains on a CPU."""
    ov = _overrides(synth_root, **{'train.max_steps': 3, 'train.log_every': 1, 'data.augment': '{erase_prob: 0.5}'})
    serial = train('tp_synthvid', ov, output_dir=tmp_path / 'serial')
    workers = train('tp_synthvid', ov + ['data.num_workers=2'], output_dir=tmp_path / 'workers')
    assert serial.step == workers.step == 3
    assert _log(tmp_path / 'serial', 'train') == _log(tmp_path / 'workers', 'train')
    assert train('tp_synthvid', ov + ['train.amp=bf16'], output_dir=tmp_path / 'bf16').step == 3
    rows = _log(tmp_path / 'bf16', 'train')
    assert len(rows) == 3 and all(abs(r['loss'] - s['loss']) < 0.5 for r, s in zip(rows, _log(tmp_path / 'serial',
                                                                                          'train')))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / 'checkpoint.pt'
    atomic_write(path, lambda f: f.write(b'good'))

    def torn(f):
        f.write(b'half')
        raise OSError('disk full')
    with pytest.raises(OSError):
        atomic_write(path, torn)
    assert path.read_bytes() == b'good' and [p.name for p in tmp_path.iterdir()] == ['checkpoint.pt']


def test_nan_loss_stops_with_message_and_intact_checkpoint(synth_root, tmp_path):
    calls = {'n': 0}

    def probe(embedding, targets):
        calls['n'] += 1
        return embedding.sum() * (float('nan') if calls['n'] == 5 else 0.0)
    register_loss('nan_probe', probe, 'embedding')
    snapshots = {}

    def snapshot(trainer, record):
        snapshots[record['step']] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    try:
        ov = _overrides(synth_root, **{'train.checkpoint_every': 2, 'loss.probe': '{type: nan_probe}'})
        with pytest.raises(NonFiniteLossError, match=r"step 5 .*'probe' = nan.*step 4\) is intact"):
            train('tp_synthvid', ov, output_dir=tmp_path / 'run', callbacks=[snapshot])
    finally:
        LOSS_TYPES.pop('nan_probe')
    ckpt = load_checkpoint(tmp_path / 'run' / 'checkpoint.pt')
    assert ckpt['step'] == 4 and max(snapshots) == 4
    for k, v in ckpt['model'].items():
        assert torch.equal(v, snapshots[4][k]), k
    assert all(torch.isfinite(v).all() for v in ckpt['model'].values() if v.is_floating_point())


def test_ddp_two_cpu_processes(synth_root, tmp_path, subprocess_env):
    """torchrun with 2 gloo processes: identities' batches are sharded, only rank 0 writes, replicas agree."""
    out = tmp_path / 'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nnodes', '1', '--nproc_per_node', '2',
           '-m', 'reidzoo.train', '--recipe', 'tp_synthvid', '--output', str(out),
           '--set', *_overrides(synth_root, **{'schedule.epochs': 2})]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r['world_size'] for r in _log(out, 'start')] == [2]  # one writer
    assert len(_log(out, 'eval')) == 1 and json.loads((out / 'metrics.json').read_text())['mAP'] > 0  # rank 0 only
    checks = _log(out, 'replicas')
    assert len(checks) == 2 and all(c['max_abs_diff'] == 0.0 and len(c['fingerprints']) == 2 for c in checks)
    assert checks[0]['fingerprints'][0] != checks[1]['fingerprints'][0]  # the weights did change between epochs
    ckpt = load_checkpoint(out / 'checkpoint.pt')
    assert ckpt['world_size'] == 2 and len(ckpt['rng']) == 2 and ckpt['epoch'] == 2
    assert not any(p.name.startswith('.') for p in out.iterdir())  # no temp files left


def test_export_hub_mirror_create_model(trained, tmp_path, hub_mirror, hub_env, manifest_env):
    """reidzoo export -> loopback Hub (olah) -> manifest entry -> create_model(pretrained=True): same weights."""
    from reidzoo.cli import main as reidzoo_main
    from reidzoo.hub_mirror import publish_folder_to_mirror
    result, _, run_dir, _ = trained
    out = tmp_path / 'export'
    assert reidzoo_main(['export', str(run_dir), '--out', str(out)]) == 0
    assert {'model.safetensors', 'config.json', 'README.md', 'recipe.yaml'} <= {p.name for p in out.iterdir()}
    config = json.loads((out / 'config.json').read_text())
    assert config['protocol'] == 'synthvid_standard' and config['dataset'] == 'synthvid'
    assert config['metrics']['mAP'] == pytest.approx(result.metrics['mAP'])
    assert 'synthvid_standard' in (out / 'README.md').read_text()
    entry = publish_folder_to_mirror(out, hub_mirror, 'reidzoo-test/tp-synthvid')
    manifest_env({'tp_resnet50.synthvid_test': entry})
    model = reidzoo.create_model('tp_resnet50.synthvid_test', pretrained=True).eval()
    want = result.model.state_dict()
    # the training checkpoint itself loads with weights_only=True through checkpoint_path=
    direct = reidzoo.create_model('tp_resnet50', backbone='test_resnet', img_size=(32, 16), num_classes=24,
                                  checkpoint_path=str(run_dir / 'checkpoint.pt')).state_dict()
    assert all(torch.equal(direct[k], want[k]) for k in want)
    got = model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    x = torch.randn(2, 4, 3, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model.eval()(x), rtol=0, atol=0)


def _timm_repo(folder: Path) -> dict[str, torch.Tensor]:
    """A timm-format Hub repo for test_resnet (model.safetensors + config.json) with recognisable weights."""
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(123)
    model = timm.create_model('test_resnet', pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True)
    save_file(state, str(folder / 'model.safetensors'))
    cfg = {'architecture': 'test_resnet', 'num_classes': 1000, 'num_features': model.num_features,
           'pretrained_cfg': {'tag': 'r160_in1k', 'input_size': [3, 160, 160], 'mean': [0.5] * 3, 'std': [0.5] * 3}}
    (folder / 'config.json').write_text(json.dumps(cfg))
    return state


def test_imagenet_init_through_timm_hub_path(synth_root, tmp_path, hub_mirror, subprocess_env):
    """pretrained_backbone=True fetches timm's weights through timm's own Hub code, so HF_ENDPOINT redirects it."""
    state = _timm_repo(tmp_path / 'timm-repo')
    hub_mirror.publish(tmp_path / 'timm-repo', 'timm/test_resnet.r160_in1k')
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'reidzoo.train', '--recipe', 'tp_synthvid', '--output', str(out), '--set',
           *_overrides(synth_root, **{'model_kwargs.backbone': 'test_resnet.r160_in1k', 'pretrained_backbone': True,
                                      'optim.lr': 0.0, 'train.max_steps': 1})]
    env = subprocess_env(HF_ENDPOINT=hub_mirror.endpoint, HF_HOME=str(tmp_path / 'hf-home'), HF_HUB_OFFLINE='0')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained_state = load_checkpoint(out / 'checkpoint.pt')['model']
    # lr 0: one step leaves the parameters at their initial (downloaded) values
    conv_keys = [k for k in state if k.endswith('.weight') and state[k].dim() == 4]
    assert conv_keys
    for k in conv_keys:
        assert torch.equal(trained_state['backbone.' + k], state[k]), k
    assert any((tmp_path / 'hf-home').rglob('model.safetensors'))  # it went through the Hub cache


def test_trained_model_beats_the_colour_histogram_matcher(trained, synth_root):
    """SynthVID is learnable but not trivial: appearance statistics alone (a per-frame colour histogram) score well
    below a small model trained for ~20 s on the same query/gallery."""
    from reidzoo.data import build_dataset
    from reidzoo.cli.synth import colour_histogram_baseline
    result, _, _, _ = trained
    histogram = colour_histogram_baseline(build_dataset('synthvid', synth_root, layout='mars', num_ids=SYNTH_IDS,
                                                        seed=0, frame_size=(64, 32))).as_dict()
    assert result.metrics['mAP'] >= histogram['mAP'] + 0.1, (histogram, result.metrics)
    assert result.metrics['rank1'] > histogram['rank1']


def test_non_finite_loss_advice_works_end_to_end(synth_root, tmp_path, capsys):
    """A learning rate that blows the weights up stops the run; following the printed advice, command after command
    (resume with a lower optim.lr while that can help, a new run once the checkpoint itself gives the non-finite
    loss), ends in a finished run, and every resume records the changed rate."""
    from reidzoo.cli import main as reidzoo_main
    run_dir = tmp_path / 'run'
    cmd = ['train', '--recipe', 'tp_synthvid', '--output', str(run_dir), '--set',
           *_overrides(synth_root, **{'optim.name': 'sgd', 'optim.lr': 1000.0, 'train.max_steps': 12,
                                      'train.checkpoint_every': 2, 'eval.at_end': False})]
    advice = []
    for _ in range(6):
        capsys.readouterr()
        if reidzoo_main(cmd) == 0:
            break
        err = capsys.readouterr().err
        error = [line for line in err.splitlines() if line.startswith('reidzoo train: error:')]
        assert len(error) == 1 and 'Non-finite loss' in error[0], err[-2000:]
        advice.append(error[0])
        cmd = shlex.split(re.search(r'(?<=: )reidzoo (train --\S+ .*?) \(add', error[0]).group(1))
    else:
        pytest.fail(f'the advice did not lead to a finished run: {advice}')
    # measured: NaN at step 6 -> resume at 100 -> NaN at step 8 -> resume at 10 -> NaN at step 9, the first step on
    # the step-8 checkpoint -> a new run at lr 1 finishes
    assert advice and '--resume' in advice[0] and 'optim.lr=100' in advice[0]
    resumes = _log(run_dir, 'resume')
    assert resumes and resumes[0]['changed'] == {'optim.lr': [1000.0, 100]}
    if len(advice) > 1:
        assert load_recipe(run_dir / 'recipe.yaml').optim.lr == resumes[-1]['changed']['optim.lr'][1]


def test_resume_with_lower_lr_applies_it_from_the_checkpoint(synth_root, tmp_path):
    """optim.lr changed on --resume: the steps after the checkpoint run at the new (scheduled) rate, the change is
    logged and kept in recipe.yaml, and a second resume without --set keeps it."""
    ov = _overrides(synth_root, **{'train.max_steps': 2, 'train.log_every': 1, 'eval.at_end': False})
    train('tp_synthvid', ov, output_dir=tmp_path / 'run')
    result = train(None, ['train.max_steps=3', 'optim.lr=1e-4'], output_dir=tmp_path / 'run', resume=True)
    assert result.step == 3
    assert [r['lr'] for r in _log(tmp_path / 'run', 'train')] == pytest.approx([3e-3, 3e-3, 1e-4])
    assert _log(tmp_path / 'run', 'resume')[0]['changed'] == {'optim.lr': [3e-3, 1e-4]}
    assert load_recipe(tmp_path / 'run' / 'recipe.yaml').optim.lr == 1e-4
    train(None, ['train.max_steps=4'], output_dir=tmp_path / 'run', resume=True)
    assert _log(tmp_path / 'run', 'train')[-1]['lr'] == pytest.approx(1e-4)


def test_format1_checkpoint_needs_trust_pickle(synth_root, tmp_path):
    """A checkpoint of the old format (pickled NumPy RNG state) is refused by default, naming the opt-in; with
    trust_pickle=True the run resumes to the same weights as an uninterrupted one."""
    import random
    import numpy as np
    ov = _overrides(synth_root, **{'train.max_steps': 4, 'train.log_every': 1, 'eval.at_end': False})
    full = train('tp_synthvid', ov, output_dir=tmp_path / 'full')
    train('tp_synthvid', ov + ['train.max_steps=2'], output_dir=tmp_path / 'old')
    path = tmp_path / 'old' / 'checkpoint.pt'
    state = load_checkpoint(path)
    rng = state['rng'][0]
    # what reidzoo wrote before: the tuples of random.getstate() / np.random.get_state()
    rng['python'] = (rng['python']['version'], tuple(rng['python']['internal'].tolist()), rng['python']['gauss'])
    n = rng['numpy']
    rng['numpy'] = ('MT19937', n['key'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['gauss'])
    state['format_version'] = 1
    torch.save(state, path)
    with pytest.raises(pickle.UnpicklingError, match=r'numpy.*--trust-pickle'):
        train(None, ['train.max_steps=4'], output_dir=tmp_path / 'old', resume=True)
    with pytest.warns(UserWarning, match='unrestricted unpickler'):
        resumed = train(None, ['train.max_steps=4'], output_dir=tmp_path / 'old', resume=True, trust_pickle=True)
    _same_run(tmp_path / 'full', full, tmp_path / 'old', resumed)
    assert random.getstate()  # (the global generators were restored from the old tuples without error)
