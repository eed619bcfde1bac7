"""What a trace finds, as typed values handed from stage to stage: each op's measures, each
device's bisection, the culprit, and the result the run, the layer matrix and the CLI read."""
from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from qat_harness.claims.tolerances import TRACE_DEPARTURE_REL, TRACE_DEPARTURE_STEPS, TRACE_JUMP_FACTOR
from qat_harness.measure.difference import OutputDifference
from qat_harness.record.tree import TraceCulprit, TraceSummary
from qat_harness.results import Verdict, plain

SCHEMA = "qat-harness-trace/1"
REFERENCE_KERNELS = "LiteRT reference kernels (BUILTIN_REF)"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When an op departs: from the reference kernels on a device (``threshold_steps`` int8
    steps), from float (``threshold_rel`` relative error, ``jump_factor`` times what its inputs
    carried)."""
    threshold_steps: float = TRACE_DEPARTURE_STEPS
    threshold_rel: float = TRACE_DEPARTURE_REL
    jump_factor: float = TRACE_JUMP_FACTOR


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


@dataclasses.dataclass
class CutRun:
    """One run of a cut model on a device, in the order the bisection made them."""
    op: int
    seconds: float
    cut: DeviceCut


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
    visible_at: int | None = None       # a clipping op blamed: where the error shows in the bulk
    also: list[Culprit] = dataclasses.field(default_factory=list)  # the other candidates, in order

    @property
    def headline(self) -> str:
        on = f" on {self.device}" if self.device else ""
        return f"op {self.op} {self.opcode} (layer {self.layer}), stage {self.stage}{on}"

    def summary(self) -> TraceCulprit:
        """What the run's report keeps of it."""
        return TraceCulprit(self.op, self.opcode, self.layer, self.stage.value, self.reason, self.device)


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
    devices: dict[str, DeviceCut] = dataclasses.field(default_factory=dict)  # device -> its cut here
    verdict: Verdict = Verdict.PASS
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
