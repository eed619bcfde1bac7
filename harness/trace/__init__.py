"""Per-layer trace: where an int8 model parts ways with float, and where a device parts ways
with LiteRT's reference kernels (issue 14). ``run_trace`` is the entry point."""
from qat_harness.trace.core import OpTrace, TraceResult, run_trace

__all__ = ["OpTrace", "TraceResult", "run_trace"]
