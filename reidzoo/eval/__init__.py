"""Evaluation: one pipeline (:func:`evaluate`), exact retrieval metrics, distances, re-ranking and the protocols.

>>> from reidzoo.eval import evaluate
>>> result = evaluate(model, dataset)                  # the dataset's default protocol
>>> result.as_dict()                                   # rank1 / rank5 / rank10 / rank20 / mAP / mINP

>>> from reidzoo.eval import compute_distance, evaluate_rank
>>> r = evaluate_rank(compute_distance(qf, gf), q_pids, g_pids, q_camids, g_camids)
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
    'rerank_distances', 'extract_features', 'evaluate', 'evaluate_features', 'FeatureCache',
]

# modules that import the data pipeline (heavier), loaded on first use
_LAZY = {'extract_features': 'extract', 'extract': 'extract', 'evaluate': 'pipeline',
         'evaluate_features': 'pipeline', 'embed_tracklets': 'pipeline', 'FeatureCache': 'cache'}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f'.{_LAZY[name]}', __name__)
        return module if name == _LAZY[name] else getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
