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
    h, w = r.model_kwargs['img_size']  # the one statement of the frame size
    torch.manual_seed(0)
    out = model(torch.randn(4, r.data.seq_len, 3, h, w))
    terms = ReIDLoss(r.loss)(out, torch.tensor([0, 0, 1, 1]))
    assert set(terms) == set(r.loss) and all(torch.isfinite(v) for v in terms.values())


def test_frame_size_is_stated_once():
    """Every shipped recipe states its frame size once, as model_kwargs.img_size (or the model's default); the old
    second statement, data.input_size, must agree with it where an older recipe still has it."""
    for name in list_recipes():
        r = load_recipe(name)
        assert r.data.input_size is None, name
        if name in SYNTHVID_RECIPES:
            assert len(r.model_kwargs['img_size']) == 2, name
    with pytest.raises(RecipeError, match=r'data\.input_size.*\[H, W\]'):
        load_recipe('tp_synthvid', ['data.input_size=[32]'])


@pytest.mark.parametrize('override, message', [
    ('optim.lr=abc', r"--set optim\.lr: recipe key 'optim\.lr' must be a number, got 'abc' \(a string\)"),
    ('schedule.epochs=true', r"'schedule\.epochs' must be an integer, got True \(a boolean\)"),
    ('train.progress=3', r"'train\.progress' must be true or false, got 3"),
    ('schedule.milestones=[a]', r"every item of recipe key 'schedule\.milestones' must be an integer, got 'a'"),
    ('optim.betas=[0.9, x]', r"every item of recipe key 'optim\.betas' must be a number"),
    ('data.root=7', r"'data\.root' must be a string, got 7"),
    ('data=3', r"recipe key 'data' must be a mapping"),
    ('data.num_ids=0', r'with --set data\.num_ids=0: data\.num_ids must be a positive integer, got 0'),
    ('data.num_instances=-2', r'data\.num_instances must be a positive integer, got -2'),
    ('eval.batch_size=0', r'eval\.batch_size must be a positive integer, got 0'),
    ('optim.lr=-1', r'optim\.lr must be a finite number >= 0, got -1'),
    ('optim.lr=.inf', r'optim\.lr must be a finite number >= 0, got inf'),
    ('train.max_steps=0', r'train\.max_steps must be a positive integer, got 0'),
])
def test_recipe_values_are_type_checked_naming_the_key(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe('tp_synthvid', [override])


def test_recipe_types_in_files_and_integral_floats(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('base: tp_synthvid\noptim: {lr: fast}\n')
    with pytest.raises(RecipeError, match=r"bad\.yaml: recipe key 'optim\.lr' must be a number, got 'fast'"):
        load_recipe(bad)
    r = load_recipe('tp_synthvid', ['train.checkpoint_every=1e3', 'optim.lr=1', 'train.grad_clip=5', 'eval.seq_len=4'])
    assert r.train.checkpoint_every == 1000 and isinstance(r.train.checkpoint_every, int)  # YAML reads 1e3 as 1000.0
    assert (r.optim.lr, r.train.grad_clip, r.eval.seq_len) == (1, 5, 4)
    assert load_recipe('tp_synthvid', ['train.amp=false', 'train.max_steps=null']).train.amp is False
