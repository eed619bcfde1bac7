"""The run report as one typed tree: ``RunReport`` > ``ModelSection`` > ``DeviceSection``, every
leaf a typed value the stages returned. ``record.codec`` is the one place the tree becomes JSON
and JSON becomes the tree again; the writers (``qat_harness.writers``) read it by attribute.

Two kinds of value are JSON on purpose (``JsonObject``): a model's configuration as its source
describes it, and the facts a device states about itself or its timing (``Device.describe()``
and ``BenchResult.details``). Both are open: a plug-in device or a user's model says what it
says, and the report keeps it as given.

A value with a ``to_dict`` decides its own JSON form (``results.plain``, the codec's writer);
``record.codec`` reads every form back into these types."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from pathlib import Path
from typing import Annotated

from pydantic import JsonValue, PlainValidator

from qat_harness.claims import Ceiling
from qat_harness.core.tflite import InputFeed
from qat_harness.core.timing import TimingProtocol
from qat_harness.devices.base import Delegation, Role
from qat_harness.environment import Environment
from qat_harness.inspection import FullIntegerCheck, PerAxisCheck
from qat_harness.measure.crosscheck import CrossCheck
from qat_harness.measure.difference import OutputDifference
from qat_harness.measure.output_kinds import OutputRole
from qat_harness.measure.scheme import QuantScheme
from qat_harness.options import RunOptions
from qat_harness.recipes.stage import RecipeResults
from qat_harness.results import ClaimResult, Verdict
from qat_harness.stats import LatencySummary, Proportion, RatioCI

JsonObject = dict[str, JsonValue]


def _claim_from_json(value: object) -> ClaimResult:
    if isinstance(value, ClaimResult):
        return value
    if not isinstance(value, dict):
        raise ValueError("a claim is a JSON object")
    try:
        claim = ClaimResult.from_dict(value)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a claim: {type(exc).__name__}: {exc}") from None
    if not all(isinstance(getattr(claim, k), str) for k in ("id", "model", "device", "reason")):
        raise ValueError("a claim's id, model, device and reason are text")
    return claim


#: A claim in the tree, read by its own ``from_dict`` (the claim registry's form; ``to_dict`` writes it).
Claim = Annotated[ClaimResult, PlainValidator(_claim_from_json)]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"


@dataclasses.dataclass
class DeviceDescription:
    """A device as it described itself when the run opened it."""
    name: str
    role: Role | None = None
    simulated: bool = False
    facts: JsonObject = dataclasses.field(default_factory=dict)   # what else the device says

    @classmethod
    def of(cls, described: JsonObject) -> "DeviceDescription":
        """From ``Device.describe()``: the three facts every device gives, the rest kept as said."""
        facts = {k: v for k, v in described.items() if k not in ("name", "role", "simulated")}
        role = described.get("role")
        return cls(str(described.get("name")), Role(role) if isinstance(role, str) else None,
                   bool(described.get("simulated")), facts)

    def to_dict(self) -> JsonObject:
        """As the device described itself: its facts beside the three every device gives."""
        return {"name": self.name, "role": self.role.value if self.role else None,
                "simulated": self.simulated, **self.facts}


def _device_from_json(value: object) -> DeviceDescription:
    if isinstance(value, DeviceDescription):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError("a device is described by a JSON object with its name")
    return DeviceDescription.of(value)


#: A device in the tree, read from the flat form ``DeviceDescription.to_dict`` writes.
RecordedDevice = Annotated[DeviceDescription, PlainValidator(_device_from_json)]


@dataclasses.dataclass
class DatasetInfo:
    name: str
    eval_examples: int
    labels_meaningful: bool
    description: str | None = None      # what the data is and how it was preprocessed
    feeds: list[InputFeed] | None = None  # how the user's data reaches each input (None: not a user's data)


@dataclasses.dataclass
class ArtifactsInfo:
    folder: Path | None = None      # the cache entry; None for a user's own .tflite files
    from_cache: bool | None = None
    files: dict[str, Path] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TensorSummary:
    index: int
    name: str
    dtype: str
    shape: list[int]
    scale: float | None = None
    zero_point: int | None = None


@dataclasses.dataclass
class TfliteSummary:
    """What one .tflite holds, as the report keeps it (``core.tflite.ModelInfo.to_dict``)."""
    size_bytes: int
    constant_bytes: int
    n_subgraphs: int
    n_ops: int
    n_tensors: int
    op_counts: dict[str, int]
    tensor_dtypes: dict[str, int]
    inputs: list[TensorSummary]
    outputs: list[TensorSummary]


@dataclasses.dataclass
class WeightQuantization:
    """How one conv / depthwise / dense / transpose-conv op's weights are quantized."""
    op_index: int
    opcode: str
    weight_tensor: int | None
    weight_dtype: str | None
    granularity: str                # 'per-channel', 'per-tensor', 'float', 'none'
    n_scales: int
    out_channels: int | None
    quantized_dimension: int | None
    expected_dimension: int
    via_dequantize: bool


@dataclasses.dataclass
class PtqChecks:
    """The structure checks of the PTQ int8 file, beside the claims judged on the one under test."""
    full_integer: FullIntegerCheck
    per_axis: PerAxisCheck


@dataclasses.dataclass
class TrainingPlan:
    float_epochs: int | None = None
    qat_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    qat_lr: float | None = None
    seed: int | None = None


@dataclasses.dataclass
class ControlArmRecord:
    """A1's control arm: the float model fine-tuned exactly as QAT was."""
    variant: str
    file: str
    what: str
    train_accuracy: float | None = None


@dataclasses.dataclass
class BuildRecord:
    """What the build of a model's artifacts measured (training, QAT, conversion)."""
    plan: TrainingPlan | None = None
    conversion_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    timings_s: dict[str, float] = dataclasses.field(default_factory=dict)
    source_notes: list[str] = dataclasses.field(default_factory=list)
    float_train_accuracy: float | None = None
    float_keras_accuracy: float | None = None
    qat_train_accuracy: float | None = None
    qat_calibration: str | None = None
    qat_keras_accuracy: float | None = None
    qat_weights_error: str | None = None
    control_arm: ControlArmRecord | None = None
    float_ft_keras_accuracy: float | None = None
    model_digest: str | None = None


@dataclasses.dataclass
class BlockTiming:
    """How a device timed its models in ABBA blocks (``core.timing``)."""
    block_runs: int
    rounds: int
    timing: str = "abba-blocks"
    order: list[list[str]] = dataclasses.field(default_factory=list)
    cold_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    cold_median_ms: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class BenchDetails:
    """Beside the latencies: how they were timed, the native tool's medians, the hardware's ceiling."""
    protocol: TimingProtocol | None = None   # None in reports written before it was recorded
    blocks: BlockTiming | None = None
    cross_check: CrossCheck | None = None
    ceiling: Ceiling | None = None
    device: JsonObject = dataclasses.field(default_factory=dict)   # what the device said of its timing


@dataclasses.dataclass
class TraceCulprit:
    op: int
    opcode: str
    layer: str
    stage: str                      # 'quantization', 'conversion' or 'device'
    reason: str = ""
    device: str | None = None
    local: float | None = None      # a device culprit's own error, run alone on the reference kernels' inputs
    carried: float | None = None    # the cumulative error (from the model inputs) at op ``carried_at``
    carried_at: int | None = None
    domain: str | None = None       # of ``local`` and ``carried``: 'int8 steps', 'float' (relative), ...

    def describe(self) -> str:
        """One line for a report: the op, its stage, and for a device culprit its own (local)
        error beside the error it carries to where it shows."""
        text = f"op {self.op} {self.opcode} (layer {self.layer}), stage {self.stage}"
        if self.local is not None:
            text += f"; local error {self.local:.3g} {self.domain or ''}".rstrip()
            if self.carried is not None:
                text += f", carried {self.carried:.3g} at op {self.carried_at}"
        return text


@dataclasses.dataclass
class TraceSummary:
    """Where int8 parts ways with float on one device; the whole trace is in its own files."""
    markdown: str | None = None
    culprit: TraceCulprit | None = None

    def finding(self) -> str:
        """Its one-line finding, as every page says it."""
        return self.culprit.describe() if self.culprit else "no layer departs beyond the thresholds"


@dataclasses.dataclass
class DeviceSection:
    """What one model did on one device."""
    simulated: bool
    delegation: dict[str, Delegation] = dataclasses.field(default_factory=dict)  # variant ->
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # 'run:qat_int8' -> reason
    vs_reference_kernels: OutputDifference | None = None              # the first output
    vs_reference_kernels_outputs: list[OutputDifference] | None = None  # every output, if several
    top1: dict[str, float] | None = None
    accuracy: dict[str, Proportion] | None = None       # variant -> top-1 against the labels, with its interval
    vs_float: list[OutputDifference] | None = None      # every non-class output against float (A3)
    latency: dict[str, LatencySummary] | None = None
    latency_raw_ms: dict[str, list[float]] | None = None
    first_invoke_ms: dict[str, float] | None = None
    bench_details: BenchDetails | None = None
    speedup_qat_vs_float: RatioCI | None = None
    speedup_ptq_vs_float: RatioCI | None = None
    trace: TraceSummary | None = None   # where int8 parts ways with float, when A2 is not a PASS

    def reference_differences(self) -> list[OutputDifference]:
        if self.vs_reference_kernels_outputs:
            return self.vs_reference_kernels_outputs
        return [self.vs_reference_kernels] if self.vs_reference_kernels else []


@dataclasses.dataclass
class ModelSection:
    """What happened to one model: where its artifacts came from, what the flatbuffers hold,
    and a ``DeviceSection`` per device."""
    description: str | None = None
    config: JsonObject | None = None         # how the model's source configured it
    dataset: DatasetInfo | None = None
    artifacts: ArtifactsInfo | None = None
    keras: BuildRecord | None = None         # training/conversion metrics of the build
    tflite: dict[str, TfliteSummary] | None = None   # variant ->
    schemes: dict[str, QuantScheme] | None = None    # variant -> what its file computes in, read from it
    quantization: dict[str, list[WeightQuantization]] | None = None
    ptq_checks: PtqChecks | None = None
    devices: dict[str, DeviceSection] = dataclasses.field(default_factory=dict)
    oracle_error: str | None = None
    error: str | None = None
    recipes: RecipeResults | None = None    # with --recipes
    outputs: list[OutputRole] | None = None  # what each output of the file under test is


@dataclasses.dataclass
class Resumption:
    at: str
    previous_status: str
    kept: list[str]          # 'model on device' that were already done


@dataclasses.dataclass
class Note:
    model: str
    text: str


@dataclasses.dataclass
class ModelError:
    model: str
    error: str
    usage: bool              # the model was refused (bad input), not a failure of the run


@dataclasses.dataclass
class RunReport:
    environment: Environment
    options: RunOptions
    tool: str = "qat-harness"
    started: str = dataclasses.field(default_factory=now)
    finished: str | None = None
    status: RunStatus = RunStatus.RUNNING
    devices: dict[str, RecordedDevice] = dataclasses.field(default_factory=dict)
    models: dict[str, ModelSection] = dataclasses.field(default_factory=dict)
    claims: list[Claim] = dataclasses.field(default_factory=list)
    notes: list[Note] = dataclasses.field(default_factory=list)
    errors: list[ModelError] = dataclasses.field(default_factory=list)
    #: model -> devices whose every step is recorded (what a resumed run need not redo)
    done: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    stop_reason: str | None = None          # why an interrupted run stopped
    resumed: list[Resumption] = dataclasses.field(default_factory=list)

    @property
    def refused(self) -> list[ModelError]:
        """Models refused as bad input: they have no claims, and count as errors all the same."""
        return [e for e in self.errors if e.usage]

    def verdict_counts(self) -> dict[Verdict, int]:
        """Every claim's verdict, and each refused model as an ERROR: one count for the
        summary, the pages and the JUnit file."""
        counts = {v: 0 for v in Verdict}
        for c in self.claims:
            counts[c.verdict] += 1
        counts[Verdict.ERROR] += len(self.refused)
        return counts

    def claim(self, claim_id: str, model: str, device: str) -> ClaimResult | None:
        return next((c for c in self.claims
                     if c.id == claim_id and c.model == model and c.device == device), None)

    def emulated_devices(self) -> list[str]:
        """Devices that ran real kernels under an emulator (QEMU): numerics only, never latency."""
        return sorted(name for name, d in self.devices.items() if d.role is Role.EMULATED)

    def simulated_devices(self) -> list[str]:
        return sorted({c.device for c in self.claims if c.simulated}
                      | {name for name, d in self.devices.items() if d.simulated})
