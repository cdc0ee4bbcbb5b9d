"""PRID-2011 (Hirzer et al., "Person Re-Identification by Descriptive and Discriminative Classification", SCIA 2011).

Layout: ``prid_2011/multi_shot/cam_{a,b}/person_NNNN/NNNN.png`` (or ``multi_shot/``
directly under the root). PRID has no official split: everyone uses torchreid's ``splits_prid2011.json`` (the 178
persons of 1..200 with long enough sequences, following iLIDS-VID's protocol), a list of 10 ``{"train": [89 names],
"test": [89 names]}``. Split i: train = both cameras of the train persons; query = cam_a and gallery = cam_b of the
test persons; pids relabelled 0..88 within train and within test in sorted name order.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from ..dataset import DatasetFormatError, DatasetNotFoundError, VideoReIDDataset, register_dataset
from .ilidsvid import paired_split

__all__ = ['PRID2011', 'load_prid2011_splits']


def load_prid2011_splits(path: str) -> list[dict[str, list[str]]]:
    """Read and check ``splits_prid2011.json``: a list of ``{"train": [...], "test": [...]}`` with disjoint lists."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f'Missing PRID-2011 split file {path}: download splits_prid2011.json as linked from torchreid\'s '
            f'docs/datasets.rst, or pass split_file=.')
    try:
        with open(path, encoding='utf-8') as f:
            splits = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f'{path} is not valid JSON: {e}') from e
    if not isinstance(splits, list) or not splits:
        raise DatasetFormatError(f'{path}: expected a non-empty list of {{"train": [...], "test": [...]}}.')
    for i, split in enumerate(splits):
        ok = isinstance(split, dict) and all(
            isinstance(split.get(k), list) and split[k] and all(isinstance(n, str) for n in split[k])
            for k in ('train', 'test'))
        if not ok:
            raise DatasetFormatError(f'{path}: entry {i} must be {{"train": [names], "test": [names]}}.')
        if set(split['train']) & set(split['test']):
            raise DatasetFormatError(f'{path}: entry {i} has persons in both train and test.')
    return splits


@register_dataset
class PRID2011(VideoReIDDataset):
    """PRID-2011: 178 persons, 2 cameras; per split 89 train persons (178 tracklets) and 89 query/gallery pairs."""
    name = 'prid2011'
    default_protocol = 'prid2011_10split'
    root_variants = ('', 'prid2011')
    markers = ('prid_2011', 'multi_shot')
    source = ('Get prid_2011.zip from TU Graz (https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/'
              'prid11) and splits_prid2011.json as linked from torchreid\'s docs/datasets.rst; expected layout: '
              '<root>/{splits_prid2011.json,prid_2011/multi_shot/cam_a,cam_b}.')
    official_counts = {'train': (89, 178, None), 'query': (89, 89, None), 'gallery': (89, 89, None)}

    def __init__(self, root, split_id: int = 0, split_file: Optional[str] = None, check_frames: bool = False):
        """
        Args:
            root: folder holding ``prid_2011/`` (or ``prid2011/prid_2011``, or ``multi_shot/`` directly).
            split_id: which split of the JSON, 0..9; report the mean over all ten.
            split_file: path of ``splits_prid2011.json``; default ``<dataset folder>/splits_prid2011.json``.
            check_frames: see :class:`VideoReIDDataset`.
        """
        if split_id < 0:
            raise ValueError(f'split_id must be >= 0, got {split_id}.')
        self.split_id = split_id
        self.split_file = split_file
        super().__init__(root, check_frames=check_frames)

    def load(self):
        shot = os.path.join(self.root, 'prid_2011', 'multi_shot')
        if not os.path.isdir(shot):
            shot = os.path.join(self.root, 'multi_shot')
        cam_dirs = (os.path.join(shot, 'cam_a'), os.path.join(shot, 'cam_b'))
        for d in cam_dirs:
            if not os.path.isdir(d):
                raise DatasetNotFoundError(f'Missing camera folder {d} (expected person_NNNN folders of PNG frames).')
        path = self.split_file or os.path.join(self.root, 'splits_prid2011.json')
        splits = load_prid2011_splits(path)
        if self.split_id >= len(splits):
            raise ValueError(f'split_id must be in 0..{len(splits) - 1} for {path}, got {self.split_id}.')
        split = splits[self.split_id]
        train, query, gallery = paired_split(split['train'], split['test'], cam_dirs, ('.png',))
        return train, query, gallery, []
