"""Which layers the sensitivity measures, in which order, within which time: the model's
quantizable units, a quick per-unit quantization-error pass that orders them, the time budget,
and the final ranking of what was measured."""
from __future__ import annotations

import dataclasses
import math
import time

from qat_harness.sensitivity.measure import TaskMetric

#: seconds the analysis may take by default (the build of the fixed model comes on top)
DEFAULT_BUDGET_S = 240.0


@dataclasses.dataclass(frozen=True)
class UnitInfo:
    """A quantizable layer and the layers fused after it (``build.partial_qat.Unit``)."""
    name: str
    layer_class: str
    layers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class QuickError:
    """A unit's quantization error on its own, without QAT: its weights and its output."""
    unit: str
    weight_sqnr_db: float | None      # its layer's output with its weights quantized; None: exact
    output_sqnr_db: float | None

    @property
    def worst_db(self) -> float:
        known = [v for v in (self.weight_sqnr_db, self.output_sqnr_db) if v is not None]
        return min(known) if known else math.inf


def quick_order(errors: list[QuickError]) -> list[str]:
    """Units by their quick error, worst (lowest SQNR) first."""
    return [e.unit for e in sorted(errors, key=lambda e: e.worst_db)]


@dataclasses.dataclass
class Budget:
    """Wall-clock seconds for the measurements; a configuration is started only when the
    time left covers what the slowest one so far took."""
    seconds: float
    started: float = dataclasses.field(default_factory=time.monotonic)
    slowest: float = 0.0

    def spent(self) -> float:
        return time.monotonic() - self.started

    def allows_another(self) -> bool:
        return self.spent() + self.slowest <= self.seconds

    def record(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """One unit: the task metric with only it quantized, and with every unit but it quantized
    (None: not measured, the budget ran out)."""
    unit: UnitInfo
    quick: QuickError | None
    only_this: TaskMetric | None = None
    all_but_this: TaskMetric | None = None

    @property
    def measured(self) -> bool:
        return self.only_this is not None and self.all_but_this is not None


def ranked(layers: list[LayerSensitivity]) -> list[LayerSensitivity]:
    """Most sensitive first: the measured units by how much keeping them in float recovers
    (the all-but-this metric, higher first), then by how much they lose quantized alone (the
    only-this metric, lower first); the units the budget cut follow in quick-pass order."""
    measured = [s for s in layers if s.measured]
    cut = [s for s in layers if not s.measured]
    measured.sort(key=lambda s: (-s.all_but_this.value if s.all_but_this else 0.0,
                                 s.only_this.value if s.only_this else 0.0))
    cut.sort(key=lambda s: s.quick.worst_db if s.quick else math.inf)
    return measured + cut
