"""The layer matrix as one typed tree (``MatrixReport``: settings, devices, one ``ProbeEntry`` per
probe, the M claims), and its one codec: ``to_json`` is the content of layers.json, ``load``
types a layers.json again (a field an older file lacks takes its default)."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from qat_harness.claims.layer_matrix import LayerMatrix, MatrixDevice, ProbeOutcome
from qat_harness.devices.base import Role
from qat_harness.environment import Environment
from qat_harness.layers.cells import NumericDetails, StageCell, cells_json, load_cells
from qat_harness.layers.protocol import Documentation, set_fields
from qat_harness.recipes.catalog import RecipeSpec
from qat_harness.results import ClaimResult, plain

SCHEMA_VERSION = 1
TOOL = "qat-harness layers"



@dataclasses.dataclass(frozen=True)
class DocumentationMatch:
    """Does the measurement agree with what tfmot documents? ``agrees`` None: not comparable."""
    agrees: bool | None
    note: str


@dataclasses.dataclass(frozen=True)
class TfliteSummary:
    size_bytes: int
    ops: dict[str, int]


@dataclasses.dataclass
class ProbeDetails:
    child_s: float | None = None                       # the child's qat + convert, in seconds
    timings: dict[str, float] | None = None
    custom_quantize_configs: list[str] | None = None
    tflite: TfliteSummary | None = None
    numeric: dict[str, NumericDetails] | None = None   # device -> its numeric cell's measurements

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass
class ProbeEntry:
    """One probe through every stage (``stages``), and through every recipe (``recipe_stages``,
    None without the recipe axis)."""
    name: str
    layer: str = ""
    group: str = ""
    description: str = ""
    claims: list[str] = dataclasses.field(default_factory=list)
    source: str = "built-in"
    stages: dict[str, StageCell] = dataclasses.field(default_factory=dict)
    documented: Documentation | None = None
    matches_documentation: DocumentationMatch | None = None
    details: ProbeDetails = dataclasses.field(default_factory=ProbeDetails)
    first_failure: str | None = None
    recipe_stages: dict[str, StageCell] | None = None

    def all_cells(self) -> list[tuple[str, StageCell]]:
        return [*self.stages.items(), *(self.recipe_stages or {}).items()]

    def to_json(self) -> dict:
        out = {"name": self.name, "layer": self.layer, "group": self.group, "description": self.description,
               "claims": list(self.claims), "source": self.source, "stages": cells_json(self.stages),
               "documented": plain(self.documented), "matches_documentation": plain(self.matches_documentation),
               "details": plain(self.details), "first_failure": self.first_failure}
        if self.recipe_stages is not None:
            out["recipe_stages"] = cells_json(self.recipe_stages)
        return out

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> ProbeEntry:
        recipe_stages = data.get("recipe_stages")
        return cls(**_typed_fields(cls, data, skip=("stages", "recipe_stages")),
                   stages=load_cells(data.get("stages") or {}),
                   recipe_stages=None if recipe_stages is None else load_cells(recipe_stages))


@dataclasses.dataclass(frozen=True)
class MatrixDeviceInfo:
    available: bool = True
    reason: str = ""
    simulated: bool = False
    role: Role | None = None


@dataclasses.dataclass(frozen=True)
class MatrixSettings:
    examples: int
    workers: int
    probe_timeout_s: float
    qat: str = "tfmot default 8-bit quantize_model, one Adam step (lr 1e-3, MSE)"


@dataclasses.dataclass(frozen=True)
class NumericThresholds:
    """Claim M2's numbers, in steps of the int8 output scale (``claims.AllowListedLayers``)."""
    oracle_pass_steps: int
    oracle_warn_steps: int
    keras_pass_steps: int
    keras_warn_steps: int


@dataclasses.dataclass(frozen=True)
class RecipeThresholds:
    kernel_agreement_pass: float
    kernel_agreement_fail: float
    float_agreement_warn_below: float


@dataclasses.dataclass(frozen=True)
class RecipeAxisInfo:
    """What the recipe axis asked and could use."""
    recipes: dict[str, RecipeSpec]
    quantizer_version: str | None
    kernels: list[str]
    cache_dir: str
    stage_keys: list[str]
    thresholds: RecipeThresholds


@dataclasses.dataclass
class MatrixReport:
    started: str
    status: str = "running"                 # 'running' until the end, then 'complete' or 'interrupted'
    finished: str | None = None
    environment: Environment | None = None
    devices: dict[str, MatrixDeviceInfo] = dataclasses.field(default_factory=dict)
    stage_keys: list[str] = dataclasses.field(default_factory=list)
    thresholds: NumericThresholds | None = None
    settings: MatrixSettings | None = None
    probes: list[ProbeEntry] = dataclasses.field(default_factory=list)
    claims: list[ClaimResult] = dataclasses.field(default_factory=list)
    elapsed_s: float | None = None
    recipe_axis: RecipeAxisInfo | None = None
    schema_version: int = SCHEMA_VERSION
    tool: str = TOOL

    def to_json(self) -> dict:
        out = {"schema_version": self.schema_version, "tool": self.tool, "started": self.started,
               "finished": self.finished, "status": self.status, "environment": plain(self.environment),
               "devices": plain(self.devices), "stage_keys": list(self.stage_keys),
               "thresholds": plain(self.thresholds), "settings": plain(self.settings),
               "probes": [p.to_json() for p in self.probes], "claims": [c.to_dict() for c in self.claims],
               "elapsed_s": self.elapsed_s}
        if self.recipe_axis is not None:
            out["recipe_axis"] = plain(self.recipe_axis)
        return out

    def layer_matrix(self, folding: set[str]) -> LayerMatrix:
        """The measurements claims M1-M5 judge; ``folding``: the probes whose BatchNorm follows a conv."""
        return LayerMatrix(
            tuple(ProbeOutcome(p.name, tuple(p.claims), p.stages, p.first_failure, p.name in folding)
                  for p in self.probes),
            tuple(MatrixDevice(name, d.available, d.reason, d.simulated) for name, d in self.devices.items()))


def _typed_fields(cls: type, data: Mapping[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """The fields of dataclass ``cls`` that ``data`` gives, each checked against its type (the
    cells aside: their measurements are typed by their stage key, ``cells.load_cell``)."""
    from qat_harness.record.codec import structure

    hints = typing.get_type_hints(cls)
    return {f.name: structure(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
            if f.name in data and f.name not in skip}


_CLAIM_DEFAULTS = {"model": "", "measured": None, "expected": None}


def load(data: Mapping[str, Any]) -> MatrixReport:
    """A layers.json's content as the typed matrix. Raises ValueError on a malformed one."""
    return MatrixReport(**{"started": "", **_typed_fields(MatrixReport, data, skip=("probes", "claims"))},
                        probes=[ProbeEntry.load(p) for p in data.get("probes") or [] if p],
                        claims=[ClaimResult.from_dict({**_CLAIM_DEFAULTS, **c}) for c in data.get("claims") or []])


def as_matrix(matrix: MatrixReport | Mapping[str, Any]) -> MatrixReport:
    """The typed matrix, from itself or from a layers.json's content."""
    return matrix if isinstance(matrix, MatrixReport) else load(matrix)
