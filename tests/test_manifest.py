"""weights_manifest.json: the schema, the repo's own file, readable errors, and REIDZOO_MANIFESTS."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import reidzoo
from reidzoo.manifest import MANIFEST_SCHEMA_PATH, ManifestError, load_manifest, manifest_paths, validate_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY = {
    'hf_hub_id': 'my-org/tp-tiny-synthvid',
    'revision': '0123456789abcdef0123456789abcdef01234567',
    'filename': 'model.safetensors',
    'sha256': 'ab' * 32,
    'num_bytes': 1234,
    'dataset': 'synthvid',
    'protocol': 'synthvid_standard',
    'metrics': {'mAP': 0.5, 'rank1': 0.75},
    'license': 'apache-2.0',
    'source': {'type': 'reidzoo-train', 'recipe': 'tp_synthvid'},
    'num_classes': 7,
    'pretrained_cfg': {'input_size': [3, 128, 64], 'num_frames': 8, 'model_args': {'backbone': 'test_resnet'}},
}


def test_schema_is_valid_and_repo_manifest_follows_it():
    schema = json.loads(MANIFEST_SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads((REPO_ROOT / 'weights_manifest.json').read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    validate_manifest(data, 'weights_manifest.json')
    assert manifest_paths()[0] == REPO_ROOT / 'weights_manifest.json'
    for name, entry in data['weights'].items():  # only weights of architectures that exist
        arch = name.split('.', 1)[0]
        assert reidzoo.is_model(arch), name
        assert name in reidzoo.list_pretrained()


@pytest.mark.parametrize('change, where', [
    ({'revision': 'main'}, 'revision'),  # a branch is not a pin
    ({'sha256': 'xyz'}, 'sha256'),
    ({'filename': 'pytorch_model.bin'}, 'filename'),  # pickles are not accepted
    ({'metrics': {'mAP': 85.3}}, 'metrics/mAP'),  # fractions, not percent
    ({'source': {'type': 'converted'}}, 'source'),
    ({'colour': 'blue'}, "'colour' was unexpected"),
])
def test_bad_entry_names_file_and_entry(manifest_env, change, where):
    path = manifest_env({'tp_resnet50.bad': dict(ENTRY, **change)})
    with pytest.raises(ManifestError) as info:
        load_manifest(strict=True)
    msg = str(info.value)
    assert str(path) in msg and 'weights/tp_resnet50.bad' in msg and where in msg, msg
    # the tag the file would serve fails with the same message (the warning was given once, by load_manifest)
    with pytest.raises(ManifestError, match=where) as info:
        reidzoo.create_model('tp_resnet50.bad', pretrained=True)
    assert str(path) in str(info.value)


def test_missing_field_and_broken_files_are_reported(manifest_env, tmp_path, monkeypatch):
    entry = {k: v for k, v in ENTRY.items() if k != 'sha256'}
    path = manifest_env({'tp_resnet50.nosha': entry})
    with pytest.raises(ManifestError, match=rf"(?s){path}.*weights/tp_resnet50.nosha: 'sha256' is a required"):
        load_manifest(strict=True)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"schema_version": 1, "weights": {')
    monkeypatch.setenv('REIDZOO_MANIFESTS', str(broken))
    with pytest.raises(ManifestError, match=rf'{broken} is not valid JSON'):
        load_manifest(strict=True)
    monkeypatch.setenv('REIDZOO_MANIFESTS', str(tmp_path / 'absent.json'))
    with pytest.raises(ManifestError, match='absent.json .*does not exist'):
        load_manifest(strict=True)


BROKEN_FILES = {
    'bad JSON': lambda d: (d / 'm.json').write_text('{"schema_version": 1, "weights": {') and d / 'm.json',
    'schema error': lambda d: (d / 'm.json').write_text(json.dumps(
        {'schema_version': 1, 'weights': {'tp_resnet50.tiny': dict(ENTRY, revision='main')}})) and d / 'm.json',
    'missing path': lambda d: d / 'absent.json',
    'a directory': lambda d: d,
}


@pytest.mark.parametrize('kind', sorted(BROKEN_FILES))
def test_broken_manifest_warns_and_fails_only_for_the_tags_it_would_serve(kind, manifest_env, tmp_path, monkeypatch):
    """A broken file in REIDZOO_MANIFESTS does not break random-init or unrelated models (it used to raise from
    every create_model call); asking for a tag it would serve raises its error, naming the file."""
    good = manifest_env({'ta_resnet50.other': ENTRY})
    folder = tmp_path / 'broken'
    folder.mkdir()
    broken = BROKEN_FILES[kind](folder)
    monkeypatch.setenv('REIDZOO_MANIFESTS', f'{good}:{broken}')
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet')  # random init reads no manifest
    assert model.pretrained_cfg['input_size'] == (3, 256, 128)
    with pytest.warns(UserWarning, match=f'Skipping weights manifest {broken}'):
        assert 'ta_resnet50.other' in reidzoo.list_pretrained()  # the usable file still serves its tags
    assert reidzoo.get_pretrained_cfg('ta_resnet50.other')['revision'] == ENTRY['revision']
    with pytest.raises(ManifestError, match=rf'(?s)tp_resnet50\.tiny may be listed by a manifest.*{broken}'):
        reidzoo.create_model('tp_resnet50.tiny', pretrained=True)
    if kind == 'schema error':  # its names are known: another unpublished tag is just not published
        with pytest.raises(RuntimeError, match=r'Invalid pretrained tag \(nothere\)'):
            reidzoo.get_pretrained_cfg('tp_resnet50.nothere')


def test_manifest_entry_never_changes_random_init_defaults(manifest_env):
    """A tp_resnet50.synthvid entry (tiny trunk, 32x16 frames, 7 classes) used to turn plain
    create_model('tp_resnet50') into that model."""
    manifest_env({'tp_resnet50.synthvid': dict(ENTRY, pretrained_cfg={
        'input_size': [3, 32, 16], 'num_frames': 8, 'model_args': {'backbone': 'test_resnet'}})})
    plain = reidzoo.create_model('tp_resnet50')
    assert plain.pretrained_cfg['input_size'] == (3, 256, 128) and plain.pretrained_cfg['num_frames'] == 4
    assert plain.pretrained_cfg['model_args']['backbone'] == 'resnet50' and plain.num_classes == 0
    assert 'hf_hub_id' not in plain.pretrained_cfg and 'tag' not in plain.pretrained_cfg
    # naming the tag builds what the weights record (timm semantics), without loading them
    tagged = reidzoo.create_model('tp_resnet50.synthvid')
    assert tagged.pretrained_cfg['input_size'] == (3, 32, 16) and tagged.img_size == (32, 16)
    assert tagged.num_frames == 8 and tagged.num_classes == 7 and tagged.num_features == 96


def test_extra_manifests_add_tags_that_become_the_pretrained_cfg(manifest_env):
    assert 'tp_resnet50.tiny' not in reidzoo.list_pretrained()
    manifest_env({'tp_resnet50.tiny': ENTRY, 'rnn_resnet50.tiny': ENTRY})
    assert {'tp_resnet50.tiny', 'rnn_resnet50.tiny'} <= set(reidzoo.list_pretrained())
    assert reidzoo.list_pretrained('tp_*') == [n for n in reidzoo.list_pretrained() if n.startswith('tp_')]
    assert 'tp_resnet50.tiny' in reidzoo.list_models(pretrained=True)  # timm: pretrained=True lists tags
    assert 'tp_resnet50' in reidzoo.list_models(pretrained=True, include_tags=False)
    assert 'ta_resnet50' not in reidzoo.list_models(pretrained=True, include_tags=False)
    assert 'tp_resnet50.tiny' in reidzoo.list_models('tp_*', include_tags=True)
    cfg = reidzoo.get_pretrained_cfg('tp_resnet50.tiny')
    for key in ('hf_hub_id', 'revision', 'filename', 'sha256', 'num_bytes', 'dataset', 'protocol', 'metrics'):
        assert cfg[key] == ENTRY[key], key
    assert cfg['input_size'] == (3, 128, 64) and cfg['num_frames'] == 8 and cfg['tag'] == 'tiny'
    assert cfg['distance'] == 'sqeuclidean'  # not overridden: the architecture's default
    assert reidzoo.get_pretrained_cfg('tp_resnet50')['tag'] == 'tiny'  # the first published tag is the default
    # the tag's cfg and recorded architecture arguments reach the model (no weights are loaded here)
    model = reidzoo.create_model('tp_resnet50.tiny')
    assert model.pretrained_cfg['hf_hub_id'] == ENTRY['hf_hub_id'] and model.pretrained_cfg['num_frames'] == 8
    assert model.pretrained_cfg['model_args']['backbone'] == 'test_resnet' and model.num_features == 96
    with pytest.raises(RuntimeError, match=r'Invalid pretrained tag \(other\).*tp_resnet50\.tiny'):
        reidzoo.get_pretrained_cfg('tp_resnet50.other')


def test_later_manifests_override_earlier_entries(manifest_env):
    manifest_env({'tp_resnet50.tiny': ENTRY})
    manifest_env({'tp_resnet50.tiny': dict(ENTRY, revision='f' * 40)})
    assert reidzoo.get_pretrained_cfg('tp_resnet50.tiny')['revision'] == 'f' * 40
