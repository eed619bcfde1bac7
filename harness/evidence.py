"""Verdicts judged on the evidence, not on the point estimate (issue 9, item 10).

A rate measured on n examples is judged on its 95% Wilson interval: PASS only when the whole
interval clears the bar, FAIL only when the whole interval misses the lower bar, WARN when the
interval straddles a bar, and WARN saying "too few examples" when even a perfect score on n
examples could not clear the bar (1/1 agreement has a 95% interval of 21%..100%: it proves
nothing). Pure functions of counts, no I/O and no SciPy, so the claims can call them anywhere.

A2 (``claims.accuracy.Agreement``) judges int8/float agreement with ``judge_rate``; A1 judges
its drop on a paired interval (``stats.paired_accuracy_difference``)."""
from __future__ import annotations

import dataclasses
import math

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


@dataclasses.dataclass(frozen=True)
class Judgement:
    verdict: str            # 'PASS' | 'WARN' | 'FAIL'
    estimate: float
    low: float              # the 95% interval
    high: float
    n: int
    too_few: bool           # n cannot show the bar is met, whatever the outcome
    reason: str


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of successes/n (n >= 1)."""
    if n < 1:
        raise ValueError("an interval needs at least one example")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The interval always holds p, and within [0, 1]; in floating point its ends can miss by
    # an ulp (an upper end of 0.9999999999999999 for 298 of n = 1..1000 with every example
    # right, a lower end of ~3e-18 with none right), which a plot draws as a negative error bar.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def examples_needed(pass_at: float, z: float = Z95) -> int:
    """The fewest examples on which a perfect score clears ``pass_at`` (Wilson lower end)."""
    n = 1
    while wilson(n, n, z)[0] < pass_at:
        n *= 2
    low, high = n // 2, n
    while low + 1 < high:  # the smallest n in (low, high] that clears it
        mid = (low + high) // 2
        low, high = (low, mid) if wilson(mid, mid, z)[0] >= pass_at else (mid, high)
    return high


def judge_rate(successes: int, n: int, pass_at: float, warn_at: float) -> Judgement:
    """A rate that should be at least ``pass_at`` (``warn_at``: below it, FAIL)."""
    if n < 1:
        return Judgement("WARN", float("nan"), 0.0, 1.0, 0, True, "no examples: nothing to judge")
    low, high = wilson(successes, n)
    rate = successes / n
    text = f"{successes}/{n} = {rate:.2%} (95% CI {low:.2%}-{high:.2%})"
    if wilson(n, n)[0] < pass_at:
        need = examples_needed(pass_at)
        return Judgement("WARN", rate, low, high, n, True,
                         f"{text}: too few examples to judge; at least {need} are needed to show "
                         f">= {pass_at:.0%}")
    if low >= pass_at:
        return Judgement("PASS", rate, low, high, n, False, f"{text}: the whole interval is >= {pass_at:.0%}")
    if high < warn_at:
        return Judgement("FAIL", rate, low, high, n, False, f"{text}: the whole interval is < {warn_at:.0%}")
    return Judgement("WARN", rate, low, high, n, False,
                     f"{text}: the interval does not clear {pass_at:.0%}")
