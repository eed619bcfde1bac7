"""The cells of the layer matrix: one stage of one probe (``StageCell``: its verdict, why, and the
measurements behind it, typed per stage), the keys that name them, and their form in layers.json
(``StageCell.to_json`` / ``load_cell``, which knows each stage's measurements by its key)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from qat_harness.claims.layer_matrix import Cell
from qat_harness.devices.base import Delegation
from qat_harness.layers.protocol import set_fields
from qat_harness.measure.difference import OutputDifference
from qat_harness.results import Verdict, plain
from qat_harness.stats import Proportion

#: The stages every probe has, before the device stages (``DEV:runs``, ``DEV:delegated``, ``DEV:numeric``).
PROBE_STAGES = ("qat", "convert", "int8", "bn_fold")
DEVICE_STAGES = ("runs", "delegated", "numeric")
FLOAT_KEY = "recipe:float"


def device_stage_keys(device: str) -> list[str]:
    return [f"{device}:{what}" for what in DEVICE_STAGES]


def convert_key(recipe: str) -> str:
    return f"recipe:{recipe}:convert"


def weights_key(recipe: str) -> str:
    return f"recipe:{recipe}:weights"


def kernels_key(recipe: str) -> str:
    return f"recipe:{recipe}:kernels"


def device_key(device: str, recipe: str) -> str:
    return f"{device}:recipe:{recipe}"


def recipe_stage_keys(recipes: list[str], devices: list[str]) -> list[str]:
    keys = [FLOAT_KEY]
    for r in recipes:
        keys += [convert_key(r), weights_key(r), *[device_key(d, r) for d in devices], kernels_key(r)]
    return keys


def recipe_of(key: str) -> str | None:
    """The recipe a recipe-stage key belongs to (None for ``recipe:float`` and the int8 stages)."""
    if key.startswith("recipe:") and key.count(":") == 2:
        return key.split(":")[1]
    if ":recipe:" in key:
        return key.split(":recipe:", 1)[1]
    return None


# -- what a cell measured, per stage ------------------------------------------------------------
class Details(Protocol):
    def to_dict(self) -> dict: ...



@dataclasses.dataclass(frozen=True)
class Int8Details:
    ops: dict[str, int]
    float_ops: list[str] | None = None        # given when the file is not all integer
    dequantize_ops: int | None = None

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class BnFoldDetails:
    unfolded_after: list[int]                 # conv ops whose output still goes through a MUL/ADD

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class StepDistance:
    """Two int8 outputs apart, in steps of the output scale (means rounded as layers.json states them)."""
    max_steps: int
    mean_steps: float
    within_1_step: float | None = None

    @classmethod
    def of(cls, difference: OutputDifference, within_1_step: float | None = None) -> StepDistance:
        return cls(difference.max_steps or 0, round(difference.mean_steps or 0.0, 4),
                   None if within_1_step is None else round(within_1_step, 4))

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class NumericDetails:
    """A device's int8 outputs against the reference kernels and the QAT Keras model; empty for
    an output that has no int8 steps."""
    output_scale: float | None = None
    output_zero_point: int | None = None
    vs_reference: StepDistance | None = None
    vs_keras: StepDistance | None = None
    reference_vs_keras: StepDistance | None = None   # given when the two int8 kernels part ways

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class ConvertDetails:
    """The recipe's file as ai-edge-quantizer wrote it, or the kind of its failure."""
    size_bytes: int | None = None
    size_ratio: float | None = None
    from_cache: bool | None = None
    seconds: float | None = None
    path: str | None = None
    quantizer_version: str | None = None
    kind: str | None = None

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class WeightTensor:
    """A layer's weight tensor: its float-file name, shape and the op that reads it, and its
    dtype in the recipe's file (None: no constant of that name there)."""
    layer: str
    tensor: str
    op: str
    shape: tuple[int, ...]
    dtype: str | None

    def text(self, dtype: bool = True) -> str:
        stored = f" {self.dtype or 'missing'}" if dtype else ""
        return f"{self.layer} {self.op}{stored} {list(self.shape)}"


@dataclasses.dataclass(frozen=True)
class WeightsDetails:
    expected_dtype: str
    layers: list[str]                         # the layers under test
    others: list[WeightTensor]                # the weights of the probe's other layers
    tensors: list[WeightTensor] = dataclasses.field(default_factory=list)  # the layers under test's

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class KernelPairDetails:
    top1_agreement: Proportion
    max_abs: float | None

    def to_dict(self) -> dict:
        return {"top1_agreement": plain(self.top1_agreement), "max_abs": self.max_abs}


@dataclasses.dataclass(frozen=True)
class RecipeDeviceDetails:
    """One kernel's run of a recipe's file: against the float model and the other kernels."""
    kernels: dict[str, KernelPairDetails]
    float_agreement: Proportion | None = None
    float_difference: OutputDifference | None = None
    simulated: bool | None = None             # as layers.json has always put it: with the details

    def to_dict(self) -> dict:
        out = {} if self.float_agreement is None else {"float_agreement": plain(self.float_agreement),
                                                       "float_difference": plain(self.float_difference)}
        out["kernels"] = plain(self.kernels)
        return {**out, **({"simulated": True} if self.simulated else {})}


@dataclasses.dataclass(frozen=True)
class KernelsDetails:
    """The cross-kernel verdict (K1) over every kernel that ran a recipe's file."""
    measured: Any
    kernels: list[str]
    odd: list[str]
    failed: dict[str, str]

    def to_dict(self) -> dict:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def details_type(key: str) -> type | None:
    """The measurements a stage key's cell holds."""
    recipe = recipe_of(key)
    if recipe is not None:
        return {convert_key(recipe): ConvertDetails, weights_key(recipe): WeightsDetails,
                kernels_key(recipe): KernelsDetails}.get(key, RecipeDeviceDetails)
    if key == "int8":
        return Int8Details
    if key == "bn_fold":
        return BnFoldDetails
    return {"delegated": Delegation, "numeric": NumericDetails}.get(key.rpartition(":")[2])


# -- the cell -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StageCell(Cell):
    """One stage of one probe. ``trace*``: the trace of a numeric WARN/FAIL cell (``layers.md``
    links it); ``simulated``: the device is a simulator (its reason says so too)."""
    details: Details | None = None
    trace_error: str | None = None
    trace: str | None = None
    trace_culprit: str | None = None
    simulated: bool = False

    def to_json(self) -> dict:
        out: dict[str, Any] = {"verdict": self.verdict.value, "reason": self.reason}
        if self.details is not None:
            out["details"] = plain(self.details)
        for name in ("trace_error", "trace", "trace_culprit"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.simulated:
            out["simulated"] = True
        return out

    def as_simulated(self) -> StageCell:
        return dataclasses.replace(self, reason=self.reason + " [SIMULATED device]", simulated=True)


def cell(verdict: Verdict, reason: str, details: Details | None = None) -> StageCell:
    return StageCell(verdict, reason, details)


@dataclasses.dataclass(frozen=True)
class _StoredCell:
    verdict: Verdict
    reason: str = ""
    details: dict[str, Any] | None = None
    trace_error: str | None = None
    trace: str | None = None
    trace_culprit: str | None = None
    simulated: bool = False


def load_cell(key: str, data: Mapping[str, Any]) -> StageCell:
    """A cell of layers.json under ``key``, typed again. Raises ValueError on a malformed one."""
    from qat_harness.record.codec import structure

    stored = structure(_StoredCell, data)
    kind = details_type(key)
    details = structure(kind, stored.details) if kind is not None and stored.details is not None else None
    return StageCell(stored.verdict, stored.reason, details, stored.trace_error, stored.trace,
                     stored.trace_culprit, stored.simulated)


def load_cells(data: Mapping[str, Mapping[str, Any]]) -> dict[str, StageCell]:
    return {key: load_cell(key, c) for key, c in data.items()}


def cells_json(cells: Mapping[str, StageCell]) -> dict[str, dict]:
    return {key: c.to_json() for key, c in cells.items()}
