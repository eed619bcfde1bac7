"""What a trace finds, as typed values handed from stage to stage: each op's measures, each
device's bisection, the culprit, and the result the run, the layer matrix and the CLI read."""
from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from qat_harness.claims.tolerances import (
    TRACE_DEPARTURE_REL,
    TRACE_DEPARTURE_STEPS,
    TRACE_FLOAT_DEPARTURE_REL,
    TRACE_JUMP_FACTOR,
)
from qat_harness.measure.difference import OutputDifference
from qat_harness.record.tree import TraceCulprit, TraceSummary
from qat_harness.results import Verdict, plain

SCHEMA = "qat-harness-trace/1"
REFERENCE_KERNELS = "LiteRT reference kernels (BUILTIN_REF)"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When an op departs: from the reference kernels on a device (``threshold_steps`` steps of
    a quantized tensor's scale; a float model's tensors: ``threshold_float_rel``, the largest
    difference over the reference's largest magnitude), from float (``threshold_rel`` relative
    error, ``jump_factor`` times what its inputs carried)."""
    threshold_steps: float = TRACE_DEPARTURE_STEPS
    threshold_rel: float = TRACE_DEPARTURE_REL
    jump_factor: float = TRACE_JUMP_FACTOR
    threshold_float_rel: float = TRACE_FLOAT_DEPARTURE_REL

    def device_bound(self, float_model: bool) -> str:
        """How far a device may be from the reference kernels, in words."""
        if float_model:
            return f"relative error {self.threshold_float_rel:g} (largest difference over the largest magnitude)"
        return f"{self.threshold_steps:g} step(s)"


@dataclasses.dataclass(frozen=True)
class QuantError:
    """A value of an int8 model's tensor against a float value of it (``measures.quant_error``).
    Steps are of the tensor's scale; ``mean_bulk_steps`` of the scale the bulk of its values needs."""
    max_abs: float
    mean_abs: float
    rel: float                              # mean |q - f| / mean |f| over the bulk of the values
    float_absmax: float
    float_bulk_mean_abs: float
    max_steps: float | None = None          # None: the tensor has no scale
    mean_steps: float | None = None
    clip_max_steps: float = 0.0             # how far float values lie outside what the tensor holds
    clipped_fraction: float = 0.0
    representable: tuple[float, float] | None = None
    outlier_ratio: float | None = None      # max |f| over the bulk's largest magnitude
    bulk_scale: float | None = None
    mean_bulk_steps: float | None = None


@dataclasses.dataclass(frozen=True)
class Unmeasured:
    """A comparison that could not be made (the two values' shapes differ)."""
    error: str


#: A stage's measure of one op: measured, attempted and impossible, or not attempted (None).
Measure = QuantError | Unmeasured | None


def measured(m: Measure) -> QuantError | None:
    return m if isinstance(m, QuantError) else None


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A device output that cannot be compared with the reference kernels' (its shape differs):
    a departure, with its reason."""
    output: str
    reason: str


@dataclasses.dataclass
class DeviceCut:
    """A device's value of one op's output, from the model cut after that op, against the
    reference kernels'. ``departs`` is None when the device could not run the cut (``error``)."""
    departs: bool | None
    worst: OutputDifference | Mismatch | None = None   # the output furthest from the reference
    rel_vs_float: float | None = None                  # the worst output's relative error against float
    error: str | None = None

    @property
    def max_steps(self) -> float | None:
        """The worst output's distance in steps (infinite for an output that cannot be compared)."""
        if isinstance(self.worst, Mismatch):
            return float("inf")
        return None if self.worst is None or self.worst.max_steps is None else float(self.worst.max_steps)

    @property
    def max_rel(self) -> float | None:
        return self.worst.max_rel if isinstance(self.worst, OutputDifference) else None

    @property
    def magnitude(self) -> float | None:
        """The worst output's error in its own domain: steps when quantized, else relative."""
        steps = self.max_steps
        return steps if steps is not None else self.max_rel

    @property
    def headline(self) -> str:
        if self.error is not None:
            return f"not measured ({self.error[:120]})"
        if isinstance(self.worst, Mismatch):
            return self.worst.reason
        return self.worst.headline if self.worst is not None else "no output compared"


class RunKind(enum.StrEnum):
    CUT = "cut"                # the model cut after ``op``, from the model inputs (cumulative)
    CUTS = "cuts"              # the model cut after the last of ``ops``, each of them an output (cumulative)
    LOCAL = "local"            # ``ops`` each alone, fed the reference kernels' values of their inputs


@dataclasses.dataclass
class CutRun:
    """One run of a cut or extracted model on a device, in the order they were made; ``cut`` is
    op ``op``'s value (for a run of several ops: the worst of them)."""
    op: int
    seconds: float
    cut: DeviceCut
    kind: RunKind = RunKind.CUT
    ops: list[int] = dataclasses.field(default_factory=list)


class BisectionStatus(enum.StrEnum):
    AGREES = "agrees"          # the last op the device can run is within the threshold
    DEPARTS = "departs"        # ``first_departing_op`` departs, every op before it agrees
    INTERVAL = "interval"      # the device could not run the cuts that would narrow it down
    ERROR = "error"            # the device could run no cut at all


@dataclasses.dataclass
class Bisection:
    """Where one device first departs from the reference kernels."""
    status: BisectionStatus
    reason: str
    runs: list[CutRun]
    first_departing_op: int | None = None
    agrees_up_to: int | None = None     # every op up to this one agrees (-1: none measured)
    # the runs that measured local errors (ops alone on the reference kernels' inputs) and the
    # cumulative errors around the departing op, after the bisection (``local``)
    attribution_runs: list[CutRun] = dataclasses.field(default_factory=list)


class Stage(enum.StrEnum):
    QUANTIZATION = "quantization"
    CONVERSION = "conversion"
    DEVICE = "device"


@dataclasses.dataclass
class Culprit:
    """The op where the error appears, and the stage it belongs to."""
    op: int
    opcode: str
    layer: str
    stage: Stage
    tensor: str
    reason: str
    rel: float | None = None            # its relative error against float (quantization, conversion)
    carried_rel: float | None = None    # what its inputs carried
    device: str | None = None           # the device that departs (stage device)
    max_steps: float | None = None      # how far that device is from the reference kernels
    visible_at: int | None = None       # where the error shows: in the bulk (a clipping op blamed),
    #                                     or on the device, the first op whose cumulative error departs
    local: DeviceCut | None = None      # a device culprit run alone on the reference kernels' inputs
    carried: DeviceCut | None = None    # what arrives at ``visible_at`` (or here) from the model inputs
    local_departs: bool | None = None   # its local error is out of bounds (a kernel), or not (rounding carried)
    also: list[Culprit] = dataclasses.field(default_factory=list)  # the other candidates, in order

    @property
    def headline(self) -> str:
        on = f" on {self.device}" if self.device else ""
        return f"op {self.op} {self.opcode} (layer {self.layer}), stage {self.stage}{on}"

    def summary(self) -> TraceCulprit:
        """What the run's report keeps of it."""
        return TraceCulprit(self.op, self.opcode, self.layer, self.stage.value, self.reason, self.device,
                            local=self.local.magnitude if self.local else None,
                            carried=self.carried.magnitude if self.carried else None,
                            carried_at=self.visible_at if self.carried else None,
                            domain=_domain(self.local or self.carried))


def _domain(cut: DeviceCut | None) -> str | None:
    worst = cut.worst if cut else None
    return worst.domain if isinstance(worst, OutputDifference) else None


@dataclasses.dataclass
class OpTrace:
    index: int
    opcode: str
    tensor: int
    tensor_name: str
    layer: str
    layers: list[str]
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None
    float_tensor: str | None = None
    quant: Measure = None               # int8 on the reference kernels vs float
    carried_rel: float = 0.0            # the largest rel error among the producers of its inputs
    keras_qat: Measure = None           # QAT Keras (fake-quant) vs float: quantization itself
    conversion: Measure = None          # int8 on the reference kernels vs QAT Keras, in steps of its scale
    carried_keras_rel: float = 0.0
    carried_conversion_rel: float = 0.0
    devices: dict[str, DeviceCut] = dataclasses.field(default_factory=dict)  # device -> its cut here (cumulative)
    local: dict[str, DeviceCut] = dataclasses.field(default_factory=dict)    # device -> this op alone (local)
    verdict: Verdict = Verdict.PASS
    not_measured: str | None = None     # why no stage measured this op (its verdict is then SKIP)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TraceFiles:
    trace_json: Path | None = None
    markdown: Path | None = None
    plot: Path | None = None
    model_explorer: dict[str, Path] = dataclasses.field(default_factory=dict)  # measure -> node data


@dataclasses.dataclass
class TraceResult:
    float_path: str | None
    int8_path: str
    n_examples: int
    thresholds: Thresholds
    ops: list[OpTrace]
    culprit: Culprit | None
    quantization_culprit: Culprit | None   # the int8 file's culprit: stage quantization or conversion
    devices: dict[str, Bisection]
    notes: list[str]
    reference: str = REFERENCE_KERNELS
    files: TraceFiles = dataclasses.field(default_factory=TraceFiles)
    seconds: float = 0.0
    keras_stage: bool = False              # the QAT Keras model was traced
    float_model: bool = False              # the traced model computes in float: devices judged in relative error
    local_rule: str = ""                   # which ops had their local error measured, and why
    repro: Path | None = None              # the device culprit's minimal repro folder (``repro``)
    skipped: list[str] = dataclasses.field(default_factory=list)  # what was not traced and why, a line each

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, **{f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    @property
    def verdict(self) -> Verdict:
        return Verdict.FAIL if self.culprit else Verdict.PASS

    @property
    def markdown(self) -> Path | None:
        return self.files.markdown

    def summary(self) -> TraceSummary:
        """What the run's report keeps of the trace (the whole of it is in its own files)."""
        return TraceSummary(str(self.markdown) if self.markdown else None,
                            self.culprit.summary() if self.culprit else None)
