"""Recipes: every shipped file loads and names real things; overrides and bases behave (reidzoo.train.recipes)."""
import pytest
import timm
import torch

import reidzoo
from reidzoo.train.losses import LOSS_TYPES, ReIDLoss
from reidzoo.train.recipes import RecipeError, list_recipes, load_recipe
from reidzoo.train.trainer import build_optimizer, lr_factor

PAPER_RECIPES = [n for n in list_recipes() if not n.endswith('_synthvid')]
SYNTHVID_RECIPES = [n for n in list_recipes() if n.endswith('_synthvid')]


def test_every_family_has_recipes():
    families = {'sinet', 'sbnet', 'idnet', 'cosam', 'tp', 'sta', 'cstnet', 'stmp'}
    assert families <= {n.split('_')[0] for n in PAPER_RECIPES}
    assert {'tp', 'cosam', 'sta', 'sinet', 'cstnet'} <= {n.split('_')[0] for n in SYNTHVID_RECIPES}


@pytest.mark.parametrize('name', list_recipes())
def test_shipped_recipe_is_valid(name):
    r = load_recipe(name)
    assert r.name == name and r.base is None
    assert reidzoo.is_model(r.model), r.model
    for term, spec in r.loss.items():
        assert spec.get('type', term) in LOSS_TYPES, (name, term)
    assert r.data.seq_len >= 1 and r.schedule.epochs >= 1
    backbone = r.model_kwargs.get('backbone')
    if r.pretrained_backbone:
        # the ImageNet start is a timm name with a pretrained tag, loaded through timm's own Hub path
        assert backbone in timm.list_pretrained(backbone), (name, backbone)
    if name in PAPER_RECIPES:
        assert r.pretrained_backbone and r.notes, name
        for milestone in r.schedule.milestones:
            assert milestone < r.schedule.epochs


def test_paper_values():
    sinet = load_recipe('sinet_resnet50_mars')
    assert sinet.loss['infonce'] == {'type': 'infonce', 'weight': 0.001, 'temperature': 0.07, 'clip_len': 4}
    assert '0.001' in sinet.notes and '0.01' in sinet.notes  # says which of code / paper it follows
    assert sinet.loss['triplet']['distance'] == 'cosine' and sinet.model_kwargs.backbone == 'resnet50.tv_in1k'
    assert (sinet.data.num_ids, sinet.data.num_instances, sinet.data.sampling) == (8, 4, 'restricted')
    stmp = load_recipe('stmp_inception_v3_mars')
    assert stmp.loss['part_triplet'] == {'type': 'triplet', 'input': 'aux.part_features', 'weight': 1.0,
                                         'margin': 0.4, 'distance': 'euclidean'}
    assert stmp.loss['aux_ce']['input'] == 'aux.aux_logits'
    assert stmp.optim.param_groups == [{'params': 'backbone.*', 'lr_scale': 0.1}]
    assert (stmp.optim.name, stmp.optim.lr, stmp.optim.nesterov) == ('sgd', 0.01, True)
    assert (stmp.data.seq_len, stmp.data.sampling, stmp.data.min_frames) == (8, 'consecutive', 8)
    cosam = load_recipe('cosam_seresnet50_tp_mars')
    assert cosam.loss['ce']['label_smoothing'] == 0.1 and cosam.model_kwargs.backbone == 'legacy_seresnet50.in1k'
    assert load_recipe('sta_resnet50_mars').loss['interframe']['type'] == 'sta_interframe'
    assert load_recipe('cstnet_resnet50_mars').data.augment['erase_prob'] == 0.3


def test_overrides_and_errors(tmp_path):
    r = load_recipe('tp_synthvid', ['optim.lr=1e-4', 'loss.triplet.margin=0.5', 'data.augment={erase_prob: 0.2}',
                                    'model_kwargs.rnn_hidden_size=8'])
    assert r.optim.lr == 1e-4 and r.loss['triplet']['margin'] == 0.5
    assert r.data.augment['erase_prob'] == 0.2 and r.data.augment['hflip_prob'] == 0.5  # dicts merge
    assert r.model_kwargs['rnn_hidden_size'] == 8  # free-form sections take any key
    with pytest.raises(RecipeError, match=r"optim\.lrr.*Did you mean optim\.lr"):
        load_recipe('tp_synthvid', ['optim.lrr=1'])
    with pytest.raises(RecipeError, match='must look like'):
        load_recipe('tp_synthvid', ['optim.lr'])
    with pytest.raises(RecipeError, match='sinet_resnet50_mars'):
        load_recipe('sinet_resnet50_marz')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('base: tp_synthvid\ndata: {sequence_length: 8}\n')
    with pytest.raises(RecipeError, match=r"bad\.yaml.*data\.sequence_length"):
        load_recipe(bad)
    loop = tmp_path / 'loop.yaml'
    loop.write_text('base: loop.yaml\n')
    with pytest.raises(RecipeError, match='cycle'):
        load_recipe(loop)


def test_base_chain_and_dump_roundtrip(tmp_path):
    child = tmp_path / 'child.yaml'
    child.write_text('base: cosam_resnet50_tp_mars\nschedule: {epochs: 10}\n')
    r = load_recipe(child)
    assert r.name == 'child' and r.model == 'cosam_resnet50_tp' and r.schedule.epochs == 10
    assert r.schedule.step_size == 200 and r.data.augment['translate_prob'] == 0.5  # inherited two levels down
    stored = tmp_path / 'stored.yaml'
    stored.write_text(r.dump())
    assert load_recipe(stored).to_dict() == r.to_dict()


def test_schedule_factors():
    sched = load_recipe('sinet_resnet50_mars').schedule
    assert [lr_factor(e, sched) for e in (0, 39.9, 40, 80, 120, 159)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.001, 0.001])
    warm = dict(sched, warmup_epochs=2, warmup_factor=0.1)
    assert lr_factor(0, warm) == pytest.approx(0.1) and lr_factor(1, warm) == pytest.approx(0.55)
    assert lr_factor(500, load_recipe('stmp_inception_v3_mars').schedule) == 1.0  # the code never decays
    assert lr_factor(399, load_recipe('cosam_seresnet50_tp_mars').schedule) == pytest.approx(0.1)


def test_param_group_learning_rates():
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet', num_classes=3)
    optim = dict(load_recipe('stmp_inception_v3_mars').optim)
    opt = build_optimizer(model, optim)
    lrs = {id(p): g['lr'] for g in opt.param_groups for p in g['params']}
    for name, p in model.named_parameters():
        assert lrs[id(p)] == pytest.approx(0.001 if name.startswith('backbone.') else 0.01), name
    with pytest.raises(RecipeError, match='matches no parameter'):
        build_optimizer(model, dict(optim, param_groups=[{'params': 'fuse_net.*', 'lr_scale': 2}]))


@pytest.mark.parametrize('name', [n for n in SYNTHVID_RECIPES if n != 'sinet_synthvid'])
def test_synthvid_recipe_model_and_losses_run(name):
    """The tiny recipes build their model, and one training forward feeds every loss term."""
    r = load_recipe(name)
    model = reidzoo.create_model(r.model, num_classes=6, **r.model_kwargs)
    h, w = r.data.input_size
    torch.manual_seed(0)
    out = model(torch.randn(4, r.data.seq_len, 3, h, w))
    terms = ReIDLoss(r.loss)(out, torch.tensor([0, 0, 1, 1]))
    assert set(terms) == set(r.loss) and all(torch.isfinite(v) for v in terms.values())
