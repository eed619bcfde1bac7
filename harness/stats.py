"""Statistics for measurements: latency summaries, a bootstrap interval for a ratio of
medians, and Wilson intervals for agreement rates (scipy does the work)."""
from __future__ import annotations

import numpy as np
from scipy import stats


def latency_summary(times_ms: list[float]) -> dict:
    t = np.asarray(times_ms, dtype=float)
    if t.size == 0:
        return {"n": 0}
    return {"n": int(t.size), "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()),
            "mean_ms": float(t.mean()), "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0}


def ratio_of_medians_ci(numerator_ms, denominator_ms, confidence: float = 0.95,
                        resamples: int = 2000, seed: int = 0) -> dict:
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
        return {"ratio": ratio, "ci_low": None, "ci_high": None, "n_pairs": int(n)}
    res = stats.bootstrap((a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
                          paired=True, vectorized=True, n_resamples=resamples,
                          confidence_level=confidence, method="percentile",
                          random_state=np.random.default_rng(seed))
    return {"ratio": ratio, "ci_low": float(res.confidence_interval.low),
            "ci_high": float(res.confidence_interval.high), "n_pairs": int(n),
            "confidence": confidence}


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> dict:
    if n == 0:
        return {"rate": None, "ci_low": None, "ci_high": None, "n": 0}
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence,
                                                               method="wilson")
    return {"rate": successes / n, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "n": int(n), "successes": int(successes)}


def int8_step_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """How far two int8 outputs of the same model are apart, in quantization steps."""
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"max_steps": int(d.max()) if d.size else 0,
            "mean_steps": float(d.mean()) if d.size else 0.0,
            "fraction_exact": float(np.mean(d == 0)) if d.size else 1.0}
