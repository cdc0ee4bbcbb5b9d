"""LS-VID (Li et al., "Global-Local Temporal Representations for Video Person Re-Identification", ICCV 2019).

There is no official loader; the layout is the one the SINet and BiCnet-TKS loaders read:

* ``list_sequence/list_seq_{train,test}.txt`` (or ``info/list_sequence/...``): lines ``<path prefix> <pid>``; a
  tracklet's frames are the files under the root whose path starts with the prefix. The camera is the 3rd ``_`` token
  of the first frame's basename, which has exactly 4 tokens.
* ``test/data/info_test.mat`` (or ``info/data/info_test.mat``): MATLAB v7.3 (HDF5, read with h5py; v5 is also
  accepted) with ``info_test`` (rows ``[start, end, pid, camid]``, row k = line k of the test list, pids 0-based) and
  ``query`` (1-based rows, **not** sorted; kept in file order).

``query`` and ``gallery`` are disjoint (3,504 + 7,829), as every loader builds them; the ``lsvid_official`` protocol
evaluates against all 11,333 test tracklets, i.e. ``query + gallery``.
"""
from __future__ import annotations

import bisect
import os
import warnings

from ..dataset import (
    DatasetFormatError, DatasetNotFoundError, Tracklet, VideoReIDDataset, load_mat, mat_array, natural_key,
    read_lines, register_dataset, relabel,
)

__all__ = ['LSVID']

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_NUM_CAMS = 15


def _first_existing(root: str, candidates: tuple[str, ...]) -> str:
    paths = [os.path.join(root, c) for c in candidates]
    for path in paths:
        if os.path.isfile(path):
            return path
    raise DatasetNotFoundError(f'LS-VID: missing {" or ".join(paths)}.')


@register_dataset
class LSVID(VideoReIDDataset):
    """LS-VID: 842 train ids (2,831 tracklets); test 2,730 ids, 3,504 query + 7,829 gallery tracklets; 15 cameras."""
    name = 'lsvid'
    default_protocol = 'lsvid_official'
    root_variants = ('', 'LS-VID', 'lsvid')
    markers = ('list_sequence', 'info', 'tracklet_train', 'tracklet_test')
    source = ('LS-VID is distributed by its authors only after signing a licence agreement (request it from the GLTR '
              'authors, Li et al., ICCV 2019). Expected layout: <root>/list_sequence/list_seq_{train,test}.txt, '
              '<root>/tracklet_{train,test}/..., <root>/test/data/info_test.mat.')
    # the release's counts; test numbers checked against the real info_test.mat (frames = sum of its ranges).
    official_counts = {
        'train': (842, 2831, None),
        'query': (2730, 3504, 691980),
        'gallery': (2730, 7829, 1585095),
    }

    def load(self):
        self._listings: dict[str, list[str]] = {}
        train_list = _first_existing(
            self.root, ('list_sequence/list_seq_train.txt', 'info/list_sequence/list_seq_train.txt'))
        test_list = _first_existing(
            self.root, ('list_sequence/list_seq_test.txt', 'info/list_sequence/list_seq_test.txt'))
        mat_path = _first_existing(self.root, ('test/data/info_test.mat', 'info/data/info_test.mat'))

        train = self._read_list(train_list)
        test = self._read_list(test_list)
        mat = load_mat(mat_path)
        info = mat_array(mat, 'info_test', mat_path, ncols=4)
        query_rows = mat_array(mat, 'query', mat_path, vector=True) - 1
        if len(info) != len(test):
            raise DatasetFormatError(
                f'{mat_path}: info_test has {len(info)} rows but {test_list} has {len(test)} lines; row k describes '
                f'line k.')
        if query_rows.size == 0 or query_rows.min() < 0 or query_rows.max() >= len(test):
            raise DatasetFormatError(f'{mat_path}: query must hold 1-based row indices in 1..{len(test)}.')
        if len(set(query_rows.tolist())) != len(query_rows):
            raise DatasetFormatError(f'{mat_path}: query has repeated rows.')

        short = 0
        for k, (tracklet, (start, end, pid, cam)) in enumerate(zip(test, info.tolist())):
            if tracklet.pid != pid or tracklet.camid != cam - 1:
                raise DatasetFormatError(
                    f'Line {k + 1} of {test_list} (pid {tracklet.pid}, camera {tracklet.camid + 1}) disagrees with '
                    f'row {k + 1} of info_test in {mat_path} (pid {pid}, camera {cam}).')
            short += len(tracklet.frames) != end - start + 1
        if short:
            warnings.warn(
                f'LS-VID: {short} test tracklets under {self.root} have a different number of frames than '
                f'info_test.mat gives (partial or altered copy?).', stacklevel=3)

        query_set = set(query_rows.tolist())
        query = [test[i] for i in query_rows.tolist()]
        gallery = [t for i, t in enumerate(test) if i not in query_set]
        return relabel(train), query, gallery, []

    def _read_list(self, path: str) -> list[Tracklet]:
        tracklets = []
        for k, line in enumerate(read_lines(path)):
            parts = line.split(' ')
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                raise DatasetFormatError(f'{path} line {k + 1}: expected "<path prefix> <pid>", got {line!r}.')
            frames = self._frames(parts[0], f'{path} line {k + 1}')
            tokens = os.path.basename(frames[0]).split('_')
            if len(tokens) != 4 or not tokens[2].isdigit() or not 1 <= int(tokens[2]) <= _NUM_CAMS:
                raise DatasetFormatError(
                    f'{frames[0]}: LS-VID frame names have exactly 4 "_"-separated tokens with the camera (1..15) '
                    f'third, like 0001_0001_03_0001.jpg.')
            tracklets.append(Tracklet(frames, int(parts[1]), int(tokens[2]) - 1))
        return tracklets

    def _frames(self, prefix: str, where: str) -> tuple[str, ...]:
        """Image files whose path starts with ``root/prefix``, sorted numerically (the reference ``glob(prefix*)``)."""
        full = os.path.join(self.root, prefix)
        folder, stem = os.path.split(full)
        names = self._listings.get(folder)
        if names is None:
            if not os.path.isdir(folder):
                raise DatasetNotFoundError(f'{where}: tracklet folder {folder} does not exist.')
            names = sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(_IMAGE_EXTENSIONS))
            self._listings[folder] = names
        # The names starting with ``stem`` are one contiguous run of the sorted listing.
        lo = bisect.bisect_left(names, stem)
        hi = bisect.bisect_left(names, stem + '\U0010ffff')
        if lo == hi:
            raise DatasetFormatError(f'{where}: no frames {full}* in folder {folder}.')
        return tuple(os.path.join(folder, n) for n in sorted(names[lo:hi], key=natural_key))
