"""The smallest set of layers to keep in float: greedy, in sensitivity order, until the
configuration's task metric is within the claims' bounds (``measure.within_bounds``)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qat_harness.sensitivity.measure import TaskMetric
from qat_harness.sensitivity.plan import Budget

#: (units kept in float) -> the task metric of every other unit quantized
Evaluate = Callable[[tuple[str, ...]], TaskMetric]


@dataclasses.dataclass(frozen=True)
class Step:
    keep: tuple[str, ...]
    metric: TaskMetric


@dataclasses.dataclass(frozen=True)
class Proposal:
    keep: tuple[str, ...]
    steps: tuple[Step, ...]          # every set tried, in order
    reached: bool                    # the last step is within the bounds
    why: str                         # how the search ended, one line


def propose(order: list[str], full: TaskMetric, evaluate: Evaluate, ok: Callable[[TaskMetric], bool],
            budget: Budget, known: dict[tuple[str, ...], TaskMetric] | None = None) -> Proposal:
    """Keep ``order[0]``, then ``order[:2]``, ... in float until ``ok``. ``known``: metrics
    already measured for some sets (each unit's all-but-this), reused rather than rebuilt."""
    known = dict(known or {})
    if ok(full):
        return Proposal((), (), True, "full int8 is already within the bounds: nothing to keep in float")
    steps: list[Step] = []
    for size in range(1, len(order) + 1):
        keep = tuple(order[:size])
        metric = known.get(keep)
        if metric is None:
            if not budget.allows_another():
                return Proposal(keep[:-1], tuple(steps), False,
                                f"the budget ran out before keeping {len(keep)} layer(s) in float was tried")
            metric = evaluate(keep)
        steps.append(Step(keep, metric))
        if ok(metric):
            return Proposal(keep, tuple(steps), True, f"keeping {len(keep)} layer(s) in float is within the bounds")
    return Proposal(tuple(order), tuple(steps), False,
                    "even every measured layer in float is not within the bounds")
