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
        load_manifest()
    msg = str(info.value)
    assert str(path) in msg and 'weights/tp_resnet50.bad' in msg and where in msg, msg


def test_missing_field_and_broken_files_are_reported(manifest_env, tmp_path, monkeypatch):
    entry = {k: v for k, v in ENTRY.items() if k != 'sha256'}
    path = manifest_env({'tp_resnet50.nosha': entry})
    with pytest.raises(ManifestError, match=rf"(?s){path}.*weights/tp_resnet50.nosha: 'sha256' is a required"):
        load_manifest()
    broken = tmp_path / 'broken.json'
    broken.write_text('{"schema_version": 1, "weights": {')
    monkeypatch.setenv('REIDZOO_MANIFESTS', str(broken))
    with pytest.raises(ManifestError, match=rf'{broken} is not valid JSON'):
        load_manifest()
    monkeypatch.setenv('REIDZOO_MANIFESTS', str(tmp_path / 'absent.json'))
    with pytest.raises(ManifestError, match='absent.json .*does not exist'):
        load_manifest()


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
    assert cfg['input_size'] == [3, 128, 64] and cfg['num_frames'] == 8 and cfg['tag'] == 'tiny'
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
