"""Search by example: gallery embeddings with their metadata on disk, queried with a tracklet.

>>> from reidzoo.search import GalleryIndex
>>> index = GalleryIndex.build(gallery_emb, [{'name': 'cam1/t3', 'camid': 0}, ...], metric='cosine')
>>> index.save('gallery_index')
>>> distances, indices, metadata = GalleryIndex.load('gallery_index').search(query_emb, k=10)

Exact search (chunked torch matmul + top-k) for small galleries, faiss IVF or HNSW for large ones; see
:mod:`reidzoo.search.index` for the on-disk format and ``docs/search.md`` for the measured speed and recall.
"""
from .index import (
    EXACT_MAX, FORMAT_NAME, FORMAT_VERSION, KINDS, GalleryIndex, IndexFormatError, SearchResult, check_finite,
    hnsw_defaults, ivf_defaults,
)

__all__ = [
    'EXACT_MAX', 'FORMAT_NAME', 'FORMAT_VERSION', 'KINDS', 'GalleryIndex', 'IndexFormatError', 'SearchResult',
    'check_finite', 'hnsw_defaults', 'ivf_defaults',
]
