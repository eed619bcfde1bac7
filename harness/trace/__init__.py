"""Per-layer trace: where an int8 model parts ways with float, and where a device parts ways
with LiteRT's reference kernels (issue 14). ``run_trace`` is the entry point; ``service`` is
the trace as the run, the layer matrix and the CLI call it."""
from qat_harness.trace.core import run_trace
from qat_harness.trace.results import Culprit, OpTrace, Stage, Thresholds, TraceResult

__all__ = ["Culprit", "OpTrace", "Stage", "Thresholds", "TraceResult", "run_trace"]
