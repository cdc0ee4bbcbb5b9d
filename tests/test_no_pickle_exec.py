"""No load path runs code hidden in a file: every way reidzoo reads a file a user may have been sent (authors'
checkpoints for `convert`, training checkpoints for `export` and `train --resume`, `create_model(checkpoint_path=)`,
a `local-dir:` weights folder, the feature cache) is fed a pickle whose unpickling would create a marker file, and
the marker must never appear. Each payload is first shown to be live: an unrestricted unpickle does create it."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from reidzoo.cli import main as reidzoo_main


class _Payload:
    """Unpickling this calls ``open(marker, 'w')``: a stand-in for ``os.system`` that needs no shell."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def _write_payload(path: Path, marker: Path, fmt: str) -> Path:
    """A crafted checkpoint: a torch.save zip archive or a bare pickle, shaped like what the loader expects."""
    obj = {'format_version': 2, 'step': 1, 'state_dict': {'x': torch.zeros(1)}, 'model': _Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == 'zip':
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.fixture(params=['zip', 'pickle'])
def payload(request, tmp_path):
    """(payload file, marker path); the payload is verified to create the marker when unpickled without limits."""
    marker = tmp_path / 'PWNED'
    probe = _write_payload(tmp_path / 'probe' / f'probe.{request.param}', marker, request.param)
    if request.param == 'zip':
        torch.load(probe, weights_only=False)
    else:
        pickle.loads(probe.read_bytes())
    assert marker.exists(), 'the payload must be live, or this test proves nothing'
    marker.unlink()
    return _write_payload(tmp_path / 'evil' / 'checkpoint.pt', marker, request.param), marker


def _refused(marker: Path, argv: list[str], capsys) -> str:
    """Run the CLI; it must fail with one error line and leave no marker. Returns the error line."""
    capsys.readouterr()
    assert reidzoo_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists(), f'{argv}: the file ran code'
    assert len(err) == 1 and 'error' in err[0], err
    return err[0]


def test_convert_refuses_the_payload(payload, tmp_path, capsys):
    path, marker = payload
    line = _refused(marker, ['convert', '--from', 'sinet-official', str(path), str(tmp_path / 'out')], capsys)
    assert 'was not loaded' in line and '--trust-pickle' in line


def test_export_refuses_the_payload(payload, tmp_path, capsys):
    from reidzoo.train import load_recipe
    path, marker = payload
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'recipe.yaml').write_text(load_recipe('tp_synthvid').dump())
    line = _refused(marker, ['export', str(run_dir), '--out', str(tmp_path / 'out'), '--checkpoint', str(path)],
                    capsys)
    assert 'was not loaded' in line and '--trust-pickle' in line
    # the run directory's own checkpoint.pt, the default
    (run_dir / 'checkpoint.pt').write_bytes(path.read_bytes())
    _refused(marker, ['export', str(run_dir), '--out', str(tmp_path / 'out')], capsys)


def test_resume_refuses_the_payload(payload, tmp_path, capsys):
    from reidzoo.data.synthvid import build_synthvid
    from reidzoo.train import load_recipe
    path, marker = payload
    root = tmp_path / 'synth'
    build_synthvid(root, layout='mars', num_ids=8, seed=0, frame_size=(32, 16))
    recipe = load_recipe('tp_synthvid', [f'data.root={root}', 'data.dataset_kwargs.num_ids=8',
                                         'data.dataset_kwargs.frame_size=[32, 16]', 'data.num_ids=2',
                                         'data.num_instances=2', 'train.progress=false', 'data.num_workers=0'])
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'recipe.yaml').write_text(recipe.dump())
    (run_dir / 'checkpoint.pt').write_bytes(path.read_bytes())
    line = _refused(marker, ['train', '--resume', '--output', str(run_dir)], capsys)
    assert 'was not loaded' in line and '--trust-pickle' in line


def test_create_model_checkpoint_path_refuses_the_payload(payload):
    import reidzoo
    path, marker = payload
    with pytest.raises(Exception):
        reidzoo.create_model('tp_resnet50', backbone='test_resnet', checkpoint_path=str(path))
    assert not marker.exists()


def test_local_dir_weights_refuse_the_payload(payload, tmp_path):
    """A weights folder whose model.safetensors is really a pickle (config.json names it)."""
    import reidzoo
    from reidzoo.hub import save_pretrained
    path, marker = payload
    folder = tmp_path / 'repo'
    save_pretrained(reidzoo.create_model('tp_resnet50', backbone='test_resnet'), folder)
    (folder / 'model.safetensors').write_bytes(path.read_bytes())
    config = json.loads((folder / 'config.json').read_text())
    # also as if the file's record matched, so only the format check stands between the file and the unpickler
    config.pop('sha256', None), config.pop('num_bytes', None)
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(Exception):
        reidzoo.create_model(f'local-dir:{folder}', pretrained=True)
    assert not marker.exists()


def test_feature_cache_refuses_the_payload(payload, tmp_path):
    """Every file of a populated feature cache replaced by the payload: the next evaluation must not unpickle it
    (it may discard and rebuild the cache, or stop with an error)."""
    import reidzoo
    from reidzoo.data import build_dataset
    from reidzoo.data.synthvid import build_synthvid
    from reidzoo.eval import evaluate
    path, marker = payload
    root = tmp_path / 'synth'
    build_synthvid(root, layout='mars', num_ids=8, seed=0, frame_size=(32, 16))
    dataset = build_dataset('synthvid', str(root), layout='mars', num_ids=8, seed=0, frame_size=(32, 16))
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet', img_size=(32, 16)).eval()
    cache = tmp_path / 'cache'
    first = evaluate(model, dataset, cache=cache, batch_size=16).as_dict()
    files = [p for p in cache.rglob('*') if p.is_file() and not p.name.endswith('.lock')]
    assert files
    for f in files:
        f.write_bytes(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            again = evaluate(model, dataset, cache=cache, batch_size=16).as_dict()
        except Exception:  # noqa: BLE001 - refusing is as good as rebuilding here; running code is not
            again = None
    assert not marker.exists()
    if again is not None:
        assert again['mAP'] == first['mAP']
