"""Verdicts judged on the evidence, not on the point estimate (issue 9, item 10).

A rate measured on n examples is judged on its 95% Wilson interval: PASS only when the whole
interval clears the bar, FAIL only when the whole interval misses the lower bar, WARN when the
interval straddles a bar, and WARN saying "too few examples" when even a perfect score on n
examples could not clear the bar (1/1 agreement has a 95% interval of 21%..100%: it proves
nothing). Pure functions of counts, no I/O and no SciPy, so the claims can call them anywhere.

How the claims use them (harness/claims.py, owned elsewhere)::

    from qat_harness.evidence import judge_rate, judge_drop
    # A2: agreement of int8 and float top-1 on n inputs
    j = judge_rate(agree, n, pass_at=AGREEMENT_PASS, warn_at=AGREEMENT_WARN)
    verdict, reason = j.verdict, f"{j.reason}"          # j.low / j.high for the report
    # A1: accuracy drop in points, float vs int8, each right on k of n examples
    j = judge_drop(float_right, int8_right, n, pass_within=ACCURACY_DROP_PASS,
                   warn_within=ACCURACY_DROP_WARN)
"""
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


def newcombe_difference(a: int, b: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of a/n - b/n from the two Wilson intervals (Newcombe's method 10;
    it treats the two rates as independent, which is conservative for paired examples)."""
    p1, p2 = a / n, b / n
    l1, u1 = wilson(a, n, z)
    l2, u2 = wilson(b, n, z)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def judge_drop(float_right: int, int8_right: int, n: int, pass_within: float,
               warn_within: float) -> Judgement:
    """The accuracy drop float -> int8 in points (``pass_within`` / ``warn_within`` in
    points): PASS when the interval's upper end is within ``pass_within``, FAIL when its
    lower end is beyond ``warn_within``, WARN otherwise or when n is too small for an
    interval narrower than ``pass_within`` on either side of no drop at all."""
    if n < 1:
        return Judgement("WARN", float("nan"), 0.0, 0.0, 0, True, "no examples: nothing to judge")
    low, high = (100 * v for v in newcombe_difference(float_right, int8_right, n))
    drop = 100 * (float_right - int8_right) / n
    text = f"drop {drop:.2f} points on {n} examples (95% CI {low:.2f} to {high:.2f})"
    best_case = 100 * newcombe_difference(float_right, float_right, n)[1]
    if best_case > pass_within:
        return Judgement("WARN", drop, low, high, n, True,
                         f"{text}: too few examples to judge; even no drop at all could not be "
                         f"told from a drop of {pass_within:g} points")
    if high <= pass_within:
        return Judgement("PASS", drop, low, high, n, False, f"{text}: within {pass_within:g} points")
    if low > warn_within:
        return Judgement("FAIL", drop, low, high, n, False, f"{text}: beyond {warn_within:g} points")
    return Judgement("WARN", drop, low, high, n, False,
                     f"{text}: the interval reaches past {pass_within:g} points")
