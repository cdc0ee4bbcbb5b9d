"""Building blocks shared across model families."""
from .temporal_pool import RNNPool, TemporalAttentionPool, TemporalAvgPool, create_temporal_pool
from .ncc import ncc_other_frames, other_frame_index, znorm
from .non_local import SpatialRelation, TemporalRelation
