"""Building blocks shared across model families."""
from .temporal_pool import RNNPool, TemporalAttentionPool, TemporalAvgPool, create_temporal_pool
