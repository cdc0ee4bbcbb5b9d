"""The benchmark datasets and their evaluation protocols, as data: one place for each fact.

Which datasets exist, which protocols score each of them, which protocol is a dataset's default and how many
train/test splits it averages over are stated here and nowhere else: the parsers (``reidzoo.data``), the evaluation
(``reidzoo.eval``), the trainer and the leaderboard read them from this module. It imports nothing of reidzoo (the
spec layer is the bottom of the import graph), so any layer may use it.

Published video re-ID numbers are only comparable under the same protocol: on MARS the gallery alone moves rank-1 by
about 3 points and the AP formula mAP by 1.5-2 points. ``docs/datasets-and-protocols.md`` explains each rule.

>>> default_protocol('mars')
'mars_query_in_gallery'
>>> num_splits('ilidsvid'), num_splits('synthvid', layout='prid2011')
(10, 10)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

__all__ = [
    'Protocol', 'DatasetSpec', 'PROTOCOLS', 'DATASETS', 'DATASET_NAMES', 'SYNTHETIC_DATASET',
    'get_protocol', 'list_protocols', 'get_dataset_spec', 'default_protocol', 'num_splits',
]


@dataclass(frozen=True)
class Protocol:
    """How a dataset's query and gallery are scored.

    Attributes:
        name: registry name, e.g. ``'mars_official'``.
        dataset: dataset name it applies to (``build_dataset`` name).
        description: one-paragraph summary.
        source: where the rule comes from (the reference evaluation code).
        ap: ``'step'`` (mean precision at each hit) or ``'trapezoid'`` (official MATLAB ``compute_AP``).
        skip_no_positive: queries without a positive are dropped (True) or count as AP = 0 (False).
        gallery_includes_query: the queries are prepended to the gallery (AP3D/SINet ``cat(qf, gf)``).
        include_junk: the dataset's junk tracklets (MARS pid -1) join the gallery, flagged junk for every query.
        num_splits: number of train/test splits whose results are averaged (1 = single split).
        max_rank: CMC length.
    """
    name: str
    dataset: str
    description: str
    source: str
    ap: str = 'step'
    skip_no_positive: bool = True
    gallery_includes_query: bool = False
    include_junk: bool = False
    num_splits: int = 1
    max_rank: int = 50


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(
        'mars_official', 'mars',
        'Official MARS evaluation: the gallery is all 12,180 test tracklets (queries and pid -1 junk included); per '
        'query, good = same pid from another camera, junk = pid -1 plus same pid and camera (the query itself '
        'included); pid 0 distractors are negatives. Trapezoid AP; CMC and mAP averaged over all 1,980 queries.',
        'liangzheng06/MARS-evaluation test_mars.m, evaluation_mars.m, compute_AP.m',
        ap='trapezoid', skip_no_positive=False, gallery_includes_query=True, include_junk=True),
    Protocol(
        'mars_torchreid', 'mars',
        'torchreid / Video-Person-ReID / COSAM: gallery = the 9,330 test tracklets that are neither queries nor '
        'pid -1; same pid and camera removed per query; step AP; the 140 queries left without a positive are '
        'skipped (1,840 count).',
        'KaiyangZhou/deep-person-reid metrics/rank.py eval_market1501'),
    Protocol(
        'mars_query_in_gallery', 'mars',
        'AP3D / SINet / BiCnet / TCLNet: gallery = queries + the 9,330 tracklets (11,310; "gallery set must contain '
        'query set, otherwise 140 query imgs will not have ground truth"); same pid and camera removed per query; '
        'step AP. Ranking and junk equal the official protocol; only the AP formula differs.',
        'guxinqian/AP3D test-all.py, baist/SINet main.py',
        gallery_includes_query=True),
    Protocol(
        'lsvid_official', 'lsvid',
        'LS-VID MATLAB evaluation: gallery = all 11,333 test tracklets (3,504 queries included); junk = same pid and '
        'camera; trapezoid AP; queries without a positive (4) count with AP 0 and an all-zero CMC; averages over all '
        '3,504 queries.',
        'LS-VID release eval_func.m / compute_AP.m (copy in oracl4/torch_videoreid)',
        ap='trapezoid', skip_no_positive=False, gallery_includes_query=True),
    Protocol(
        'dukev_standard', 'dukev',
        'DukeMTMC-VideoReID: the gallery as on disk (2,636 tracklets, duplicates of the 702 queries included); same '
        'pid and camera removed per query (which removes the duplicate); step AP; queries without a positive '
        'skipped.',
        'Yu-Wu/DukeMTMC-VideoReID README and issue #3, reid/evaluators.py'),
    Protocol(
        'ilidsvid_10split', 'ilidsvid',
        'iLIDS-VID: per split, query = the 150 test identities in cam1, gallery = the same in cam2 (one positive '
        'each, so AP = 1/rank); step AP; CMC, mAP and mINP are the mean over the 10 splits of '
        'train_test_splits_ilidsvid.mat.',
        'KaiyangZhou/deep-person-reid data/datasets/video/ilidsvid.py, docs/evaluation.rst',
        num_splits=10, max_rank=20),
    Protocol(
        'prid2011_10split', 'prid2011',
        'PRID-2011: per split, query = the 89 test identities in cam_a, gallery = the same in cam_b; step AP; mean '
        'over the 10 splits of splits_prid2011.json.',
        'KaiyangZhou/deep-person-reid data/datasets/video/prid2011.py',
        num_splits=10, max_rank=20),
    Protocol(
        'synthvid_standard', 'synthvid',
        'SynthVID (reidzoo synthetic benchmark): Market-1501 rule on the generated query / gallery: same pid and '
        'camera removed, step AP, queries without a positive skipped.',
        'reidzoo.data.synthvid; the Market-1501 / torchreid rule'),
)}


@dataclass(frozen=True)
class DatasetSpec:
    """What reidzoo knows about one benchmark dataset, independent of any parser.

    Attributes:
        name: the ``build_dataset`` name.
        title: the dataset's usual name in papers.
        default_protocol: protocol used when none is given (the one most published numbers use).
        num_splits: train/test splits whose results are averaged (iLIDS-VID, PRID-2011: 10).
        synthetic: generated by reidzoo rather than parsed from a release (SynthVID); its on-disk layout is one of
            the real datasets', so its number of splits is that layout's.
    """
    name: str
    title: str
    default_protocol: str
    num_splits: int = 1
    synthetic: bool = False

    @property
    def protocols(self) -> tuple[str, ...]:
        """Names of the protocols defined for this dataset, default first."""
        others = [n for n, p in PROTOCOLS.items() if p.dataset == self.name and n != self.default_protocol]
        return (self.default_protocol, *others)


SYNTHETIC_DATASET = 'synthvid'

# MARS defaults to the query-in-gallery protocol: it is what AP3D, SINet, BiCnet and TCLNet report and ranks exactly
# like the official MATLAB code (only the AP formula differs), so most papers' MARS numbers are comparable to it.
DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec('mars', 'MARS', 'mars_query_in_gallery'),
    DatasetSpec('lsvid', 'LS-VID', 'lsvid_official'),
    DatasetSpec('dukev', 'DukeMTMC-VideoReID', 'dukev_standard'),
    DatasetSpec('ilidsvid', 'iLIDS-VID', 'ilidsvid_10split', num_splits=10),
    DatasetSpec('prid2011', 'PRID-2011', 'prid2011_10split', num_splits=10),
    DatasetSpec(SYNTHETIC_DATASET, 'SynthVID', 'synthvid_standard', synthetic=True),
)}

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def list_protocols(dataset: Optional[str] = None) -> list[str]:
    """Protocol names, optionally only those of one dataset."""
    return [n for n, p in PROTOCOLS.items() if dataset is None or p.dataset == dataset]


def get_protocol(protocol: Union[str, Protocol]) -> Protocol:
    """The :class:`Protocol` of a name (a :class:`Protocol` passes through)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f'unknown protocol {protocol!r}; known: {", ".join(PROTOCOLS)}')
    return PROTOCOLS[protocol]


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a dataset name."""
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; known: {", ".join(DATASET_NAMES)}')
    return DATASETS[name]


def default_protocol(dataset: str) -> str:
    """The protocol a dataset is scored with when none is given."""
    return get_dataset_spec(dataset).default_protocol


def num_splits(dataset: str, layout: Optional[str] = None) -> int:
    """How many train/test splits a dataset's results are averaged over.

    Args:
        dataset: dataset name.
        layout: for the synthetic dataset, the real dataset whose on-disk layout it was written in (default
            ``'mars'``); SynthVID in the iLIDS-VID layout has that layout's 10 splits. Ignored for real datasets.
    """
    spec = get_dataset_spec(dataset)
    if spec.synthetic:
        layout = layout or 'mars'
        if layout == dataset or get_dataset_spec(layout).synthetic:
            raise ValueError(f'{dataset!r} layout must be a real dataset name ({", ".join(_real())}), got {layout!r}')
        return get_dataset_spec(layout).num_splits
    return spec.num_splits


def _real() -> list[str]:
    return [n for n, d in DATASETS.items() if not d.synthetic]


def _check_table() -> None:
    # the two tables state related facts; a typo in one must fail at import, not in a leaderboard run
    for d in DATASETS.values():
        p = PROTOCOLS.get(d.default_protocol)
        if p is None or p.dataset != d.name:
            raise AssertionError(f'DATASETS[{d.name!r}].default_protocol {d.default_protocol!r} is not a protocol '
                                 f'of {d.name!r}')
    for p in PROTOCOLS.values():
        if p.dataset not in DATASETS:
            raise AssertionError(f'protocol {p.name!r} names unknown dataset {p.dataset!r}')
        if not DATASETS[p.dataset].synthetic and p.num_splits != DATASETS[p.dataset].num_splits:
            raise AssertionError(f'protocol {p.name!r} has {p.num_splits} splits, dataset {p.dataset!r} '
                                 f'{DATASETS[p.dataset].num_splits}')


_check_table()
