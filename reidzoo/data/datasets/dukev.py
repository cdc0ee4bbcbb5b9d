"""DukeMTMC-VideoReID (Wu et al., "Exploit the Unknown Gradually", CVPR 2018; github.com/Yu-Wu/DukeMTMC-VideoReID).

Layout: ``DukeMTMC-VideoReID/{train,query,gallery}/<PPPP>/<TTTT>/<frame>.jpg`` with frames
named ``0001_C6_F0099_X30823.jpg`` (or the old ``0001C6F0099X30823.jpg``): pid, camera 1..8, frame index within the
tracklet after ``F``, ``X`` (normal) or ``D`` (distractor frame, kept) and the frame number in the camera video.

Frames are sorted by the integer after ``F``. torchreid and AP3D instead look up ``F0001..F{n}`` by glob, which
silently drops the last frame of tracklets that start at ``F0002``. ``gallery/`` holds all 2,636 test tracklets, the
702 query tracklets included; the ``dukev_standard`` protocol removes them through the same-pid-same-camera rule.
"""
from __future__ import annotations

import os
import re

from ..dataset import DatasetFormatError, DatasetNotFoundError, Tracklet, VideoReIDDataset, register_dataset, relabel

__all__ = ['DukeMTMCVideoReID']

# Both naming formats: camera digit at char 6 (with underscores) or at char 5 (without).
_FRAME = re.compile(r'^(\d{4})_?C(\d)_?F(\d+)_?[XD]\d+\.jpg$', re.IGNORECASE)


@register_dataset
class DukeMTMCVideoReID(VideoReIDDataset):
    """DukeMTMC-VideoReID: 702 train ids (2,196 tracklets), 702 query tracklets, 2,636 gallery tracklets, 8 cameras."""
    name = 'dukev'
    default_protocol = 'dukev_standard'
    root_variants = ('DukeMTMC-VideoReID', 'dukemtmc-vidreid/DukeMTMC-VideoReID', '')
    markers = ('train', 'query', 'gallery')
    source = ('DukeMTMC was withdrawn by its authors in 2019 and DukeMTMC-VideoReID is no longer distributed '
              '(github.com/Yu-Wu/DukeMTMC-VideoReID); use it only if you hold a copy under its original licence '
              '(CC BY-NC-SA 4.0). Expected layout: <root>/DukeMTMC-VideoReID/{train,query,gallery}/<PPPP>/<TTTT>/*.jpg '
              'or <root>/dukemtmc-vidreid/DukeMTMC-VideoReID/...')
    # Official README and issue #3 (ids and tracklets; frame counts are only known from a third-party docstring).
    official_counts = {
        'train': (702, 2196, None),
        'query': (702, 702, None),
        'gallery': (1110, 2636, None),
    }

    def load(self):
        train, query, gallery = (self._split(s) for s in ('train', 'query', 'gallery'))
        return relabel(train), query, gallery, []

    def _split(self, split: str) -> list[Tracklet]:
        split_dir = os.path.join(self.root, split)
        if not os.path.isdir(split_dir):
            raise DatasetNotFoundError(f'Missing folder {split_dir} (expected {split}/<PPPP>/<TTTT>/*.jpg).')
        tracklets = []
        for pid_dir in sorted(e.name for e in os.scandir(split_dir) if e.is_dir()):
            if not pid_dir.isdigit():
                raise DatasetFormatError(
                    f'{os.path.join(split_dir, pid_dir)}: identity folders must be 4-digit pids like 0001.')
            pid_path = os.path.join(split_dir, pid_dir)
            for track_dir in sorted((e.name for e in os.scandir(pid_path) if e.is_dir()), key=_int_or_str):
                tracklets.append(self._tracklet(os.path.join(pid_path, track_dir), int(pid_dir)))
        if not tracklets:
            raise DatasetFormatError(f'{split_dir} holds no tracklets (expected <PPPP>/<TTTT>/*.jpg).')
        return tracklets

    @staticmethod
    def _tracklet(folder: str, pid: int) -> Tracklet:
        frames = []
        for entry in os.scandir(folder):
            if not entry.name.lower().endswith('.jpg'):
                continue
            match = _FRAME.match(entry.name)
            if match is None:
                raise DatasetFormatError(
                    f'{entry.path}: frame names must look like 0001_C6_F0099_X30823.jpg or 0001C6F0099X30823.jpg.')
            frames.append((int(match.group(3)), entry.name, int(match.group(2)), entry.path))
        if not frames:
            raise DatasetFormatError(f'Tracklet folder {folder} holds no .jpg frames.')
        frames.sort()  # by the integer after F, then by name
        cams = {f[2] for f in frames}
        if len(cams) != 1 or not 1 <= min(cams) <= 8:
            raise DatasetFormatError(f'Tracklet folder {folder} mixes cameras {sorted(cams)} (expected one of C1..C8).')
        return Tracklet(tuple(f[3] for f in frames), pid, frames[0][2] - 1)


def _int_or_str(name: str):
    return (0, int(name), '') if name.isdigit() else (1, 0, name)
