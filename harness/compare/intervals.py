"""Intervals the reports draw and the regression gate judges with: a distribution-free
interval for one median, and a bootstrap interval for the ratio of two medians measured on
different nights (unpaired: run i of one night has nothing to do with run i of another)."""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class Interval:
    estimate: float
    low: float | None
    high: float | None
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None


def median_interval(samples, confidence: float = DEFAULT_CONFIDENCE) -> Interval | None:
    """The median with the order-statistic interval that holds for any distribution (a binomial
    on how many samples fall below the true median), so no resampling is needed."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    if n == 0:
        return None
    median = float(np.median(x))
    if n < 6:
        return Interval(median, None, None, confidence)
    alpha = 1 - confidence
    lo_rank = int(stats.binom.ppf(alpha / 2, n, 0.5))            # 0-based order statistic
    hi_rank = min(n - 1, int(stats.binom.isf(alpha / 2, n, 0.5)))
    return Interval(median, float(x[lo_rank]), float(x[hi_rank]), confidence)


def unpaired_ratio_of_medians(numerator_ms, denominator_ms, confidence: float = DEFAULT_CONFIDENCE,
                              resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """median(numerator) / median(denominator) with a percentile bootstrap interval, each
    series resampled on its own. Fewer than 5 samples on a side gives no interval."""
    a = np.asarray(numerator_ms, dtype=float)
    b = np.asarray(denominator_ms, dtype=float)
    ratio = float(np.median(a) / np.median(b))
    if a.size < 5 or b.size < 5:
        return Interval(ratio, None, None, confidence)
    rng = np.random.default_rng(seed)
    med_a = _bootstrap_medians(a, resamples, rng)
    med_b = _bootstrap_medians(b, resamples, rng)
    ratios = med_a / med_b
    alpha = 1 - confidence
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return Interval(ratio, float(low), float(high), confidence)


def _bootstrap_medians(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    # In chunks: 2000 resamples of a 2000-run series would otherwise be a 32 MB index array.
    out = np.empty(resamples)
    chunk = max(1, 4_000_000 // max(x.size, 1))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = np.median(x[idx], axis=1)
    return out

