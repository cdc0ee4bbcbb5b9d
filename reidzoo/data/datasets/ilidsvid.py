"""iLIDS-VID (Wang et al., "Person Re-Identification by Video Ranking", ECCV 2014).

Layout: ``i-LIDS-VID/sequences/cam{1,2}/personNNN/cam{1,2}_personNNN_FFFFF.png`` (300
persons seen by both cameras; FFFFF is the video frame number, so frames are sorted numerically) and the authors'
split file ``train-test people splits/train_test_splits_ilidsvid.mat`` (the folder name has spaces; some copies use
``train_test_people_split``). ``ls_set`` is (10, 300): row i holds 1-based indices into the **sorted** cam1 person
folders; its first 150 are the test persons and the last 150 the train persons (torchreid ``prepare_split``).

Split i: train = both cameras of the 150 train persons (pids relabelled 0..149 in sorted folder order); query = cam1
and gallery = cam2 of the 150 test persons, relabelled 0..149 by their position in the sorted test list.
"""
from __future__ import annotations

import os
from typing import Optional

from ..dataset import (
    DatasetFormatError, DatasetNotFoundError, Tracklet, VideoReIDDataset, list_frames, load_mat, mat_array,
    register_dataset,
)

__all__ = ['ILIDSVID']

_NUM_SPLITS = 10
_SPLIT_FILES = (
    'train-test people splits/train_test_splits_ilidsvid.mat',
    'train_test_people_split/train_test_splits_ilidsvid.mat',
)


def person_folders(folder: str) -> list[str]:
    """Sorted person folder names of one camera folder."""
    if not os.path.isdir(folder):
        raise DatasetNotFoundError(f'Missing camera folder {folder} (expected person folders like person001).')
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not names:
        raise DatasetFormatError(f'Camera folder {folder} holds no person folders.')
    return names


def paired_split(
        train_names: list[str],
        test_names: list[str],
        cam_dirs: tuple[str, str],
        extensions: tuple[str, ...],
) -> tuple[list[Tracklet], list[Tracklet], list[Tracklet]]:
    """Train / query / gallery of a two-camera dataset split by person folder (shared with PRID-2011).

    Train pids and test pids are each relabelled 0..N-1 in sorted name order; query is camera 0, gallery camera 1.
    """
    def tracklet(person: str, label: int, cam: int) -> Tracklet:
        return Tracklet(list_frames(os.path.join(cam_dirs[cam], person), extensions), label, cam)

    train = [tracklet(p, label, cam) for label, p in enumerate(sorted(train_names)) for cam in (0, 1)]
    test = sorted(test_names)
    query = [tracklet(p, label, 0) for label, p in enumerate(test)]
    gallery = [tracklet(p, label, 1) for label, p in enumerate(test)]
    return train, query, gallery


@register_dataset
class ILIDSVID(VideoReIDDataset):
    """iLIDS-VID: 300 persons, 2 cameras; per split 150 train persons (300 tracklets) and 150 query/gallery pairs."""
    name = 'ilidsvid'
    default_protocol = 'ilidsvid_10split'
    root_variants = ('', 'ilids-vid')
    markers = ('i-LIDS-VID',)
    source = ('Get iLIDS-VID.tar (it contains i-LIDS-VID/ and "train-test people splits/") from the dataset page, '
              'http://www.eecs.qmul.ac.uk/~xiatian/downloads_qmul_iLIDS-VID_ReID_dataset.html, and extract it into '
              '<root> or <root>/ilids-vid.')
    official_counts = {'train': (150, 300, None), 'query': (150, 150, None), 'gallery': (150, 150, None)}

    def __init__(self, root, split_id: int = 0, split_file: Optional[str] = None, check_frames: bool = False):
        """
        Args:
            root: folder holding ``i-LIDS-VID/`` (or ``ilids-vid/i-LIDS-VID``).
            split_id: which of the 10 official splits, 0..9; report the mean over all ten.
            split_file: path of ``train_test_splits_ilidsvid.mat`` if it is not in its usual place.
            check_frames: see :class:`VideoReIDDataset`.
        """
        if not 0 <= split_id < _NUM_SPLITS:
            raise ValueError(f'split_id must be in 0..{_NUM_SPLITS - 1}, got {split_id}.')
        self.split_id = split_id
        self.split_file = split_file
        super().__init__(root, check_frames=check_frames)

    def load(self):
        seq = os.path.join(self.root, 'i-LIDS-VID', 'sequences')
        cam_dirs = (os.path.join(seq, 'cam1'), os.path.join(seq, 'cam2'))
        persons = person_folders(cam_dirs[0])
        others = person_folders(cam_dirs[1])
        if persons != others:
            diff = sorted(set(persons) ^ set(others))
            raise DatasetFormatError(
                f'{cam_dirs[0]} and {cam_dirs[1]} must hold the same persons; they differ in {diff[:5]}.')

        path = self.split_file
        if path is None:
            candidates = [os.path.join(self.root, f) for f in _SPLIT_FILES]
            path = next((p for p in candidates if os.path.isfile(p)), None)
            if path is None:
                raise DatasetNotFoundError(
                    f'Missing iLIDS-VID split file: none of {candidates} exists (it ships in iLIDS-VID.tar; '
                    f'or pass split_file=).')
        ls_set = mat_array(load_mat(path), 'ls_set', path)
        if ls_set.shape != (_NUM_SPLITS, len(persons)):
            raise DatasetFormatError(
                f'{path}: ls_set should have shape ({_NUM_SPLITS}, {len(persons)}) (splits x persons in '
                f'{cam_dirs[0]}), got {ls_set.shape}.')
        row = ls_set[self.split_id].tolist()
        if sorted(row) != list(range(1, len(persons) + 1)):
            raise DatasetFormatError(
                f'{path}: ls_set row {self.split_id} must be a permutation of 1..{len(persons)}.')
        half = len(persons) // 2
        # Wang et al. / torchreid: the first half of each row is the test set.
        test_names = [persons[i - 1] for i in row[:half]]
        train_names = [persons[i - 1] for i in row[half:]]
        train, query, gallery = paired_split(train_names, test_names, cam_dirs, ('.png',))
        return train, query, gallery, []
