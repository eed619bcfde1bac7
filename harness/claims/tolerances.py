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
#: A quantization culprit whose float range reaches more than this many times its bulk's is
#: said to be crushed by outliers.
TRACE_OUTLIER_RATIO = 20.0
#: Where the reference kernels and a device both depart from float at one op, the device is
#: named when its own error against float is less than the reference kernels' divided by this.
TRACE_ODD_ONE_OUT_FACTOR = 2.0
#: A float model's tensor on a device departs from the reference kernels when its largest
#: difference is more than this share of the reference's largest magnitude: float32 kernels
#: differ by ~1e-7..1e-5 (summation order), bf16 or fp16 arithmetic by ~1e-3..1e-2.
TRACE_FLOAT_DEPARTURE_REL = 1e-4
#: A device's departure at an op is carried from a producer when that producer's error, in the
#: op's own steps (times the ratio of their scales), times this gain reaches what the op carries.
TRACE_CARRY_GAIN = 4.0

#: A user's data quantized into a model input: more than this fraction of an input's values
#: clipped (beyond what the input represents) is a warning naming the input and the fraction...
FEED_CLIP_WARN = 0.01
#: ...and more than this is refused in one line: the model would see mostly saturated inputs
#: (raw 0..255 pixels quantized into a [-1, 1] input clip all but the darkest).
FEED_CLIP_REFUSE = 0.5

#: K1 and the recipes on an output that is not class scores (a box, a mask, a regression):
#: two runs agree on an input when all its values are within this share of the output's range.
KERNEL_VALUES_AGREE_REL = 0.01

#: The nightly gate: a device's timing window ran on a busy machine (its latency is not judged
#: against other nights) when other processes took more than this share of the CPUs...
MACHINE_BUSY_OTHER_CPU_SHARE = 0.15
#: ...(where that is unreadable: the 1-minute load average above this many runnable tasks per CPU)...
MACHINE_BUSY_LOAD_PER_CPU = 1.0
#: ...or the fixed canary workload ran this much slower than on the other night (or after the
#: timing than before it)...
MACHINE_BUSY_CANARY_SLOWDOWN = 0.25
#: ...and throttled when a core ran below this share of its maximum frequency under load.
MACHINE_THROTTLED_FREQUENCY_SHARE = 0.80
