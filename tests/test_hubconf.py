"""hubconf.py through torch.hub (source='local'): every entrypoint, help texts, pretrained loading, errors."""
from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest
import torch

import reidzoo
from reidzoo.hub import save_pretrained
from reidzoo.hub_mirror import publish_folder_to_mirror

REPO_ROOT = Path(__file__).resolve().parent.parent
# the small configuration of each family (contracts.md: every family takes backbone=<timm name>, and img_size where
# the architecture depends on it); a family not listed here is built with backbone='test_resnet'
TINY = {
    'tp': dict(backbone='test_resnet'),
    'rnn': dict(backbone='test_resnet'),
    'ta': dict(backbone='test_resnet', img_size=(64, 32)),
    'cosam': dict(backbone='resnet18', img_size=(64, 32)),
    'sinet': dict(backbone='resnet34', img_size=(128, 64)),  # IDM/SBM go after blocks 1, 3, 5 of layer2/3
    'sbnet': dict(backbone='resnet34', img_size=(128, 64)),
    'idnet': dict(backbone='resnet34', img_size=(128, 64)),
    'sta': dict(backbone='resnet18'),
    'cstnet': dict(backbone='test_resnet', img_size=(128, 64)),
    'stmp': dict(img_size=(139, 139), aux_logits=False),  # Inception-v3 trunk; 139x139 is its smallest input
}


def _tiny_kwargs(name: str) -> dict:
    return dict(TINY.get(name.split('_')[0], dict(backbone='test_resnet')))


def _import_hubconf(name: str = '_reidzoo_hubconf_under_test'):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / 'hubconf.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_exposes_exactly_the_registry(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError('hubconf.py opened a network connection at import')
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    hubconf = _import_hubconf()
    assert hubconf.dependencies == ['torch', 'torchvision', 'timm', 'huggingface_hub', 'safetensors']
    # what torch.hub.list shows: public callables
    public = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith('_')}
    assert public == set(reidzoo.list_models()) | {'create_model'}
    for name in reidzoo.list_models():
        doc = getattr(hubconf, name).__doc__  # what torch.hub.help returns
        assert doc.startswith(f'{name}: ') and 'Input (B, T, 3, H, W)' in doc and 'pretrained:' in doc, name
        assert getattr(hubconf, name).__name__ == name
    assert 'hf-hub:' in hubconf.create_model.__doc__ and 'torch.hub.load' in hubconf.__doc__


@pytest.mark.parametrize('name', reidzoo.list_models())
def test_torch_hub_load_every_entrypoint(name):
    kwargs = _tiny_kwargs(name)
    torch.manual_seed(0)
    model = torch.hub.load(str(REPO_ROOT), name, source='local', **kwargs).eval()
    torch.manual_seed(0)
    direct = reidzoo.create_model(name, **kwargs).eval()
    assert type(model) is type(direct) and model.pretrained_cfg['architecture'] == name
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in direct.state_dict().items()}
    h, w = kwargs.get('img_size', (64, 32))
    t = model.supported_num_frames[0] if model.supported_num_frames else 4
    with torch.no_grad():
        emb = model(torch.randn(1, t, 3, h, w))
    assert emb.shape == (1, model.num_features)


def test_torch_hub_generic_entrypoint_and_kwargs():
    model = torch.hub.load(str(REPO_ROOT), 'create_model', 'rnn_resnet50', source='local', backbone='test_resnet',
                           num_classes=3, rnn_hidden_size=32)
    assert model.num_features == 32 and model.classifier.weight.shape == (3, 32)


def test_torch_hub_missing_entrypoint():
    with pytest.raises(RuntimeError, match='Cannot find callable sinet_resnet18 in hubconf'):
        torch.hub.load(str(REPO_ROOT), 'sinet_resnet18', source='local')


def test_torch_hub_pretrained_from_the_mirror(hub_mirror, hub_env, manifest_env, tmp_path):
    torch.manual_seed(3)
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet', num_classes=4)
    save_dir = save_pretrained(model, tmp_path / 'export', dataset='synthvid', protocol='synthvid_standard',
                               metrics={'mAP': 0.1}, recipe='tp_synthvid')
    entry = publish_folder_to_mirror(save_dir, hub_mirror, 'reidzoo-test/hubconf-tiny')
    manifest_env({'tp_resnet50.hubtest': entry})
    loaded = torch.hub.load(str(REPO_ROOT), 'tp_resnet50', source='local', pretrained=True)
    want = model.state_dict()
    assert set(loaded.state_dict()) == set(want)
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
    assert 'tp_resnet50.hubtest: synthvid, synthvid_standard: mAP 0.100' in _import_hubconf('_hc2').tp_resnet50.__doc__
    pinned = torch.hub.load(str(REPO_ROOT), 'create_model', f'hf-hub:reidzoo-test/hubconf-tiny@{entry["revision"]}',
                            source='local', pretrained=True)
    assert all(torch.equal(v, want[k]) for k, v in pinned.state_dict().items())
    assert str(REPO_ROOT) not in sys.path[:1]  # torch.hub removed the repo dir again
