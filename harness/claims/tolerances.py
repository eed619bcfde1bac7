"""Tolerances that decide no claim but say when a measurement is worth a finding: the
cross-check against LiteRT's own benchmark tool and the per-layer trace. Beside the claims'
thresholds, so that every number that judges lives in this package."""

#: A harness median further than this from the native benchmark tool's is flagged.
CROSS_CHECK_TOLERANCE = 0.05

#: The trace: a device whose op output is more than this many int8 steps of the tensor's scale
#: from the reference kernels' departs from them...
TRACE_DEPARTURE_STEPS = 2.0
#: ...and an int8 tensor whose relative error against float exceeds this departs from float,
TRACE_DEPARTURE_REL = 0.1
#: when it is more than this many times what its inputs carried (it appears at this op).
TRACE_JUMP_FACTOR = 2.0
#: An op clipping float values by more than this many steps of its scale is blamed for an
#: error that first shows, over the bulk of the values, downstream.
TRACE_CLIP_BLAME_STEPS = 16.0
