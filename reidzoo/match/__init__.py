"""From camera videos and any tracker's output to global identities: ``reidzoo match``.

>>> from reidzoo.match import match, score_mtmc_files
>>> match('tp_resnet50.synthvid', tracks=['c1.txt', 'c2.txt'], videos=['c1.mp4', 'c2.mp4'], out='out')

Modules: :mod:`.tracks` (MOT text), :mod:`.video` (PyAV / frame folders), :mod:`.tracklets` (filters and crops),
:mod:`.associate` (camera-constrained clustering), :mod:`.score` (multi-camera IDF1 with TrackEval),
:mod:`.report` (contact sheet and ``index.html``), :mod:`.pipeline` (all of it).
"""
from .associate import associate, calibrate_threshold, cannot_link_matrix
from .pipeline import BASELINES, MatchResult, associate_cameras, default_threshold, match, prepare_cameras
from .score import score_mtmc, score_mtmc_files
from .tracklets import FramesPastEndError, MatchWarning, TrackletFilter, TrackletInfo
from .tracks import Detection, TracksFormatError, read_mot, write_mot
from .video import VideoDecodeError

__all__ = [
    'associate', 'calibrate_threshold', 'cannot_link_matrix', 'BASELINES', 'MatchResult', 'associate_cameras',
    'default_threshold', 'match', 'prepare_cameras', 'score_mtmc', 'score_mtmc_files', 'FramesPastEndError',
    'MatchWarning', 'TrackletFilter', 'TrackletInfo', 'Detection', 'TracksFormatError', 'read_mot', 'write_mot',
    'VideoDecodeError',
]
