"""reidzoo match: MOT I/O, streaming crops, filters, association, scoring, report, and every bad input of issue 12."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('av')
pytest.importorskip('trackeval')

from reidzoo.cli import main as cli_main  # noqa: E402
from reidzoo.data.synthvid_video import generate_video, load_video_meta  # noqa: E402
from reidzoo.match import (  # noqa: E402
    FramesPastEndError, MatchWarning, TrackletFilter, TracksFormatError, VideoDecodeError, associate,
    cannot_link_matrix, match, read_mot, score_mtmc, write_mot,
)
from reidzoo.match.associate import calibrate_threshold, pairwise_f1  # noqa: E402
from reidzoo.match.tracks import Detection  # noqa: E402
from reidzoo.match.video import clip_box, open_source  # noqa: E402


@pytest.fixture(scope='module')
def scene(tmp_path_factory) -> dict:
    """A small generated recording: 3 cameras, 5 people, 80 frames of 120x160."""
    root = generate_video(tmp_path_factory.mktemp('scene') / 'video', num_cameras=3, num_ids=5, num_frames=80,
                          frame_size=(120, 160), seed=3)
    return load_video_meta(root)


def _inputs(scene: dict) -> tuple[list[str], list[str]]:
    return [c['video'] for c in scene['cameras']], [c['tracks'] for c in scene['cameras']]


SMALL = TrackletFilter(min_length=4, min_height=16)


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in os.listdir(parent) if p.startswith(f'.{name}.')], os.listdir(parent)


# --------------------------------------------------------------------------------------------------------------------
# MOT text
# --------------------------------------------------------------------------------------------------------------------
def test_read_write_mot_round_trip_replaces_only_the_id(tmp_path):
    src = tmp_path / 'a.txt'
    src.write_text('2,7,10,20,30,60,0.9,-1,-1,-1\n1,7,11.5,20,30,60,0.8,-1,-1,-1\n\n1,3,50,5,20,40,1\n')
    rows = read_mot(src)
    assert [(d.frame, d.track_id) for d in rows] == [(2, 7), (1, 7), (1, 3)]
    assert rows[1].x == 11.5 and rows[2].extra == ('1',)
    write_mot(tmp_path / 'b.txt', rows, {7: 1})  # track 3 has no global id: left out
    assert (tmp_path / 'b.txt').read_text() == '1,1,11.50,20,30,60,0.8,-1,-1,-1\n2,1,10,20,30,60,0.9,-1,-1,-1\n'


@pytest.mark.parametrize('line, message', [
    ('1,2,3,4,5', 'at least 6'),
    ('1,a,3,4,5,6', 'must be numbers'),
    ('0,1,3,4,5,6', '1-based'),
    ('1.5,1,3,4,5,6', 'integer'),
    ('1,1,3,4,0,6', 'width and height'),
    ('1,1,3,4,5,nan', 'finite'),
])
def test_malformed_tracks_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / 'cam1.txt'
    path.write_text(f'1,1,10,10,20,40,1\n{line}\n')
    with pytest.raises(TracksFormatError, match=message) as e:
        read_mot(path)
    assert f'{path}, line 2' in str(e.value)


def test_duplicate_box_of_one_track_in_one_frame_is_an_error(tmp_path):
    path = tmp_path / 't.txt'
    path.write_text('1,1,10,10,20,40\n1,1,12,10,20,40\n')
    with pytest.raises(TracksFormatError, match=r'line 2: track 1 already has a box in frame 1 \(line 1\)'):
        read_mot(path)


def test_empty_tracks_file_is_an_error_and_writes_nothing(scene, tmp_path):
    videos, tracks = _inputs(scene)
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n')
    with pytest.raises(TracksFormatError, match=f'{empty} is empty'):
        match('none', [tracks[0], str(empty), tracks[2]], tmp_path / 'out', videos=videos, progress=False)
    _no_leftovers(tmp_path, 'out')


# --------------------------------------------------------------------------------------------------------------------
# Videos and frames
# --------------------------------------------------------------------------------------------------------------------
def test_corrupt_video_names_the_file_and_writes_nothing(scene, tmp_path):
    videos, tracks = _inputs(scene)
    bad = tmp_path / 'cam2.mp4'
    bad.write_bytes(os.urandom(5000))
    with pytest.raises(VideoDecodeError, match=str(bad)):
        match('none', tracks, tmp_path / 'out', videos=[videos[0], str(bad), videos[2]], progress=False)
    _no_leftovers(tmp_path, 'out')


def test_truncated_video_names_the_file_and_writes_nothing(scene, tmp_path):
    videos, tracks = _inputs(scene)
    data = Path(videos[1]).read_bytes()
    cut = tmp_path / 'cam2.mp4'
    cut.write_bytes(data[:len(data) // 2])  # the index (moov) is at the end: the file no longer opens
    with pytest.raises((VideoDecodeError, FramesPastEndError), match=str(cut)):
        match('none', tracks, tmp_path / 'out', videos=[videos[0], str(cut), videos[2]], progress=False)
    _no_leftovers(tmp_path, 'out')


def test_frames_past_the_end_name_track_frame_and_line(scene, tmp_path):
    videos, tracks = _inputs(scene)
    late = tmp_path / 'late.txt'
    late.write_text(Path(tracks[0]).read_text() + '95,77,10,10,20,40,1,-1,-1,-1\n')
    n = len(Path(tracks[0]).read_text().splitlines()) + 1
    with pytest.raises(FramesPastEndError, match=rf'{late}, line {n}: track 77 has a box in frame 95, but .* has '
                                                 r'only 80 frames'):
        match('none', [str(late), *tracks[1:]], tmp_path / 'out', videos=videos, progress=False)
    _no_leftovers(tmp_path, 'out')


def test_count_mismatch_and_no_source(scene, tmp_path):
    videos, tracks = _inputs(scene)
    with pytest.raises(ValueError, match='Got 3 videos but 2 tracks files'):
        match('none', tracks[:2], tmp_path / 'out', videos=videos, progress=False)
    with pytest.raises(ValueError, match='either as videos or as frame folders'):
        match('none', tracks, tmp_path / 'out', progress=False)
    _no_leftovers(tmp_path, 'out')


def test_clip_box_partly_and_wholly_outside():
    assert clip_box(-10, 0, 20, 40, 100, 50) == (0, 0, 10, 40, 0.5)
    assert clip_box(90, 30, 20, 40, 100, 50)[:4] == (90, 30, 100, 50)
    assert clip_box(150, 0, 20, 40, 100, 50)[4] == 1.0
    assert clip_box(-30, -50, 20, 40, 100, 50)[4] == 1.0


def test_boxes_outside_the_frame_are_clipped_or_dropped_with_a_warning(scene, tmp_path):
    videos, tracks = _inputs(scene)
    src = read_mot(tracks[0])
    first = min(d.track_id for d in src)
    rows = [d for d in src]
    # track 900: boxes wholly outside the 160x120 frame; track 901: partly outside (clipped, still usable)
    rows += [Detection(f, 900, 400., 10., 20., 40.) for f in range(1, 30)]
    rows += [Detection(f, 901, -5., 40., 30., 60.) for f in range(1, 30)]
    path = tmp_path / 'cam1.txt'
    write_mot(path, rows)
    with pytest.warns(MatchWarning, match=r'29 boxes lie wholly outside the 160x120 frame .*track 900: 29'):
        r = match('none', [str(path), *tracks[1:]], tmp_path / 'out', videos=videos, filters=SMALL, progress=False)
    doc = json.loads((r.out_dir / 'identities.json').read_text())
    dropped = {(d['camera'], d['track_id']) for d in doc['dropped_tracks']}
    kept = {(a['camera'], a['track_id']) for i in doc['identities'] for a in i['appearances']}
    assert ('cam1', 900) in dropped and ('cam1', 901) in kept and ('cam1', first) in kept


def test_camera_without_usable_tracklet_warns_and_goes_on(scene, tmp_path):
    videos, tracks = _inputs(scene)
    tiny = tmp_path / 'cam2.txt'
    tiny.write_text('1,1,10,10,8,12,1\n2,1,10,10,8,12,1\n')  # one short track of tiny boxes
    with pytest.warns(MatchWarning, match=r'Camera cam2 .*none of its 1 tracks passed'):
        r = match('none', [tracks[0], str(tiny), tracks[2]], tmp_path / 'out', videos=videos, progress=False)
    assert (r.out_dir / 'cam2.txt').read_text() == ''
    assert (r.out_dir / 'cam1.txt').stat().st_size > 0


def test_frame_folders_give_the_same_result_as_the_video(scene, tmp_path):
    import av
    from PIL import Image
    videos, tracks = _inputs(scene)
    folders = []
    for v in videos:
        folder = tmp_path / Path(v).stem
        folder.mkdir()
        with av.open(v) as c:
            for i, frame in enumerate(c.decode(video=0), start=1):
                Image.fromarray(frame.to_ndarray(format='rgb24')).save(folder / f'{i}.png')
        folders.append(str(folder))
    assert open_source(folders[0]).count_hint() == 80
    a = match('histogram', tracks, tmp_path / 'a', videos=videos, threshold=0.5, filters=SMALL, progress=False)
    b = match('histogram', tracks, tmp_path / 'b', frames=folders, threshold=0.5, filters=SMALL, progress=False)
    assert a.identities == b.identities
    for v in videos:
        assert (a.out_dir / f'{Path(v).stem}.txt').read_text() == (b.out_dir / f'{Path(v).stem}.txt').read_text()


# --------------------------------------------------------------------------------------------------------------------
# Association and scoring
# --------------------------------------------------------------------------------------------------------------------
def test_cannot_link_keeps_overlapping_tracklets_of_one_camera_apart():
    camids = [0, 0, 1, 0]
    spans = [(1, 50), (40, 90), (10, 30), (60, 80)]
    cl = cannot_link_matrix(camids, spans)
    assert cl[0, 1] and cl[1, 3] and not cl[0, 3] and not cl[0, 2]
    dist = np.full((4, 4), 0.1)  # everyone looks alike
    labels = associate(dist, 1.0, cl)
    for i in range(4):
        for j in range(4):
            if cl[i, j]:
                assert labels[i] != labels[j]
    assert associate(dist, 1.0).max() == 0  # without the constraint all merge
    assert associate(dist, 0.05).tolist() == [0, 1, 2, 3]  # nothing is under the threshold


def test_average_linkage_merges_groups_and_calibration_finds_them():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 3
    pids = np.repeat(np.arange(5), 4)
    feats = centres[pids] + rng.normal(size=(20, 16)) * 0.3
    dist = np.sqrt(((feats[:, None] - feats[None]) ** 2).sum(-1))
    threshold, f1 = calibrate_threshold(dist, pids)
    assert f1 == 1.0
    labels = associate(dist, threshold)
    assert pairwise_f1(labels, pids) == (1.0, 1.0, 1.0)
    assert labels.tolist()[:4] == [0, 0, 0, 0]


def _det(frame, tid, x):
    return Detection(frame, tid, float(x), 0., 10., 20.)


def test_score_mtmc_concatenates_cameras():
    gt = [[_det(f, 1, 0) for f in range(1, 11)], [_det(f, 1, 0) for f in range(1, 11)]]
    same = [[_det(f, 5, 0) for f in range(1, 11)], [_det(f, 5, 0) for f in range(1, 11)]]
    assert score_mtmc(gt, same)['IDF1'] == 1.0
    # the person keeps one id per camera but two different ones across cameras: half the frames are identity errors
    split = [[_det(f, 5, 0) for f in range(1, 11)], [_det(f, 6, 0) for f in range(1, 11)]]
    s = score_mtmc(gt, split)
    assert s['IDTP'] == 10 and s['IDFN'] == 10 and s['IDFP'] == 10 and s['IDF1'] == 0.5
    # boxes that do not overlap (IoU < 0.5) never match
    assert score_mtmc(gt, [[_det(f, 5, 100) for f in range(1, 11)], []])['IDTP'] == 0
    assert score_mtmc(gt, [[], []])['IDF1'] == 0.0


# --------------------------------------------------------------------------------------------------------------------
# End to end: outputs, CLI, report in a browser
# --------------------------------------------------------------------------------------------------------------------
def test_match_outputs_and_overwrite(scene, tmp_path):
    videos, tracks = _inputs(scene)
    r = match('histogram', tracks, tmp_path / 'out', videos=videos, threshold=0.6, filters=SMALL, save_crops=True,
              progress=False)
    names = sorted(p.name for p in r.out_dir.iterdir())
    assert names == ['cam1.txt', 'cam2.txt', 'cam3.txt', 'contact_sheet.png', 'crops', 'identities.json',
                     'index.html']
    doc = json.loads((r.out_dir / 'identities.json').read_text())
    assert doc['threshold'] == 0.6 and doc['method'] == 'histogram' and len(doc['identities']) == len(r.identities)
    ids_in_files = set()
    for cam in ('cam1', 'cam2', 'cam3'):
        out_rows, in_rows = read_mot(r.out_dir / f'{cam}.txt'), read_mot(Path(videos[0]).parent / 'tracks' /
                                                                         f'{cam}.txt')
        ids_in_files |= {d.track_id for d in out_rows}
        kept = {a['track_id'] for i in doc['identities'] for a in i['appearances'] if a['camera'] == cam}
        assert len(out_rows) == sum(d.track_id in kept for d in in_rows)
    assert ids_in_files == {i['id'] for i in doc['identities']}
    assert any((r.out_dir / 'crops' / 'cam1').iterdir())
    with pytest.raises(FileExistsError, match='--overwrite'):
        match('none', tracks, tmp_path / 'out', videos=videos, progress=False)
    r2 = match('none', tracks, tmp_path / 'out', videos=videos, overwrite=True, filters=SMALL, progress=False)
    assert not (r2.out_dir / 'crops').exists() and len(r2.identities) == r2.num_tracklets


def test_cli_match_and_one_line_errors(scene, tmp_path, capsys):
    videos, tracks = _inputs(scene)
    gts = [c['gt'] for c in scene['cameras']]
    rc = cli_main(['match', '--model', 'none', '--videos', *videos, '--tracks', *tracks, '--out',
                   str(tmp_path / 'out'), '--min-length', '4', '--min-height', '16', '--gt', *gts, '--no-progress'])
    out = capsys.readouterr().out
    assert rc == 0 and 'identities' in out and 'IDF1' in out
    rc = cli_main(['match', '--model', 'none', '--videos', *videos, '--tracks', *tracks[:2], '--out',
                   str(tmp_path / 'o2')])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().splitlines() == [
        'reidzoo match: error: Got 3 videos but 2 tracks files; give one tracks file per camera, in the same order.']


CHROMIUM = '/usr/bin/chromium'


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason='Debian chromium not installed (.ci/run installs it)')
def test_index_html_in_headless_chromium_shows_one_row_per_identity(scene, tmp_path):
    videos, tracks = _inputs(scene)
    r = match('histogram', tracks, tmp_path / 'out', videos=videos, threshold=0.6, filters=SMALL, progress=False)
    profile = tmp_path / 'profile'
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             f'--user-data-dir={profile}']
    url = (r.out_dir / 'index.html').as_uri()
    dom = subprocess.run([CHROMIUM, *flags, '--dump-dom', url], capture_output=True, text=True, timeout=120).stdout
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.images = [], 0

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == 'tr' and 'identity' in (attrs.get('class') or ''):
                self.rows.append(attrs['id'])
            if tag == 'img' and (attrs.get('src') or '').startswith('data:image/jpeg;base64,'):
                self.images += 1

    parsed = Rows()
    parsed.feed(dom)
    assert parsed.rows == [f'id-{i["id"]}' for i in r.identities]
    assert parsed.images == r.num_tracklets
    shot = tmp_path / 'shot.png'
    subprocess.run([CHROMIUM, *flags, f'--screenshot={shot}', '--window-size=900,700', url], capture_output=True,
                   timeout=120)
    from PIL import Image
    with Image.open(shot) as img:  # the page really rendered: not a blank screenshot
        assert len(np.unique(np.asarray(img.convert('L').resize((90, 70))))) > 10


def test_boxes_covered_by_another_person_are_left_out_when_enough_remain(tmp_path):
    """Track 1 is covered by track 2 in frames 1-10 and clear in 11-30: only the clear boxes are cropped."""
    from reidzoo.match.tracklets import build_tracklets
    from reidzoo.match.video import FolderSource
    from PIL import Image
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i in range(1, 31):
        Image.new('RGB', (160, 120), (i, 0, 0)).save(folder / f'{i}.png')
    rows = [Detection(f, 1, 10., 10., 40., 80.) for f in range(1, 31)]
    rows += [Detection(f, 2, 20., 10., 40., 80.) for f in range(1, 11)]
    infos, _ = build_tracklets(FolderSource(folder), rows, 0, tmp_path / 'crops', filters=SMALL, progress=False)
    first = next(i for i in infos if i.track_id == 1)
    assert first.crop_frames == list(range(11, 31))
    # too few clear boxes: all usable boxes are kept rather than losing the track
    strict = TrackletFilter(min_length=25, min_height=16)
    infos, _ = build_tracklets(FolderSource(folder), rows, 0, tmp_path / 'crops2', filters=strict, progress=False)
    assert [i.crop_frames for i in infos if i.track_id == 1] == [list(range(1, 31))]
