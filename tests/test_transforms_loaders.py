"""Clip transforms (one draw per clip), frame loading errors, and the train/test clip datasets."""
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD

from reidzoo.data.io import FrameLoadError, load_frame, load_frames
from reidzoo.data.transforms import build_clip_transform
from reidzoo.data.video_dataset import TrackletClipsDataset, VideoClipDataset, collate_tracklet_clips

CFG = {'input_size': (3, 32, 16), 'mean': IMAGENET_MEAN, 'std': IMAGENET_STD, 'interpolation': 'bilinear'}


def _textured_frame(seed=0, size=(40, 20)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _write_tracklet(folder, num_frames, size=(40, 20), fmt='jpg'):
    """Frames of solid colours: red channel 20 * k for frame k (so decoded clips reveal which frames they hold)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k in range(num_frames):
        path = os.path.join(folder, f'{k + 1:04d}.{fmt}')
        Image.fromarray(np.full((*size, 3), (20 * k, 100, 50), np.uint8)).save(path)
        paths.append(path)
    return tuple(paths)


def _red(clip):
    """Mean un-normalised red value of each frame of a (.., 3, H, W) tensor."""
    return (clip[..., 0, :, :] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).mean((-1, -2)) * 255


# --- transforms -------------------------------------------------------------------------------------------------------
def test_test_transform_shape_and_normalisation():
    t = build_clip_transform(CFG, train=False)
    frame = Image.fromarray(np.full((40, 20, 3), (255, 0, 128), np.uint8))
    out = t([frame, frame, frame])
    assert out.shape == (3, 3, 32, 16) and out.dtype == torch.float32
    expected = (torch.tensor([255., 0., 128.]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, :, 5, 5], expected.expand(3, 3), atol=1e-5, rtol=0)


@pytest.mark.parametrize('aug', [dict(hflip_prob=1.), dict(erase_prob=1.), dict(translate_prob=1.),
                                 dict(hflip_prob=0.5, erase_prob=0.5, translate_prob=0.5)])
def test_train_transform_same_draw_for_every_frame(aug):
    frame = _textured_frame()
    t = build_clip_transform(CFG, train=True, **aug)
    for seed in range(6):
        out = t([frame] * 5, generator=torch.Generator().manual_seed(seed))
        assert out.shape == (5, 3, 32, 16)
        for k in range(1, 5):  # identical input frames stay identical: flip, crop and erase are shared
            torch.testing.assert_close(out[k], out[0], rtol=0, atol=0)


def test_train_transform_parameters():
    frame = _textured_frame()
    plain = build_clip_transform(CFG, train=False)([frame])
    flipped = build_clip_transform(CFG, train=True, hflip_prob=1., erase_prob=0.)([frame])
    torch.testing.assert_close(flipped, plain.flip(-1))
    erased = build_clip_transform(CFG, train=True, hflip_prob=0., erase_prob=1., erase_value=(9., 8., 7.))(
        [frame, frame], generator=torch.Generator().manual_seed(0))
    box = (erased[0, 0] == 9.) & (erased[0, 1] == 8.) & (erased[0, 2] == 7.)
    assert 0.02 * 32 * 16 * 0.5 <= box.sum() <= 0.4 * 32 * 16 * 1.5  # one rectangle of 2..40% of the frame
    torch.testing.assert_close(erased[:, :, ~box], plain.expand(2, -1, -1, -1)[:, :, ~box])
    with pytest.raises(TypeError, match='Unknown augmentation'):
        build_clip_transform(CFG, train=True, hflip=0.5)
    with pytest.raises(ValueError, match='input_size'):
        build_clip_transform({'input_size': (32, 16)}, train=False)


def test_train_transform_deterministic_given_generator():
    frames = [_textured_frame(i) for i in range(3)]
    t = build_clip_transform(CFG, train=True, translate_prob=0.5)
    outs = [t(frames, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2, 3, 4, 5)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert any(not torch.equal(outs[0], o) for o in outs[2:])


def test_interpolation_from_cfg():
    frame = _textured_frame()
    bicubic = build_clip_transform({**CFG, 'interpolation': 'bicubic'}, train=False)([frame])
    bilinear = build_clip_transform(CFG, train=False)([frame])
    assert not torch.equal(bicubic, bilinear)


# --- frame loading errors ---------------------------------------------------------------------------------------------
def test_load_frame_errors_name_the_path(tmp_path):
    good = tmp_path / 'good.jpg'
    _textured_frame(size=(64, 32)).save(good, quality=95)
    img = load_frame(good)
    assert img.mode == 'RGB' and img.size == (32, 64)

    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FrameLoadError, match='truncated.jpg'):
        load_frame(truncated)
    # even when some other library switched Pillow's global flag on, a truncated frame must not load silently
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(FrameLoadError, match='truncated'):
            load_frame(truncated)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False

    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    with pytest.raises(FrameLoadError, match='empty.jpg is empty'):
        load_frame(empty)
    garbage = tmp_path / 'garbage.png'
    garbage.write_bytes(b'this is not an image' * 10)
    with pytest.raises(FrameLoadError, match='garbage.png is not a readable image'):
        load_frame(garbage)
    with pytest.raises(FrameLoadError, match='missing.jpg'):
        load_frame(tmp_path / 'missing.jpg')
    with pytest.raises(ValueError, match='empty list'):
        load_frames([])


def test_empty_tracklet_folder_errors(tmp_path):
    from reidzoo.data.dataset import list_frames
    empty = tmp_path / 'person_0007'
    empty.mkdir()
    with pytest.raises(Exception, match='person_0007'):
        list_frames(str(empty), ('.png',))
    ds = TrackletClipsDataset([((), 7, 1)], 'dense', 4, build_clip_transform(CFG, train=False))
    with pytest.raises(ValueError, match='pid 7, camid 1'):
        ds[0]


def test_dataset_reports_bad_frame(tmp_path):
    frames = _write_tracklet(str(tmp_path / 't'), 4)
    with open(frames[2], 'r+b') as f:
        f.truncate(60)
    ds = TrackletClipsDataset([(frames, 0, 0)], 'all', 4, build_clip_transform(CFG, train=False))
    with pytest.raises(FrameLoadError, match='0003.jpg'):
        ds[0]


# --- datasets ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def tracklets(tmp_path):
    return [(_write_tracklet(str(tmp_path / 'a'), 6), 3, 0), (_write_tracklet(str(tmp_path / 'b'), 2), 5, 1),
            (_write_tracklet(str(tmp_path / 'c'), 9), 3, 2)]


def test_video_clip_dataset_reproducible(tracklets):
    t = build_clip_transform(CFG, train=True, erase_prob=0.5, translate_prob=0.5)
    ds = VideoClipDataset(tracklets, seq_len=4, sampling='restricted', transform=t, seed=11)
    clip, pid, camid = ds[2]
    assert clip.shape == (4, 3, 32, 16) and (pid, camid) == (3, 2)
    again = VideoClipDataset(tracklets, seq_len=4, sampling='restricted', transform=t, seed=11)
    for i in range(3):  # the same (seed, epoch, index) gives the same clip, whatever was drawn before
        torch.testing.assert_close(again[2 - i][0], ds[2 - i][0], rtol=0, atol=0)
    epochs = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        epochs.append(ds.frame_indices(2).tolist())
    assert len({tuple(e) for e in epochs}) > 1
    # a repeat index (i + j * len, from the P x K sampler) is the same tracklet with its own random clip
    ds.set_epoch(0)
    assert ds[2 + 3][1:] == (3, 2)
    assert len({tuple(ds.frame_indices(2 + j * 3).tolist()) for j in range(6)}) > 1
    # the frames actually loaded are the sampled ones (frame k has red 20 * k)
    ds.set_epoch(3)
    plain = VideoClipDataset(tracklets, 4, 'restricted', build_clip_transform(CFG, train=False), seed=11)
    plain.set_epoch(3)
    np.testing.assert_allclose(_red(plain[2][0]).numpy(), 20 * plain.frame_indices(2), atol=2)


def test_tracklet_clips_dataset_and_collate(tracklets):
    ds = TrackletClipsDataset(tracklets, 'dense', 4, build_clip_transform(CFG, train=False))
    clips, index = ds[0]
    assert clips.shape == (2, 4, 3, 32, 16) and index == 0
    np.testing.assert_allclose(_red(clips).numpy(), 20 * np.array([[0, 1, 2, 3], [4, 5, 4, 5]]), atol=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=TrackletClipsDataset.collate)
    batch, owners = next(iter(loader))
    assert batch.shape == (2 + 1 + 3, 4, 3, 32, 16)
    assert owners.tolist() == [0, 0, 1, 2, 2, 2]
    # per-tracklet mean of clip features, as an extractor does it
    feats = batch.mean((1, 2, 3, 4))
    means = torch.zeros(3).index_add_(0, owners, feats) / torch.bincount(owners)
    torch.testing.assert_close(means[1], feats[2])

    all_frames = TrackletClipsDataset(tracklets, 'all', 4, build_clip_transform(CFG, train=False))
    assert all_frames[2][0].shape == (1, 9, 3, 32, 16)
    with pytest.raises(ValueError, match='batch_size=1'):
        collate_tracklet_clips([all_frames[0], all_frames[1]])
    with pytest.raises(ValueError, match='Unknown test sampling'):
        TrackletClipsDataset(tracklets, 'random', 4, None)
