"""The registry and factory: names, wildcards, error messages, checkpoints and input checks (timm semantics)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import reidzoo
from reidzoo.models import ModelOutput, get_arch_default_cfg
from reidzoo.models._builder import StateDictMismatchError

# the temporal pooling baselines of contracts.md, with a small backbone of the same block family
BASELINES = {
    'tp_resnet50': 'resnet18', 'ta_resnet50': 'resnet18', 'rnn_resnet50': 'resnet18',
    'tp_seresnet50': 'legacy_seresnet18', 'ta_seresnet50': 'legacy_seresnet18', 'rnn_seresnet50': 'legacy_seresnet18',
}
# every architecture contracts.md promises
CONTRACT_NAMES = sorted(set(BASELINES) | {
    'cosam_resnet50_tp', 'cosam_resnet50_ta', 'cosam_resnet50_rnn', 'cosam_seresnet50_tp', 'cosam_seresnet50_ta',
    'cosam_seresnet50_rnn', 'sinet_resnet50', 'sbnet_resnet50', 'idnet_resnet50', 'stmp_inception_v3',
    'sta_resnet50', 'cstnet_resnet50',
})
SAMPLING = {'random', 'restricted', 'consecutive', 'restricted_begin', 'evenly', 'dense', 'interleaved', 'all'}
DISTANCES = {'cosine', 'euclidean', 'sqeuclidean'}
H, W = 64, 32


def _tiny(name: str, **kwargs) -> torch.nn.Module:
    if name.startswith('ta_'):
        kwargs.setdefault('img_size', (H, W))
    return reidzoo.create_model(name, backbone=kwargs.pop('backbone', 'test_resnet'), **kwargs)


@pytest.mark.parametrize('name', sorted(BASELINES))
def test_baseline_builds_and_follows_the_forward_contract(name):
    torch.manual_seed(0)
    model = reidzoo.create_model(name, backbone=BASELINES[name], num_classes=5,
                                 **({'img_size': (H, W)} if name.startswith('ta_') else {}))
    x = torch.randn(2, 4, 3, H, W)
    out = model.train()(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 5) and out.embedding.shape == (2, model.num_features)
    with torch.no_grad():
        emb = model.eval()(x)
    assert emb.shape == (2, model.num_features) and torch.isfinite(emb).all()
    cfg = model.pretrained_cfg
    assert cfg['architecture'] == name and cfg['model_args']['backbone'] == BASELINES[name]
    assert len(cfg['input_size']) == 3 and cfg['num_frames'] >= 1


def test_every_contract_name_is_registered_with_a_complete_cfg():
    registered = set(reidzoo.list_models())
    assert set(CONTRACT_NAMES) <= registered, sorted(set(CONTRACT_NAMES) - registered)
    for name in registered:
        cfg = get_arch_default_cfg(name)
        assert cfg['architecture'] == name
        assert len(cfg['input_size']) == 3 and cfg['input_size'][0] == 3, name
        assert isinstance(cfg['num_frames'], int) and cfg['num_frames'] >= 1, name
        assert len(cfg['mean']) == 3 and len(cfg['std']) == 3, name
        assert cfg['test_sampling'] in SAMPLING, (name, cfg['test_sampling'])
        assert cfg['distance'] in DISTANCES, (name, cfg['distance'])


def test_wildcard_filters():
    assert reidzoo.list_models('tp_*') == ['tp_resnet50', 'tp_seresnet50']
    assert reidzoo.list_models(['tp_*', 'rnn_*']) == ['rnn_resnet50', 'rnn_seresnet50', 'tp_resnet50', 'tp_seresnet50']
    se = reidzoo.list_models('*_seresnet50')
    assert {'tp_seresnet50', 'ta_seresnet50', 'rnn_seresnet50'} <= set(se) and 'tp_resnet50' not in se
    assert reidzoo.list_models('t?_resnet50') == ['ta_resnet50', 'tp_resnet50']
    assert reidzoo.list_models('*_resnet50', exclude_filters=['s*', 'c*', 'i*']) == [
        'rnn_resnet50', 'ta_resnet50', 'tp_resnet50']
    assert reidzoo.list_models(module='temporal') == sorted(BASELINES)
    assert reidzoo.list_models('no_such_*') == []
    assert all(reidzoo.is_model(n) for n in CONTRACT_NAMES) and not reidzoo.is_model('tp_resnet5')


def test_unknown_name_lists_close_names():
    with pytest.raises(RuntimeError, match=r'Unknown model .*tp_resnet5.*Did you mean: .*tp_resnet50'):
        reidzoo.create_model('tp_resnet5')
    with pytest.raises(RuntimeError, match=r'Did you mean: .*cosam_resnet50_tp'):
        reidzoo.create_model('cosam_resnet50_pt')
    with pytest.raises(ValueError, match='hf-hub:org/repo'):
        reidzoo.create_model('org/repo')
    with pytest.raises(RuntimeError, match=r'Invalid pretrained tag \(nope\) for tp_resnet50'):
        reidzoo.create_model('tp_resnet50.nope')


def test_pretrained_without_published_weights_says_what_to_do(manifest_env):
    manifest_env({})  # no extra weights
    with pytest.raises(RuntimeError, match='No pretrained weights are published for rnn_resnet50.*pretrained=False'):
        _tiny('rnn_resnet50', pretrained=True)


@pytest.fixture
def checkpoint(tmp_path):
    """A 10-class tiny TP model and its weights as safetensors and as a reidzoo .pt training checkpoint."""
    torch.manual_seed(1)
    model = _tiny('tp_resnet50', num_classes=10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    st_path = tmp_path / 'tp.safetensors'
    save_file(state, str(st_path))
    pt_path = tmp_path / 'tp.pt'
    torch.save({'epoch': 3, 'state_dict': {'module.' + k: v for k, v in state.items()}}, pt_path)
    return state, st_path, pt_path


def _assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor], with_classifier: bool) -> None:
    got = model.state_dict()
    for k, v in state.items():
        if k.startswith('classifier.'):
            continue
        assert torch.equal(got[k], v), k
    if with_classifier:
        assert torch.equal(got['classifier.weight'], state['classifier.weight'])


def test_checkpoint_path_loads_safetensors_and_training_checkpoints(checkpoint):
    state, st_path, pt_path = checkpoint
    for path in (st_path, pt_path):
        model = _tiny('tp_resnet50', num_classes=10, checkpoint_path=path)
        _assert_loaded(model, state, with_classifier=True)


def test_num_classes_adaptation(checkpoint):
    state, st_path, _ = checkpoint
    # a different class count: the classifier is re-initialised at the new size, everything else loads strictly
    model = _tiny('tp_resnet50', num_classes=3, checkpoint_path=st_path)
    assert model.classifier.weight.shape == (3, model.num_features)
    _assert_loaded(model, state, with_classifier=False)
    # num_classes=0: embedding only
    model = _tiny('tp_resnet50', num_classes=0, checkpoint_path=st_path)
    assert model.num_classes == 0 and not any(k.startswith('classifier.') for k in model.state_dict())
    _assert_loaded(model, state, with_classifier=False)
    # the same through the pretrained path (a local file overlay): the weights' own size by default
    overlay = dict(file=str(st_path), num_classes=10)
    model = _tiny('tp_resnet50', pretrained=True, pretrained_cfg_overlay=overlay)
    assert model.num_classes == 10
    _assert_loaded(model, state, with_classifier=True)
    model = _tiny('tp_resnet50', pretrained=True, pretrained_cfg_overlay=overlay, num_classes=4)
    assert model.classifier.weight.shape == (4, model.num_features)
    _assert_loaded(model, state, with_classifier=False)


def test_checkpoint_of_another_architecture_is_reported(checkpoint):
    _, st_path, _ = checkpoint
    with pytest.raises(StateDictMismatchError, match=r'(?s)shape mismatch.*checkpoint .* vs model'):
        reidzoo.create_model('tp_resnet50', backbone='resnet18', num_classes=10, checkpoint_path=st_path)


@pytest.mark.parametrize('shape, expected', [
    ((4, 3, H, W), r'\(B, T, 3, H, W\), got shape \(4, 3, 64, 32\)'),
    ((2, 4, 1, H, W), r'3 channels .*\(B, T, 3, H, W\), got shape \(2, 4, 1, 64, 32\)'),
])
def test_bad_input_shapes_name_both_shapes(shape, expected):
    model = _tiny('tp_resnet50').eval()
    with pytest.raises(ValueError, match=expected):
        model(torch.randn(shape))


def test_fixed_size_architecture_rejects_other_sizes():
    model = _tiny('ta_resnet50').eval()
    with pytest.raises(ValueError, match=r'expected \(B, T, 3, 64, 32\), got \(1, 4, 3, 128, 64\)'):
        model(torch.randn(1, 4, 3, 128, 64))
    assert model(torch.randn(1, 4, 3, H, W)).shape == (1, model.num_features)
