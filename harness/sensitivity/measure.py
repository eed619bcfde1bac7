"""The task metric of one quantization configuration, measured against the float model on the
evaluation inputs with the harness's own measures: top-1 (``measure.agreement.top_one``) on
class-score outputs, the output-fidelity SQNR (``measure.difference.output_difference``) on
every other output; and whether it is within the claims' bounds (A1, A2, A3)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from qat_harness.claims.accuracy import Accuracy, Agreement, Fidelity
from qat_harness.measure import agreement
from qat_harness.measure.difference import OutputTensor, output_difference
from qat_harness.measure.output_kinds import OutputKind, OutputRole
from qat_harness.variants import Variant

TOP1 = "top-1"
FIDELITY = "fidelity"
_CANDIDATE = "candidate"


@dataclasses.dataclass(frozen=True)
class TaskMetric:
    """One configuration against float. ``kind``: ``top-1`` (class scores) or ``fidelity``."""
    kind: str
    agreement: float | None = None          # share of inputs whose top-1 equals float's
    accuracy: float | None = None           # top-1 against the labels
    float_accuracy: float | None = None     # float's top-1 against the same labels
    sqnr_db: float | None = None            # the worst non-class output against float

    @property
    def value(self) -> float:
        """The number configurations are ranked on (higher is better)."""
        if self.kind == TOP1:
            return self.agreement if self.agreement is not None else 0.0
        return self.sqnr_db if self.sqnr_db is not None else math.inf

    @property
    def accuracy_drop_points(self) -> float | None:
        if self.accuracy is None or self.float_accuracy is None:
            return None
        return 100.0 * (self.float_accuracy - self.accuracy)

    @property
    def headline(self) -> str:
        if self.kind == FIDELITY:
            return "identical to float" if self.sqnr_db is None else f"SQNR {self.sqnr_db:.1f} dB"
        text = f"agreement {self.agreement:.1%}" if self.agreement is not None else "agreement n/a"
        if self.accuracy is not None:
            text += f", top-1 {self.accuracy:.1%}"
        return text


def task_kind(roles: list[OutputRole]) -> str:
    return TOP1 if any(r.kind is OutputKind.CLASS_SCORES for r in roles) else FIDELITY


def task_metric(outputs: list[np.ndarray], float_outputs: list[np.ndarray], roles: list[OutputRole],
                labels: np.ndarray | None) -> TaskMetric:
    """``outputs`` and ``float_outputs``: every output, examples first, in the roles' order."""
    if task_kind(roles) == TOP1:
        top = agreement.top_one({Variant.FLOAT: float_outputs, _CANDIDATE: outputs}, _CANDIDATE, roles, labels)
        assert top is not None  # there is a class-score output
        rate = top.agreement.rate if top.agreement else None
        accuracy = top.accuracy or {}
        return TaskMetric(TOP1, agreement=rate,
                          accuracy=accuracy[_CANDIDATE].rate if _CANDIDATE in accuracy else None,
                          float_accuracy=accuracy[Variant.FLOAT].rate if Variant.FLOAT in accuracy else None)
    worst = None
    for role in roles:
        if role.kind is OutputKind.CLASS_IDS:
            continue
        d = output_difference(np.asarray(outputs[role.index], np.float64),
                              np.asarray(float_outputs[role.index], np.float64), OutputTensor(role.name))
        if d.sqnr_db is not None and (worst is None or d.sqnr_db < worst):
            worst = d.sqnr_db
    return TaskMetric(FIDELITY, sqnr_db=worst)


def within_bounds(metric: TaskMetric) -> bool:
    """The claims' bars on point estimates: A2's agreement and A1's accuracy drop on class
    scores, A3's SQNR on other outputs. (The claims judge intervals on a run's examples; this
    decides which layers to keep, and the run of the fixed model judges it.)"""
    if metric.kind == FIDELITY:
        return metric.sqnr_db is None or metric.sqnr_db >= Fidelity.PASS_DB
    if metric.agreement is None or metric.agreement < Agreement.PASS_AT:
        return False
    drop = metric.accuracy_drop_points
    return drop is None or drop <= Accuracy.DROP_PASS


def bounds_text(kind: str) -> str:
    if kind == FIDELITY:
        return f"SQNR >= {Fidelity.PASS_DB:g} dB against float ({Fidelity.id})"
    return (f"top-1 agreement with float >= {Agreement.PASS_AT:.0%} ({Agreement.id}) and top-1 within "
            f"{Accuracy.DROP_PASS:g} point of float ({Accuracy.id})")
