"""Evaluation: exact retrieval metrics, distances, k-reciprocal re-ranking and the named benchmark protocols.

>>> from reidzoo.eval import compute_distance, evaluate_rank
>>> r = evaluate_rank(compute_distance(qf, gf), q_pids, g_pids, q_camids, g_camids)
>>> r.mAP, r.cmc[0]
"""
from .distance import DISTANCES, compute_distance
from .metrics import RankResult, evaluate_rank
from .protocols import (
    EvalSets, Protocol, average_results, build_eval_sets, evaluate_protocol, get_protocol, list_protocols,
)
from .rerank import k_reciprocal_rerank, rerank_distances

__all__ = [
    'DISTANCES', 'compute_distance', 'RankResult', 'evaluate_rank', 'EvalSets', 'Protocol', 'average_results',
    'build_eval_sets', 'evaluate_protocol', 'get_protocol', 'list_protocols', 'k_reciprocal_rerank',
    'rerank_distances', 'extract_features',
]

_LAZY = {'extract_features': 'extract', 'extract': 'extract'}  # heavier modules, written separately


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f'.{_LAZY[name]}', __name__)
        return module if name == _LAZY[name] else getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
