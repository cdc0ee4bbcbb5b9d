"""MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV 2016).

Layout: ``bbox_{train,test}/<PPPP>/<PPPP>C<c>T<tttt>F<fff>.jpg`` and the ``info/`` folder
of github.com/liangzheng06/MARS-evaluation: ``{train,test}_name.txt`` (frame basenames, CRLF),
``tracks_{train,test}_info.mat`` (rows ``[start, end, pid, camid]``, 1-based inclusive ranges into the name files)
and ``query_IDX.mat`` (uint16, 1-based rows of the test matrix). Test pid ``-1`` (folder ``00-1``) is junk; pid ``0``
(folder ``0000``) marks distractors.

Subsets, as torchreid builds them: ``query`` = the ``query_IDX`` rows (1,980), ``gallery`` = the other test rows
without junk (9,330; distractors kept), ``junk`` = the pid -1 rows (870). The protocols rebuild their galleries from
these: ``mars_torchreid`` uses ``gallery``; ``mars_query_in_gallery`` uses ``query + gallery`` (11,310);
``mars_official`` uses all 12,180 rows (``query + gallery + junk``) with the MATLAB trapezoid AP.

The default protocol is ``mars_query_in_gallery``: its ranking and junk rules are exactly those of the official MATLAB
evaluation (the pid -1 rows are junk for every query, so leaving them out changes nothing), all
1,980 queries count, and it is the protocol of the papers whose numbers the zoo reproduces (SINet, AP3D, BiCnet-TKS,
TCLNet). torchreid's 9,330 gallery leaves 140 queries without a true match and moves rank-1 by about 3 points.
"""
from __future__ import annotations

import os

from ..dataset import (
    DatasetFormatError, DatasetNotFoundError, Tracklet, VideoReIDDataset, load_mat, mat_array, read_lines,
    register_dataset, relabel,
)

__all__ = ['Mars']

_NUM_CAMS = 6


def _folder_pid(folder: str) -> int:
    """Pid of a MARS folder name; the junk folder ``00-1`` is pid -1 (``int()`` cannot parse it)."""
    return -1 if folder == '00-1' else int(folder)


@register_dataset
class Mars(VideoReIDDataset):
    """MARS: 1,261 identities, 6 cameras; 8,298 train, 1,980 query and 9,330 gallery tracklets (+870 junk)."""
    name = 'mars'
    default_protocol = 'mars_query_in_gallery'
    root_variants = ('', 'mars', 'MARS')
    markers = ('info', 'bbox_train', 'bbox_test')
    source = ('Get bbox_train.zip and bbox_test.zip from the MARS project page (Liang Zheng, '
              'http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html) and the info/ folder from '
              'https://github.com/liangzheng06/MARS-evaluation; expected layout: <root>/{bbox_train,bbox_test,info}.')
    # the official counts, checked against the real .mat files (tests/data/datasets-metadata)
    official_counts = {
        'train': (625, 8298, 509914),
        'query': (626, 1980, 114493),
        'gallery': (621, 9330, 543216),
        'junk': (1, 870, 23380),
    }

    def load(self):
        info = os.path.join(self.root, 'info')
        train = self._tracklets('train', 'track_train_info')
        test = self._tracklets('test', 'track_test_info')
        if any(t.pid <= 0 for t in train):
            raise DatasetFormatError(f'{info}/tracks_train_info.mat has pid <= 0 rows; only test has junk/distractors.')

        path = os.path.join(info, 'query_IDX.mat')
        query_rows = mat_array(load_mat(path), 'query_IDX', path, vector=True) - 1
        if query_rows.size == 0 or query_rows.min() < 0 or query_rows.max() >= len(test):
            raise DatasetFormatError(
                f'{path}: query_IDX must hold 1-based row indices in 1..{len(test)} (rows of tracks_test_info.mat), '
                f'got range {query_rows.min() + 1 if query_rows.size else None}..'
                f'{query_rows.max() + 1 if query_rows.size else None}.')
        query_set = set(query_rows.tolist())
        if len(query_set) != len(query_rows):
            raise DatasetFormatError(f'{path}: query_IDX has repeated rows.')
        if any(test[i].pid <= 0 for i in query_set):
            raise DatasetFormatError(f'{path}: query_IDX points at junk (-1) or distractor (0) tracklets.')

        query = [test[i] for i in query_rows.tolist()]
        gallery = [t for i, t in enumerate(test) if i not in query_set and t.pid != -1]
        junk = [t for i, t in enumerate(test) if i not in query_set and t.pid == -1]
        return relabel(train), query, gallery, junk

    def _tracklets(self, split: str, key: str) -> list[Tracklet]:
        """All tracklets of ``bbox_<split>`` from ``<split>_name.txt`` and ``tracks_<split>_info.mat``."""
        names_path = os.path.join(self.root, 'info', f'{split}_name.txt')
        mat_path = os.path.join(self.root, 'info', f'tracks_{split}_info.mat')
        names = read_lines(names_path)
        rows = mat_array(load_mat(mat_path), key, mat_path, ncols=4)
        if len(rows) == 0:
            raise DatasetFormatError(f'{mat_path}: {key!r} has no rows.')
        start, end, pid, cam = rows.T
        bad = (start < 1) | (end < start) | (end > len(names)) | (cam < 1) | (cam > _NUM_CAMS)
        if bad.any():
            i = int(bad.argmax())
            raise DatasetFormatError(
                f'{mat_path}: row {i + 1} = {rows[i].tolist()} is invalid; rows are [start, end, pid, camid] with '
                f'1 <= start <= end <= {len(names)} (lines of {names_path}) and camid in 1..{_NUM_CAMS}.')

        home = os.path.join(self.root, f'bbox_{split}')
        if not os.path.isdir(home):
            raise DatasetNotFoundError(f'Missing image folder {home} (extract bbox_{split}.zip there).')
        paths = [f'{home}{os.sep}{n[:4]}{os.sep}{n}' for n in names]
        tracklets = []
        for i, (s, e, p, c) in enumerate(rows.tolist()):
            # The name file and the ranges must describe the same frames: check both ends of each range.
            for line in (s, e):
                n = names[line - 1]
                try:
                    ok = len(n) >= 6 and _folder_pid(n[:4]) == p and int(n[5]) == c
                except ValueError:
                    ok = False
                if not ok:
                    raise DatasetFormatError(
                        f'{names_path} line {line} ({n!r}) does not belong to row {i + 1} of {mat_path} '
                        f'(pid {p}, camera {c}); expected names <PPPP>C<c>T<tttt>F<fff>.jpg listed in sorted folder '
                        f'then sorted file order.')
            tracklets.append(Tracklet(tuple(paths[s - 1:e]), p, c - 1))
        return tracklets
