"""Statistics for measurements: latency summaries, a bootstrap interval for a ratio of
medians, Wilson intervals for agreement rates (scipy does the work). Each returns a typed
value with ``to_dict`` for the report."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class _Serialisable:
    def to_dict(self: DataclassInstance) -> dict:
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
    from qat_harness.evidence import wilson  # the one Wilson formula (SciPy-free, for the claims)

    low, high = wilson(int(successes), int(n), float(stats.norm.ppf(0.5 + confidence / 2)))
    return Proportion(successes / n, low, high, int(n), int(successes))


# -- block timing ---------------------------------------------------------------------------
def split_blocks(times_ms, runs_per_block: int) -> list[list[float]]:
    """A steady-state series back into its blocks (the worker appends each block's steady
    runs in order, ``runs_per_block`` at a time)."""
    t = [float(v) for v in times_ms]
    return [t[i:i + runs_per_block] for i in range(0, len(t) - runs_per_block + 1, runs_per_block)]


def block_ratio_ci(numerator_blocks: list[list[float]], denominator_blocks: list[list[float]],
                   confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> RatioCI:
    """median(numerator runs) / median(denominator runs), timed in blocks (the ratio a native
    tool's two medians give: the cross-check compares it), with an interval from a paired
    bootstrap over rounds: block i of one model and block i of the other were
    timed next to each other (one round), so a round is resampled as a whole and a slow
    phase of the machine stays on both sides of the ratio. Runs within a block are not
    independent (they share the block's machine state), which is why whole blocks, never
    single runs, are resampled. ``n_pairs`` counts rounds."""
    rounds = min(len(numerator_blocks), len(denominator_blocks))
    num = _equal_blocks(numerator_blocks[:rounds])
    den = _equal_blocks(denominator_blocks[:rounds])
    ratio = float(np.median(num) / np.median(den))
    if rounds < 5:
        return RatioCI(ratio, None, None, int(rounds))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, rounds, size=(resamples, rounds))
    num_medians = np.median(num[picks].reshape(resamples, -1), axis=1)
    den_medians = np.median(den[picks].reshape(resamples, -1), axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(num_medians / den_medians, [alpha, 1 - alpha])
    return RatioCI(ratio, float(low), float(high), int(rounds), confidence)


def paired_block_ratio_ci(numerator_blocks: list[list[float]], denominator_blocks: list[list[float]],
                          confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> RatioCI:
    """The typical ratio within a round: per round, median(numerator block) / median(denominator
    block); their median, with a bootstrap interval over rounds. The run's speed-ups and the
    nightly's confirming re-time use it: each round's ratio only compares blocks timed next to
    each other, so a machine whose speed moves from round to round (load, or this 2-vCPU VM's
    cores flipping between ~6 and ~11 ms on a fixed workload, measured while otherwise idle)
    cancels in it instead of widening the pooled medians of ``block_ratio_ci`` (measured under
    two spinning processes on 2 cores: an interval of +-2% where the pooled medians gave +-4%)."""
    rounds = min(len(numerator_blocks), len(denominator_blocks))
    num = np.median(_equal_blocks(numerator_blocks[:rounds]), axis=1) if rounds else np.empty(0)
    den = np.median(_equal_blocks(denominator_blocks[:rounds]), axis=1) if rounds else np.empty(0)
    log_ratios = np.log(num / den)
    ratio = float(np.exp(np.median(log_ratios))) if rounds else float("nan")
    if rounds < 5:
        return RatioCI(ratio, None, None, int(rounds))
    picks = np.random.default_rng(seed).integers(0, rounds, size=(resamples, rounds))
    alpha = (1 - confidence) / 2
    low, high = np.exp(np.quantile(np.median(log_ratios[picks], axis=1), [alpha, 1 - alpha]))
    return RatioCI(ratio, float(low), float(high), int(rounds), confidence)


def _equal_blocks(blocks: list[list[float]]) -> np.ndarray:
    """Blocks as a (rounds, runs) array; a short last block is cut to the common length."""
    width = min(len(b) for b in blocks) if blocks else 0
    return np.asarray([b[:width] for b in blocks], dtype=float)


# -- paired accuracy --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PairedDifference(_Serialisable):
    """Top-1 of a baseline minus top-1 of a candidate on the same examples, in points, with
    a paired-bootstrap interval and McNemar's exact test on the examples where exactly one of
    the two is right (``baseline_only`` / ``candidate_only``)."""
    drop_points: float
    ci_low: float
    ci_high: float
    n: int
    baseline_only: int
    candidate_only: int
    mcnemar_p: float
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def paired_accuracy_difference(baseline_correct, candidate_correct, confidence: float = 0.95,
                               resamples: int = 4000, seed: int = 0) -> PairedDifference:
    """``*_correct``: one bool per example, the same examples in the same order."""
    base = np.asarray(baseline_correct, dtype=bool)
    cand = np.asarray(candidate_correct, dtype=bool)
    if base.shape != cand.shape or base.size == 0:
        raise ValueError(f"paired results need the same examples: {base.shape} vs {cand.shape}")
    per_example = base.astype(float) - cand.astype(float)   # +1: the candidate lost this one
    drop = float(per_example.mean() * 100)
    base_only, cand_only = int(np.sum(base & ~cand)), int(np.sum(cand & ~base))
    if base_only + cand_only == 0:
        low = high = 0.0
    else:
        rng = np.random.default_rng(seed)
        means = per_example[rng.integers(0, base.size, size=(resamples, base.size))].mean(axis=1)
        alpha = (1 - confidence) / 2
        low, high = (float(v) * 100 for v in np.quantile(means, [alpha, 1 - alpha]))
    discordant = base_only + cand_only
    p = float(stats.binomtest(base_only, discordant, 0.5).pvalue) if discordant else 1.0
    return PairedDifference(drop, low, high, int(base.size), base_only, cand_only, p, confidence)
