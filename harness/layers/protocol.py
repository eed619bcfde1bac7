"""What the matrix asks of the probe child (``ProbeRequest``) and what the child answers
(``ProbeResult``), typed on both sides of the JSON-lines protocol of ``layers.child``."""
from __future__ import annotations

import dataclasses
from typing import Any

from qat_harness.claims.layer_matrix import Cell
from qat_harness.results import Verdict, plain

BUILTIN, USER = "builtin", "user"


def set_fields(obj: Any) -> dict:
    """A dataclass as JSON-ready data, without its unset (None) fields."""
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}


@dataclasses.dataclass(frozen=True)
class ProbeRequest:
    kind: str                   # BUILTIN: ``ref`` is a probe of ``models.probes``; USER: ``module:function``
    ref: str
    workdir: str
    n_examples: int = 16
    float_model: bool = False   # also write the float .tflite (the recipe axis)

    def to_json(self) -> dict:
        return plain(self)


@dataclasses.dataclass(frozen=True)
class Documentation:
    """What tfmot documents about the probe's layers (``build.tfmot_registry.document_model``):
    ``status`` is the worst layer status, ``predicts`` what that says of the ``qat`` stage."""
    status: str = "unknown"
    source: str | None = None
    layers: list[dict[str, Any]] | None = None   # tfmot_registry's rows, shown as they are
    summary: str | None = None
    predicts: dict[str, str] | None = None

    @property
    def predicted_qat(self) -> str | None:
        return (self.predicts or {}).get("qat")

    def to_dict(self) -> dict:
        return set_fields(self)


@dataclasses.dataclass(frozen=True)
class ProbeFiles:
    """The int8 .tflite, the probe inputs and the QAT Keras model's outputs on them."""
    tflite: str
    inputs: str
    keras_outputs: str


@dataclasses.dataclass(frozen=True)
class ProbeLayer:
    """One Keras layer of a probe, as the child describes it."""
    name: str
    cls: str
    weights: int
    tested: bool                # the layer the probe is about (its class is in the probe's label)


@dataclasses.dataclass(frozen=True)
class FloatModelFiles:
    float_tflite: str | None = None
    float_inputs: str | None = None     # only for a model of one input and one output
    float_outputs: str | None = None


@dataclasses.dataclass(frozen=True)
class FloatModel:
    """The probe's float .tflite (the Keras model before QAT), for the recipe axis."""
    verdict: Verdict
    reason: str
    files: FloatModelFiles = FloatModelFiles()
    layers: list[ProbeLayer] | None = None
    layers_error: str | None = None
    seconds: float | None = None


@dataclasses.dataclass
class ProbeResult:
    """The child's answer for one probe. ``stages`` holds ``qat`` and ``convert`` as far as they
    went; ``error`` says why the child itself failed."""
    stages: dict[str, Cell] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    files: ProbeFiles | None = None
    layer: str | None = None
    documented: Documentation | None = None
    has_batchnorm: bool = False
    single_io: bool = True
    custom_configs: list[str] = dataclasses.field(default_factory=list)
    float_model: FloatModel | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return plain(self)

    @classmethod
    def from_json(cls, data: object) -> ProbeResult:
        from qat_harness.record.codec import structure

        return structure(cls, data)
