"""reidzoo.hub against a real Hub mirror (olah on loopback): save -> publish -> load round trips, revision pinning,
integrity checks, Hub errors, and the offline cache (in a child process, since huggingface_hub reads HF_HUB_OFFLINE
at import)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

import reidzoo
from reidzoo.cli import main as cli_main
from reidzoo.hub import (
    HubEndpointError, WeightsIntegrityError, WeightsNotFoundError, download_weights, load_model_config,
    load_safetensors, push_to_hub, save_pretrained, sha256_file,
)
from reidzoo.hub_mirror import LocalHubMirror, publish_folder_to_mirror
from reidzoo.manifest import validate_manifest

ARCH = 'tp_resnet50'
TINY = dict(backbone='test_resnet')
REPO = 'reidzoo-test/tp-tiny'
CLIP = (2, 4, 3, 64, 32)


def _tiny_model(seed: int, num_classes: int = 7) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = reidzoo.create_model(ARCH, num_classes=num_classes, **TINY)
    with torch.no_grad():  # non-trivial BN statistics, so buffers are compared too
        for name, buf in model.named_buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    return model


def _assert_same_tensors(model_or_state, expected: dict[str, torch.Tensor], skip: str = '') -> None:
    state = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
    got = {k: v for k, v in state.items() if not (skip and k.startswith(skip))}
    want = {k: v for k, v in expected.items() if not (skip and k.startswith(skip))}
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


@pytest.fixture(scope='module')
def published(hub_mirror, tmp_path_factory):
    """Two tiny models saved and published as two commits of the same mirror repo (a, then b)."""
    root = tmp_path_factory.mktemp('published')
    out = {}
    for key, seed in (('a', 0), ('b', 1)):
        model = _tiny_model(seed)
        save_dir = save_pretrained(model, root / key, dataset='synthvid', protocol='synthvid_standard',
                                   metrics={'mAP': 0.25, 'rank1': 0.5}, recipe='tp_synthvid')
        out[key] = SimpleNamespace(dir=save_dir, state=copy_state(model),
                                   entry=publish_folder_to_mirror(save_dir, hub_mirror, REPO))
    return SimpleNamespace(**out)


def copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- save_pretrained ---------------------------------------------------------------------------------------------
def test_save_pretrained_writes_a_reidzoo_repo(published):
    from huggingface_hub import ModelCard
    save_dir = published.a.dir
    assert sorted(p.name for p in save_dir.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    with safe_open(str(save_dir / 'model.safetensors'), 'pt') as f:
        assert f.metadata()['format'] == 'pt' and f.metadata()['reidzoo.arch'] == ARCH
    _assert_same_tensors(load_safetensors(save_dir / 'model.safetensors'), published.a.state)
    config = json.loads((save_dir / 'config.json').read_text())
    assert config['architecture'] == ARCH and config['num_classes'] == 7 and config['num_features'] == 96
    assert config['model_args'] == {'backbone': 'test_resnet', 'aggregation': 'tp'}
    assert config['sha256'] == sha256_file(save_dir / 'model.safetensors')
    assert config['num_bytes'] == (save_dir / 'model.safetensors').stat().st_size
    pcfg = config['pretrained_cfg']
    assert pcfg['input_size'] == [3, 256, 128] and pcfg['test_sampling'] == 'dense'
    assert pcfg['distance'] == 'sqeuclidean'
    assert 'hf_hub_id' not in pcfg and 'model_args' not in pcfg
    card = ModelCard((save_dir / 'README.md').read_text())
    assert card.data.library_name == 'reidzoo' and card.data.datasets == ['synthvid']
    assert {(r.metric_type, r.metric_value, r.metric_config) for r in card.data.eval_results} == {
        ('mAP', 0.25, 'synthvid_standard'), ('rank1', 0.5, 'synthvid_standard')}
    assert not list(save_dir.glob('.*')), 'no temp files left behind'


def test_save_pretrained_rejects_percent_metrics(tmp_path):
    model = reidzoo.create_model(ARCH, **TINY)
    with pytest.raises(ValueError, match=r'mAP=85\.3 .*fraction'):
        save_pretrained(model, tmp_path, metrics={'mAP': 85.3})


def test_local_dir_round_trip(published):
    model = reidzoo.create_model(f'local-dir:{published.a.dir}', pretrained=True)
    _assert_same_tensors(model, published.a.state)
    assert model.num_classes == 7 and model.pretrained_cfg['file'] == str(published.a.dir / 'model.safetensors')
    assert model.pretrained_cfg['input_size'] == (3, 256, 128)


# --- hf-hub: names against the mirror ----------------------------------------------------------------------------
def test_hf_hub_round_trip_and_pinned_revisions(published, hub_env):
    entry_a, entry_b = published.a.entry, published.b.entry
    assert entry_a['revision'] != entry_b['revision']
    model_a = reidzoo.create_model(f'hf-hub:{REPO}@{entry_a["revision"]}', pretrained=True)
    _assert_same_tensors(model_a, published.a.state)  # the first commit keeps the first weights
    model_b = reidzoo.create_model(f'hf-hub:{REPO}@{entry_b["revision"]}', pretrained=True)
    _assert_same_tensors(model_b, published.b.state)
    latest = reidzoo.create_model(f'hf-hub:{REPO}', pretrained=True)  # main, resolved to its commit
    _assert_same_tensors(latest, published.b.state)
    assert latest.pretrained_cfg['revision'] == entry_b['revision']
    assert latest.pretrained_cfg['hf_hub_id'] == REPO and latest.pretrained_cfg['sha256'] == entry_b['sha256']
    x = torch.randn(CLIP)
    torch.testing.assert_close(model_b.eval()(x), latest.eval()(x), rtol=0, atol=0)
    # without pretrained the config still decides the architecture
    fresh = reidzoo.create_model(f'hf-hub:{REPO}@{entry_a["revision"]}')
    assert set(fresh.state_dict()) - {'classifier.weight', 'classifier.bias'} == set(model_a.state_dict()) - {
        'classifier.weight', 'classifier.bias'}


def test_load_model_config_resolves_branch_to_commit(published, hub_env):
    arch, model_args, cfg = load_model_config(REPO)
    assert arch == ARCH and model_args == {'backbone': 'test_resnet', 'aggregation': 'tp'}
    assert cfg['revision'] == published.b.entry['revision'] and cfg['filename'] == 'model.safetensors'
    assert cfg['num_bytes'] == published.b.entry['num_bytes'] and cfg['mean'] == (0.485, 0.456, 0.406)


def test_manifest_round_trip_through_mirror(published, hub_env, manifest_env, capsys):
    manifest_env({f'{ARCH}.tiny_a': published.a.entry, f'{ARCH}.tiny_b': published.b.entry})
    assert {f'{ARCH}.tiny_a', f'{ARCH}.tiny_b'} <= set(reidzoo.list_pretrained('tp_*'))
    model = reidzoo.create_model(f'{ARCH}.tiny_a', pretrained=True)
    _assert_same_tensors(model, published.a.state)
    assert model.pretrained_cfg['revision'] == published.a.entry['revision'] and model.num_classes == 7
    default = reidzoo.create_model(ARCH, pretrained=True)  # the first published tag
    _assert_same_tensors(default, published.a.state)
    # another class count: the classifier is re-initialised, everything else loads
    model3 = reidzoo.create_model(f'{ARCH}.tiny_b', pretrained=True, num_classes=3)
    assert model3.classifier.weight.shape == (3, 96)
    _assert_same_tensors(model3, published.b.state, skip='classifier.')
    assert cli_main(['download', f'{ARCH}.tiny_b']) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.is_file() and Path(hub_env['HF_HOME']) in path.parents
    assert sha256_file(path) == published.b.entry['sha256']


# --- integrity and errors ----------------------------------------------------------------------------------------
def test_sha256_mismatch_is_refused_before_loading(published, hub_env, manifest_env):
    bad = dict(published.a.entry, sha256='0' * 64)
    manifest_env({f'{ARCH}.bad': bad})
    with pytest.raises(WeightsIntegrityError) as info:
        reidzoo.create_model(f'{ARCH}.bad', pretrained=True)
    msg = str(info.value)
    for part in (REPO, bad['revision'], 'model.safetensors', '0' * 64, published.a.entry['sha256'], hub_env['HF_HOME'],
                 'weights_manifest.json', 'Delete the cached copy'):
        assert part in msg, part


def test_truncated_file_is_detected_and_the_advice_fixes_it(published, hub_env):
    entry = published.a.entry
    path = download_weights(entry)
    blob = path.resolve()
    with open(blob, 'r+b') as f:
        f.truncate(entry['num_bytes'] // 2)
    with pytest.raises(WeightsIntegrityError, match=rf'truncated .*{entry["num_bytes"] // 2} bytes, expected '
                                                     rf'{entry["num_bytes"]}') as info:
        download_weights(entry)
    assert str(blob) in str(info.value) and entry['revision'] in str(info.value)
    # without num_bytes the sha256 check catches it
    with pytest.raises(WeightsIntegrityError, match=f'sha256 mismatch: expected {entry["sha256"]}'):
        download_weights({k: v for k, v in entry.items() if k != 'num_bytes'})
    # the message says: delete the cached copy and load again
    path.unlink()
    blob.unlink()
    assert sha256_file(download_weights(entry)) == entry['sha256']


def test_missing_repo_file_and_revision_give_actionable_errors(published, hub_env):
    entry = published.a.entry
    with pytest.raises(WeightsNotFoundError) as info:
        download_weights(dict(entry, hf_hub_id='reidzoo-test/no-such-repo'))
    msg = str(info.value)
    assert 'reidzoo-test/no-such-repo' in msg and entry['revision'] in msg and 'HF_HUB_OFFLINE is not set' in msg
    assert hub_env['HF_ENDPOINT'] in msg
    # a file missing at a pinned commit: the mirror answers 404 EntryNotFound, like the Hub
    with pytest.raises(WeightsNotFoundError, match=r'no missing\.safetensors at that revision') as info:
        download_weights(dict(entry, filename='missing.safetensors'))
    assert REPO in str(info.value) and entry['revision'] in str(info.value)
    with pytest.raises(WeightsNotFoundError, match='no-such-branch'):
        reidzoo.create_model(f'hf-hub:{REPO}@no-such-branch', pretrained=True)


def test_offline_flag_set_after_import_is_honoured(published, hub_env, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(WeightsNotFoundError, match=r'HF_HUB_OFFLINE=1\): only the local cache was searched'):
        download_weights(published.b.entry)


def test_offline_cache_hit_and_miss_in_fresh_process(published, hub_env, manifest_env, subprocess_env, tmp_path):
    manifest = manifest_env({f'{ARCH}.tiny_a': published.a.entry, f'{ARCH}.tiny_b': published.b.entry})
    # fill the cache online: tiny_a through the manifest, commit a and main through hf-hub: names
    reidzoo.create_model(f'{ARCH}.tiny_a', pretrained=True)
    reidzoo.create_model(f'hf-hub:{REPO}@{published.a.entry["revision"]}', pretrained=True)
    reidzoo.create_model(f'hf-hub:{REPO}', pretrained=True)
    script = textwrap.dedent(f'''
        import json, sys, torch
        import huggingface_hub.constants as constants
        import reidzoo
        from reidzoo.hub import WeightsNotFoundError, load_safetensors

        def same(model, path):
            ref, got = load_safetensors(path), model.state_dict()
            return set(ref) == set(got) and all(torch.equal(got[k], ref[k]) for k in ref)

        out = {{'offline_constant': constants.HF_HUB_OFFLINE}}
        out['manifest_hit'] = same(reidzoo.create_model('{ARCH}.tiny_a', pretrained=True), sys.argv[1])
        out['pinned_hit'] = same(reidzoo.create_model('hf-hub:{REPO}@{published.a.entry["revision"]}',
                                                      pretrained=True), sys.argv[1])
        out['branch_hit'] = same(reidzoo.create_model('hf-hub:{REPO}', pretrained=True), sys.argv[2])
        try:
            reidzoo.create_model('hf-hub:{REPO}@{'f' * 40}', pretrained=True)
        except WeightsNotFoundError as e:
            out['miss'] = str(e)
        print(json.dumps(out))
    ''')
    env = subprocess_env(HF_HUB_OFFLINE='1', HF_HOME=hub_env['HF_HOME'], REIDZOO_MANIFESTS=str(manifest),
                         HF_ENDPOINT='http://127.0.0.1:9')  # a closed port: nothing may be fetched
    proc = subprocess.run([sys.executable, '-c', script, str(published.a.dir / 'model.safetensors'),
                           str(published.b.dir / 'model.safetensors')],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['offline_constant'] is True
    assert out['manifest_hit'] and out['pinned_hit'] and out['branch_hit']
    assert REPO in out['miss'] and 'f' * 40 in out['miss'] and 'HF_HUB_OFFLINE=1' in out['miss']
    assert hub_env['HF_HOME'] in out['miss']


def test_non_safetensors_files_are_refused(tmp_path):
    path = tmp_path / 'weights.safetensors'
    torch.save({'w': torch.zeros(2)}, path)  # a zip/pickle under a safetensors name
    with pytest.raises(ValueError, match='not a safetensors file'):
        load_safetensors(path)


# --- push ----------------------------------------------------------------------------------------------------------
def test_push_to_read_only_mirror_fails_clearly(published, hub_mirror, capsys):
    assert cli_main(['push', str(published.a.dir), '--repo-id', 'reidzoo-test/push',
                     '--endpoint', hub_mirror.endpoint]) == 1
    err = capsys.readouterr().err
    assert re.search(r'(?s)^reidzoo push: error: Upload of .* to reidzoo-test/push .*HTTP 405.*accepts uploads', err)
    assert 'Traceback' not in err
    with pytest.raises(RuntimeError, match='HTTP 405'):  # --debug re-raises, for the traceback
        cli_main(['push', str(published.a.dir), '--repo-id', 'reidzoo-test/push', '--endpoint', hub_mirror.endpoint,
                  '--debug'])


def test_push_to_hub_returns_an_entry_pinned_to_the_upload(published, monkeypatch, capsys):
    """The Hub's upload API is replaced by a recorder (olah cannot take uploads); checks what reidzoo sends and
    that the printed entry is pinned to the returned commit and validates against the manifest schema."""
    from huggingface_hub import HfApi
    calls = []
    commit = 'ab' * 20
    monkeypatch.setattr(HfApi, 'create_repo', lambda self, repo_id, **kw: calls.append(('create', repo_id, kw)))
    monkeypatch.setattr(HfApi, 'create_branch', lambda self, repo_id, **kw: calls.append(('branch', repo_id, kw)))
    monkeypatch.setattr(HfApi, 'upload_folder',
                        lambda self, **kw: calls.append(('upload', self.endpoint, kw)) or SimpleNamespace(oid=commit))
    assert cli_main(['push', str(published.a.dir), '--repo-id', 'org/tiny', '--tag', 'tiny',
                             '--endpoint', 'http://127.0.0.1:9']) == 0
    printed = json.loads(capsys.readouterr().out)
    entry = printed[f'{ARCH}.tiny']
    assert entry['revision'] == commit and entry['hf_hub_id'] == 'org/tiny'
    assert entry['sha256'] == published.a.entry['sha256'] and entry['num_bytes'] == published.a.entry['num_bytes']
    validate_manifest({'schema_version': 1, 'weights': printed})
    assert calls[0] == ('create', 'org/tiny', {'private': False, 'exist_ok': True, 'repo_type': 'model'})
    assert calls[1][1] == 'http://127.0.0.1:9' and calls[1][2]['folder_path'] == str(published.a.dir)
    assert calls[1][2]['revision'] == 'main' and calls[1][2]['commit_message'].startswith(f'Upload {ARCH}')
    # another branch is created before the upload
    calls.clear()
    entry = push_to_hub(published.b.dir, 'org/tiny', revision='dev', endpoint='http://127.0.0.1:9', private=True)
    assert [c[0] for c in calls] == ['create', 'branch', 'upload'] and calls[0][2]['private'] is True
    assert calls[1][2] == {'branch': 'dev', 'exist_ok': True} and calls[2][2]['revision'] == 'dev'
    assert entry['revision'] == commit and entry['sha256'] == published.b.entry['sha256']


# --- the mirror itself ---------------------------------------------------------------------------------------------
def test_mirror_is_stopped_when_the_body_raises(tmp_path):
    mirror = LocalHubMirror(tmp_path / 'hub')
    with pytest.raises(RuntimeError, match='not running'):
        mirror.endpoint
    with pytest.raises(ZeroDivisionError):
        with mirror:
            proc = mirror._proc
            assert proc.poll() is None and mirror.endpoint.startswith('http://127.0.0.1:')
            1 / 0
    assert proc.poll() is not None


# --- clear errors (issue 10 item 11) ---------------------------------------------------------------------------------
def test_endpoint_without_scheme_is_named(published, hub_env, monkeypatch):
    """An HF_ENDPOINT without http(s):// failed with httpx's bare UnsupportedProtocol."""
    bare = hub_env['HF_ENDPOINT'].removeprefix('http://')
    monkeypatch.setenv('HF_ENDPOINT', bare)
    with pytest.raises(HubEndpointError, match=rf"HF_ENDPOINT='{re.escape(bare)}' is not an http\(s\) URL.*"
                                               rf"HF_ENDPOINT=https://huggingface.co"):
        reidzoo.create_model(f'hf-hub:{REPO}', pretrained=True)
    with pytest.raises(HubEndpointError, match=r"endpoint='ftp://x' is not an http\(s\) URL"):
        download_weights(published.a.entry, endpoint='ftp://x')


def test_missing_branch_names_the_branches_that_exist(published, hub_env):
    with pytest.raises(WeightsNotFoundError, match=r"revision 'no-such-branch' is not a branch or tag of "
                                                   rf"{REPO} \(branches and tags: main \(") as info:
        reidzoo.create_model(f'hf-hub:{REPO}@no-such-branch', pretrained=True)
    assert published.b.entry['revision'][:12] in str(info.value)


@pytest.mark.slow  # huggingface_hub retries the mirror's HTTP 500 answers with back-off (~25 s)
def test_missing_commit_is_named_instead_of_a_connection_error(published, hub_env):
    """olah resets the connection (then answers 500) for a commit it does not have: the message said
    'ReadError: connection reset' / 'could not reach the endpoint'."""
    missing = 'e' * 40
    with pytest.raises(WeightsNotFoundError, match=rf"revision '{missing}' is not a commit of {REPO}"):
        reidzoo.create_model(f'hf-hub:{REPO}@{missing}', pretrained=True)
    # an older commit that is not a branch head still loads
    _assert_same_tensors(reidzoo.create_model(f'hf-hub:{REPO}@{published.a.entry["revision"]}', pretrained=True),
                         published.a.state)


def test_push_to_unreachable_endpoint_is_one_line(published, capsys):
    assert cli_main(['push', str(published.a.dir), '--repo-id', 'org/x', '--endpoint', 'http://127.0.0.1:9']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err
    assert re.match(r'reidzoo push: error: Upload of .* to org/x \(branch main\) failed: the endpoint '
                    r'http://127.0.0.1:9 cannot be reached \(ConnectError', err), err


# --- the README route: convert -> push -> manifest entry (issue 10 item 9) ------------------------------------------
def test_convert_push_gives_an_entry_that_validates(tmp_path, monkeypatch, capsys, manifest_env):
    """`reidzoo convert` records source.sha256, which the schema refused; a converted folder records no protocol or
    metrics, which `reidzoo push --protocol --metrics` fills in (measured with `reidzoo benchmark`)."""
    import numpy as np
    from huggingface_hub import HfApi
    from test_convert import official_state_dict
    src, out = tmp_path / 'idnet_mars.pth.tar', tmp_path / 'idnet'
    torch.save({'state_dict': official_state_dict('idnet', num_classes=5), 'rank1': np.float64(0.9)}, src)
    assert cli_main(['convert', '--from', 'sinet-official', str(src), str(out), '--dataset', 'mars']) == 0
    capsys.readouterr()
    commit = 'cd' * 20
    monkeypatch.setattr(HfApi, 'create_repo', lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, 'upload_folder', lambda self, **kw: SimpleNamespace(oid=commit))
    # without the evaluation: the entry is printed with a warning naming exactly what is missing
    assert cli_main(['push', str(out), '--repo-id', 'org/idnet']) == 0
    printed, err = capsys.readouterr()
    assert 'not complete yet' in err and "'protocol' is a required" in err and "'metrics' is a required" in err
    assert 'source' not in err.split('not complete yet')[1], err  # source.sha256 is accepted now
    assert cli_main(['push', str(out), '--repo-id', 'org/idnet', '--protocol', 'mars_query_in_gallery',
                     '--metrics', '{"mAP": 0.81, "rank1": 0.9}']) == 0
    printed, err = capsys.readouterr()
    assert err == ''
    weights = json.loads(printed)
    entry = weights['idnet_resnet50.mars']
    assert entry['source']['type'] == 'converted' and len(entry['source']['sha256']) == 64
    assert entry['revision'] == commit and entry['num_classes'] == 5 and entry['metrics']['mAP'] == 0.81
    validate_manifest({'schema_version': 1, 'weights': weights})
    # ... and the entry is loadable as a manifest tag (its cfg and architecture arguments reach the model)
    manifest_env(weights)
    model = reidzoo.create_model('idnet_resnet50.mars')
    assert model.num_classes == 5 and model.pretrained_cfg['sha256'] == entry['sha256']
    assert model.pretrained_cfg['source']['sha256'] == entry['source']['sha256']
    with pytest.raises(ValueError, match='--metrics .* is not JSON'):
        cli_main(['push', str(out), '--repo-id', 'org/idnet', '--metrics', 'mAP=0.8', '--debug'])


def test_mirror_command_publishes_serves_and_stops_on_sigterm(published, tmp_path, subprocess_env):
    """`reidzoo mirror` (the command line of reidzoo.hub_mirror, which defines no argparse itself)."""
    import signal
    from huggingface_hub import hf_hub_download
    proc = subprocess.Popen([sys.executable, '-m', 'reidzoo', 'mirror', str(tmp_path / 'root'),
                             '--publish', str(published.a.dir), 'org/served'],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        entry = json.loads(proc.stdout.readline())['org/served']
        endpoint = proc.stdout.readline().strip().removeprefix('HF_ENDPOINT=')
        assert entry['sha256'] == published.a.entry['sha256'] and endpoint.startswith('http://127.0.0.1:')
        path = hf_hub_download('org/served', 'model.safetensors', revision=entry['revision'], endpoint=endpoint,
                               cache_dir=tmp_path / 'cache')
        assert sha256_file(path) == entry['sha256']
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
