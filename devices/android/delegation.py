"""How much of a graph a TFLite delegate took, from every signal benchmark_model gives.

The signals, strongest first:

1. ``Replacing N out of M node(s) with delegate (<kernel>) node``: exact counts. Several TFLite
   builds never print it (it is a VERBOSE line in release builds), so its absence proves
   nothing;
2. the op profile (``--enable_op_profiling``): each delegate partition runs as one node of the
   delegate kernel's type, every node the delegate refused as a node of its own type, so the
   CPU node types and their counts are exact;
3. the tool's own verdict: ``Explicitly applied <provider> delegate, and the model graph will
   be completely / partially executed``, or ``... will not be executed``. "Completely" without
   counts means every operator of the model: fraction 1.0 with the model's operator count.

When no signal is there the delegation is unknown (``ops_delegated`` None), never "nothing".
"""
from __future__ import annotations

import dataclasses
from typing import cast

from qat_harness.devices.android import benchmark_output as bmo
from qat_harness.devices.android.model_info import ModelInfo
from qat_harness.devices.base import Delegation


@dataclasses.dataclass(frozen=True)
class DelegateKind:
    """A TFLite delegate as benchmark_model names it."""
    backend: str   # Delegation.backend: 'nnapi', 'gpu', 'xnnpack'
    provider: str  # in "Explicitly applied <provider> delegate": 'NNAPI', 'GPU', 'XNNPACK'
    kernel: str    # the delegate node's type: 'TfLiteNnapiDelegate', ...
    label: str     # for messages: 'NNAPI', 'the GPU delegate', 'XNNPACK'


NNAPI = DelegateKind("nnapi", "NNAPI", "TfLiteNnapiDelegate", "NNAPI")
GPU = DelegateKind("gpu", "GPU", "TfLiteGpuDelegateV2", "the GPU delegate")
XNNPACK = DelegateKind("xnnpack", "XNNPACK", "TfLiteXNNPackDelegate", "XNNPACK")


def account(kind: DelegateKind, parsed: bmo.BenchmarkOutput, info: ModelInfo,
            nothing_taken_reason: str) -> Delegation:
    """The Delegation of one invocation's output. ``nothing_taken_reason`` is the fallback
    reason given for every operator when the delegate took none."""
    reps = parsed.replacements_for(kind.kernel)
    tool_says = parsed.applied.get(kind.provider)
    cpu_types = {t: n for t, n in parsed.node_types.items() if t != kind.kernel}
    operators = len(info.operators)
    if reps:
        source = "replacing-line"
        total = sum(cast(int, r.total) for r in reps) if all(r.total is not None for r in reps) else operators
        delegated: int | None = sum(r.replaced for r in reps)
    elif parsed.node_types:
        source = "op-profile"
        total = operators
        delegated = max(0, operators - sum(cpu_types.values())) if kind.kernel in parsed.node_types else 0
    elif tool_says == "full":
        source, total, delegated = "provider-line", operators, operators
    elif tool_says == "none":
        source, total, delegated = "provider-line", operators, 0
    else:  # "partially executed" without counts, or no word at all
        source, total, delegated = ("provider-line" if tool_says else "none"), operators, None

    if delegated is None:
        status = "partial" if tool_says == "partial" else "unknown"
        fallback = ([("unknown", f"{kind.label} ran part of the graph; this benchmark_model printed no node "
                                 "counts (run with op profiling to see which)")] if tool_says == "partial" else [])
    elif delegated == 0:
        status = "none"
        fallback = [(op, nothing_taken_reason) for op in info.operators]
    else:
        status = "full" if delegated >= total and not cpu_types and tool_says != "partial" else "partial"
        if cpu_types:
            fallback = [(t, f"{n} node(s) ran on the CPU: not accepted by {kind.label}") for t, n in cpu_types.items()]
        elif delegated < total:
            fallback = [("unknown", f"{total - delegated} node(s) stayed on the CPU")]
        else:
            fallback = []
    return Delegation(backend=kind.backend, ops_total=total, ops_delegated=delegated, fallback=fallback,
                      details={"status": status, "source": source,
                               "partitions": sum(r.partitions for r in reps) if reps else None,
                               "delegate_kernels": parsed.delegate_kernels.get(kind.provider),
                               "tool_says": tool_says, "cpu_node_types": cpu_types})
