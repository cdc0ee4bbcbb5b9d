"""No silently wrong number: non-finite embeddings stop extraction, paper numbers appear only beside the paper's own
setting, the one evaluate() pipeline agrees with the metrics, and clear errors for ordinary mistakes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import reidzoo
from reidzoo.data import build_dataset
from reidzoo.eval import compute_distance, evaluate_rank
from reidzoo.eval.extract import extract_features, list_frames
from reidzoo.eval.leaderboard import run_leaderboard
from reidzoo.eval.papers import load_paper_results, model_facts, paper_for
from reidzoo.eval.pipeline import evaluate, evaluate_features
from reidzoo.eval.protocols import build_eval_sets

DS_KWARGS = dict(layout='mars', num_ids=6, seed=21, frame_size=(32, 16), lengths=(3, 6, 4))


@pytest.fixture(scope='module')
def synth_root(make_synthvid):
    return make_synthvid('trust', **DS_KWARGS)


@pytest.fixture(scope='module')
def synth(synth_root):
    return build_dataset('synthvid', synth_root)


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    return reidzoo.create_model('tp_resnet50', backbone='test_resnet').eval()


# --- non-finite embeddings ------------------------------------------------------------------------------------------
def test_float16_model_overflow_is_caught_naming_tracklets_model_and_dtype(synth, tiny_model):
    model = tiny_model.half()
    model.register_forward_hook(lambda m, i, out: out * 1e6)  # float16 overflows to inf, as SINet/STMP do on CPU
    with pytest.raises(FloatingPointError) as err:
        extract_features(model, synth.query[:2], progress=False, batch_size=4)
    msg = str(err.value)
    assert 'tp_resnet50' in msg and 'torch.float16' in msg and 'bfloat16' in msg and 'float32' in msg
    assert str(Path(synth.query[0].frames[0]).parent) in msg


def test_nan_embeddings_of_negatives_do_not_inflate_map(synth):
    # NaN negatives used to sort last, lifting every positive above them (mAP 0.52 -> 0.73 in the issue)
    sets = build_eval_sets(synth, 'synthvid_standard')
    torch.manual_seed(0)
    feats = torch.randn(len(sets.unique_tracklets), 8)
    assert 0 <= evaluate_features(feats, synth).mAP <= 1
    first_pid = synth.query[0].pid
    gallery_only = set(sets.gallery_index.tolist()) - set(sets.query_index.tolist())
    negatives = [i for i in gallery_only if sets.unique_tracklets[i].pid != first_pid]
    feats[negatives] = float('nan')
    with pytest.raises(ValueError, match='non-finite'):
        evaluate_features(feats, synth)


def test_model_without_parameters_goes_through_extraction(synth, tiny_model):
    class Wrapped:  # what an ONNX Runtime wrapper looks like to extract_features: a callable with a cfg
        pretrained_cfg = tiny_model.pretrained_cfg
        dtype = torch.float32
        device = 'cpu'

        def __call__(self, clips):
            with torch.no_grad():
                return tiny_model(clips).numpy()

    ours = extract_features(Wrapped(), synth.query[:3], progress=False)
    torch.testing.assert_close(ours, extract_features(tiny_model, synth.query[:3], progress=False))


# --- one pipeline ---------------------------------------------------------------------------------------------------
def test_evaluate_equals_extract_distance_rank(synth, tiny_model):
    sets = build_eval_sets(synth, 'synthvid_standard')
    feats = extract_features(tiny_model, sets.unique_tracklets, progress=False)
    qf, gf = feats[torch.as_tensor(sets.query_index)], feats[torch.as_tensor(sets.gallery_index)]
    dist = compute_distance(qf, gf, tiny_model.pretrained_cfg['distance'])
    ref = evaluate_rank(dist, sets.q_pids, sets.g_pids, sets.q_camids, sets.g_camids, max_rank=50)
    result = evaluate(tiny_model, synth, progress=False)
    assert result.protocol == 'synthvid_standard' and result.num_gallery == len(sets.gallery_index)
    np.testing.assert_allclose(result.cmc, ref.cmc)
    assert result.mAP == pytest.approx(ref.mAP) and result.as_dict()['rank5'] == pytest.approx(ref.cmc[4])


def test_evaluate_features_takes_an_embedding_function(synth):
    def mean_colour(tracklets):  # a hand-made "model", like the colour-histogram baseline
        from reidzoo.data.io import load_frame
        return np.stack([np.asarray(load_frame(t.frames[0]), np.float64).mean((0, 1)) for t in tracklets])

    by_fn = evaluate_features(mean_colour, synth, distance='euclidean')
    sets = build_eval_sets(synth, 'synthvid_standard')
    by_array = evaluate_features(mean_colour(sets.unique_tracklets), synth, distance='euclidean')
    assert by_fn.as_dict() == by_array.as_dict()


# --- paper numbers --------------------------------------------------------------------------------------------------
def test_paper_number_only_beside_the_papers_setting():
    papers = load_paper_results()
    row = next(p for p in papers if p['model'] == 'tp_resnet50' and p['dataset'] == 'mars' and not p['rerank'])
    model = reidzoo.create_model('tp_resnet50')
    proto = row['protocol']
    assert paper_for(model_facts(model, weights_loaded=False), 'mars', proto, False, papers) == ({}, '')  # random
    model.pretrained_cfg['dataset'] = 'mars'  # weights trained on MARS, the paper's config: the number shows
    assert paper_for(model_facts(model), 'mars', proto, False, papers)[0] == row['metrics']
    assert paper_for(model_facts(model), 'mars', 'mars_official' if proto != 'mars_official' else 'mars_torchreid',
                     False, papers) == ({}, '')  # another protocol
    model.pretrained_cfg['dataset'] = 'synthvid'  # SynthVID weights run on MARS-layout data
    assert paper_for(model_facts(model), 'mars', proto, False, papers) == ({}, '')
    small = reidzoo.create_model('tp_resnet50', backbone='resnet18')
    small.pretrained_cfg['dataset'] = 'mars'
    assert paper_for(model_facts(small), 'mars', proto, False, papers) == ({}, '')  # not the paper's trunk
    frames = reidzoo.create_model('tp_resnet50', img_size=(128, 64))
    frames.pretrained_cfg['dataset'] = 'mars'
    assert paper_for(model_facts(frames), 'mars', proto, False, papers) == ({}, '')  # not the paper's input size


def test_leaderboard_shows_no_paper_number_for_a_random_small_model(synth_root, tmp_path):
    rows = run_leaderboard(['tp_resnet50'], [('synthvid', synth_root, {})], output_dir=tmp_path / 'o',
                           progress=False, plots=False, model_kwargs=dict(backbone='resnet18', img_size=(64, 32)),
                           protocols=['synthvid_standard'])
    assert rows[0].paper == {} and '| – | – |' in (tmp_path / 'o' / 'leaderboard.md').read_text()
    assert not list((tmp_path / 'o').glob('*.png'))  # plots=False writes no picture


# --- clear errors -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('value', ['0', '-3'])
def test_benchmark_batch_size_must_be_positive(value, capsys):
    from reidzoo.cli import main
    with pytest.raises(SystemExit):
        main(['benchmark', '--models', 'tp_resnet50', '--dataset', 'synthvid', '--batch-size', value])
    assert f'--batch-size: must be a positive integer, got {int(value)}' in capsys.readouterr().err
    with pytest.raises(ValueError, match='batch_size must be a positive'):
        extract_features(reidzoo.create_model('tp_resnet50', backbone='test_resnet'), [], batch_size=int(value))


def test_extract_refuses_a_file_and_a_folder_mixing_tracklets(tmp_path):
    from PIL import Image
    frame = tmp_path / 'one.jpg'
    Image.new('RGB', (16, 32)).save(frame)
    with pytest.raises(NotADirectoryError, match='is a file'):
        list_frames(frame)
    mars_identity = tmp_path / 'bbox_test' / '0001'  # MARS keeps every tracklet of an identity in one folder
    mars_identity.mkdir(parents=True)
    for name in ('0001C1T0001F001.jpg', '0001C1T0001F002.jpg', '0001C2T0002F001.jpg'):
        Image.new('RGB', (16, 32)).save(mars_identity / name)
    with pytest.raises(ValueError, match='mixes frames of 2 tracklets'):
        list_frames(mars_identity)
    with pytest.raises(ValueError, match='sub-folders'):
        list_frames(tmp_path / 'bbox_test')
    single = tmp_path / 'single'
    single.mkdir()
    for name in ('0001C1T0001F001.jpg', '0001C1T0001F002.jpg'):
        Image.new('RGB', (16, 32)).save(single / name)
    assert len(list_frames(single)) == 2


def test_benchmark_reads_a_synthvid_folder_without_its_generation_arguments(synth_root, tmp_path, capsys):
    from reidzoo.cli import main
    assert main(['benchmark', '--models', 'tp_resnet50', '--model-kwargs', json.dumps({'backbone': 'test_resnet'}),
                 '--dataset', 'synthvid', '--root', synth_root, '--output', str(tmp_path / 'o'), '--workers', '0',
                 '--no-plots']) == 0
    out = capsys.readouterr().out
    assert 'synthvid_standard' in out and 'png' not in out
    assert not list((tmp_path / 'o').glob('*.png'))
