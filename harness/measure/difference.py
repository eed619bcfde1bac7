"""How far one run's value of an output is from another's: the one comparison every stage uses
(the run against the reference kernels, recipes against float, the layer matrix, the trace).

Each output is compared in its own domain: quantized outputs in steps of their scale, float
outputs as absolute, relative and signal-to-quantization-noise error, integer class ids (an
ArgMax output) as an equality rate. Never a float truncated to an integer and called steps."""
from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import numpy as np


class TensorLike(Protocol):
    """What the comparison needs of an output tensor (``core.tflite.TensorInfo`` has it)."""
    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def scales(self) -> list | None: ...


@dataclasses.dataclass(frozen=True)
class OutputTensor:
    """An output described by hand, for values that come from no model file (a dequantized
    output compared with float, a test's own arrays)."""
    name: str = "output"
    dtype: str = "float32"
    scales: list | None = None


FLOAT_OUTPUT = OutputTensor()


@dataclasses.dataclass(frozen=True)
class OutputDifference:
    """Two runs' values of one output tensor, compared in that tensor's own domain."""
    output: str
    domain: str                         # 'int8 steps' / 'uint8 steps' / 'int16 steps', 'float', 'ids'
    fraction_exact: float
    max_steps: int | None = None
    mean_steps: float | None = None
    max_abs: float | None = None
    max_rel: float | None = None        # max |a - b| over max |b|: error relative to the output's range
    sqnr_db: float | None = None        # 10 log10(sum b^2 / sum (a - b)^2); None if identical or b is 0

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def headline(self) -> str:
        if self.max_steps is not None:
            return f"max {self.max_steps} {self.domain}, {self.fraction_exact:.1%} identical"
        if self.max_abs is not None:
            sqnr = f", SQNR {self.sqnr_db:.1f} dB" if self.sqnr_db is not None else ""
            return (f"max abs {self.max_abs:.3g} (rel {self.max_rel:.3g} of the output's range{sqnr}), "
                    f"{self.fraction_exact:.1%} identical")
        return f"{self.fraction_exact:.1%} of ids equal"


def output_difference(a: np.ndarray, b: np.ndarray, tensor: TensorLike = FLOAT_OUTPUT) -> OutputDifference:
    """``a`` measured against ``b`` (the reference). Raises ValueError when the shapes differ."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"output {tensor.name}: shapes {list(a.shape)} and {list(b.shape)} differ")
    exact = float(np.mean(a == b)) if a.size else 1.0
    if tensor.scales and np.issubdtype(a.dtype, np.integer):
        steps = np.abs(a.astype(np.int64) - b.astype(np.int64))
        return OutputDifference(tensor.name, f"{tensor.dtype} steps", exact,
                                max_steps=int(steps.max()) if steps.size else 0,
                                mean_steps=float(steps.mean()) if steps.size else 0.0)
    if np.issubdtype(a.dtype, np.floating):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        error = np.abs(a64 - b64)
        max_abs = float(error.max()) if error.size else 0.0
        signal = float(np.sum(b64 * b64))
        noise = float(np.sum(error * error))
        sqnr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else None
        return OutputDifference(tensor.name, "float", exact, max_abs=max_abs,
                                max_rel=max_abs / max(float(np.abs(b64).max()) if b64.size else 0.0, 1e-12),
                                sqnr_db=sqnr)
    return OutputDifference(tensor.name, "ids", exact)
