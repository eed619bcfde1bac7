"""Statistics for measurements: latency summaries, a bootstrap interval for a ratio of
medians, Wilson intervals for agreement rates (scipy does the work), and the distance between
two quantized outputs in steps. Each returns a typed value with ``to_dict`` for the report."""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats


class _Serialisable:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LatencySummary(_Serialisable):
    n: int
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None

    def to_dict(self) -> dict:
        return {"n": self.n} if self.n == 0 else dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RatioCI(_Serialisable):
    ratio: float
    ci_low: float | None
    ci_high: float | None
    n_pairs: int
    confidence: float | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.confidence is None:
            d.pop("confidence")
        return d


@dataclasses.dataclass(frozen=True)
class Proportion(_Serialisable):
    """A rate with its Wilson interval."""
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    successes: int = 0


@dataclasses.dataclass(frozen=True)
class StepDifference(_Serialisable):
    """How far two quantized outputs of the same model are apart, in quantization steps."""
    max_steps: int
    mean_steps: float
    fraction_exact: float


def latency_summary(times_ms) -> LatencySummary:
    t = np.asarray(times_ms, dtype=float)
    if t.size == 0:
        return LatencySummary(0)
    return LatencySummary(n=int(t.size), median_ms=float(np.median(t)),
                          p90_ms=float(np.percentile(t, 90)), min_ms=float(t.min()),
                          mean_ms=float(t.mean()), std_ms=float(t.std(ddof=1)) if t.size > 1 else 0.0)


def ratio_of_medians_ci(numerator_ms, denominator_ms, confidence: float = 0.95,
                        resamples: int = 2000, seed: int = 0) -> RatioCI:
    """median(numerator) / median(denominator) with a bootstrap interval.

    The two series were measured interleaved (a, b, a, b, ...), so run i of one and run i of
    the other saw the same machine state: they are resampled as pairs, which keeps a slow
    phase of the machine on both sides of the ratio."""
    a = np.asarray(numerator_ms, dtype=float)
    b = np.asarray(denominator_ms, dtype=float)
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    ratio = float(np.median(a) / np.median(b))
    if n < 5:
        return RatioCI(ratio, None, None, int(n))
    res = stats.bootstrap((a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
                          paired=True, vectorized=True, n_resamples=resamples,
                          confidence_level=confidence, method="percentile",
                          random_state=np.random.default_rng(seed))
    return RatioCI(ratio, float(res.confidence_interval.low), float(res.confidence_interval.high),
                   int(n), confidence)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Proportion:
    if n == 0:
        return Proportion(None, None, None, 0)
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence,
                                                               method="wilson")
    return Proportion(successes / n, float(ci.low), float(ci.high), int(n), int(successes))


def int8_step_difference(a: np.ndarray, b: np.ndarray) -> StepDifference:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return StepDifference(max_steps=int(d.max()) if d.size else 0,
                          mean_steps=float(d.mean()) if d.size else 0.0,
                          fraction_exact=float(np.mean(d == 0)) if d.size else 1.0)


@dataclasses.dataclass(frozen=True)
class OutputDifference(_Serialisable):
    """Two runs' values of one output tensor compared in that tensor's own domain: quantized
    outputs in steps of their scale, float outputs as absolute / relative error, integer
    class ids (an ArgMax output) as an equality rate. Never a float truncated to an integer
    and called steps."""
    output: str
    domain: str                         # 'int8 steps' / 'uint8 steps' / 'int16 steps', 'float', 'ids'
    fraction_exact: float
    max_steps: int | None = None
    mean_steps: float | None = None
    max_abs: float | None = None
    max_rel: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def headline(self) -> str:
        if self.max_steps is not None:
            return f"max {self.max_steps} {self.domain}, {self.fraction_exact:.1%} identical"
        if self.max_abs is not None:
            return f"max abs {self.max_abs:.3g} (rel {self.max_rel:.3g}), {self.fraction_exact:.1%} identical"
        return f"{self.fraction_exact:.1%} of ids equal"


def output_difference(a: np.ndarray, b: np.ndarray, tensor) -> OutputDifference:
    """``tensor`` is the output's ``core.tflite.TensorInfo`` (dtype and quantization)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"output {tensor.name}: shapes {list(a.shape)} and {list(b.shape)} differ")
    exact = float(np.mean(a == b)) if a.size else 1.0
    if tensor.scales and np.issubdtype(a.dtype, np.integer):
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        return OutputDifference(tensor.name, f"{tensor.dtype} steps", exact,
                                max_steps=int(d.max()) if d.size else 0,
                                mean_steps=float(d.mean()) if d.size else 0.0)
    if np.issubdtype(a.dtype, np.floating):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-12)
        return OutputDifference(tensor.name, "float", exact, max_abs=float(d.max()) if d.size else 0.0,
                                max_rel=float(d.max() / scale) if d.size else 0.0)
    return OutputDifference(tensor.name, "ids", exact)
