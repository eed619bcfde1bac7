"""The sensitivity of one prepared model (``preparation.prepare``): units measured in the
child (``sensitivity.child``) within a budget, ranked, the smallest keep-float set proposed,
built and measured on the devices beside full int8."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from qat_harness.build.artifacts import _arrays, train_plan, user_env
from qat_harness.core import tflite
from qat_harness.core.child import ChildFailure, ServingChild
from qat_harness.core.errors import UsageError
from qat_harness.devices.base import BenchSettings, Device
from qat_harness.measure.output_kinds import OutputRole, classify_outputs, label_classes
from qat_harness.preparation import PreparedModel
from qat_harness.sensitivity import deploy
from qat_harness.sensitivity.measure import TaskMetric, bounds_text, task_kind, task_metric, within_bounds
from qat_harness.sensitivity.plan import (
    DEFAULT_BUDGET_S,
    Budget,
    LayerSensitivity,
    QuickError,
    UnitInfo,
    quick_order,
    ranked,
)
from qat_harness.sensitivity.propose import Proposal, propose
from qat_harness.sources import SourceKind

CHILD = "qat_harness.sensitivity.child"
#: one request to the child (a float training, a QAT fine-tune) may take this long
REQUEST_TIMEOUT_S = 1800.0


class SensitivityFailed(Exception):
    """The child died, hung or failed: one line."""


@dataclasses.dataclass
class FixedModel:
    """The proposal built: full int8 and the fixed file, their facts and their costs."""
    keep: tuple[str, ...]
    files: dict[str, Path]
    facts: dict[str, deploy.FileFacts]
    keras: dict[str, TaskMetric]             # FULL / FIXED, the fine-tuned QAT Keras models
    devices: list[deploy.DeviceCost]
    training: str


@dataclasses.dataclass
class SensitivityResult:
    model: str
    task: str
    bounds: str
    units: list[UnitInfo]
    full: TaskMetric                         # every unit quantized, calibrated like the rest
    layers: list[LayerSensitivity]           # ranked, most sensitive first
    proposal: Proposal
    budget_s: float
    seconds: float
    fixed: FixedModel | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def cut(self) -> list[str]:
        return [s.unit.name for s in self.layers if not s.measured]


def source_request(prepared: PreparedModel) -> dict:
    if prepared.source.kind is SourceKind.TFLITE:
        raise UsageError(f"{prepared.label}: sensitivity needs a Keras source (a built-in model, a Keras "
                         "file or a module:function); a .tflite has no Keras layers to keep in float")
    if prepared.source.kind is SourceKind.REGISTRY:
        return {"kind": "registry", "name": prepared.label, "config": prepared.config}
    return prepared.source.request()


def training_plan(prepared: PreparedModel) -> dict:
    """The plan the harness's build used for this model (``build.artifacts``)."""
    if prepared.source.kind is SourceKind.REGISTRY:
        from qat_harness.models import registry

        return train_plan(registry.get(prepared.label), prepared.data)
    return dict(prepared.config["plan"])


class _Session:
    """The child and the files it writes predictions to."""

    def __init__(self, prepared: PreparedModel, out: Path):
        self.work = out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.child = ServingChild(CHILD, out / "child.log", env=user_env(source_request(prepared)))
        self.count = 0

    def ask(self, request: dict) -> dict:
        try:
            answer = self.child.run(request, REQUEST_TIMEOUT_S)
        except ChildFailure as exc:
            raise SensitivityFailed(f"the sensitivity child failed in {request['op']}: {exc.reason}") from None
        if "error" in answer:
            if answer.get("kind") == "usage":
                raise UsageError(answer["error"])
            raise SensitivityFailed(f"{request['op']}: {answer['error']}")
        return answer

    def predictions_path(self) -> Path:
        self.count += 1
        return self.work / f"predictions_{self.count}.npz"


def read_outputs(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return [npz[f"output_{i}"] for i in range(len(npz.files))]


def analyse(prepared: PreparedModel, devices: Mapping[str, Device], out: Path,
            budget_s: float = DEFAULT_BUDGET_S, progress: Callable[[str], None] = print,
            bench: BenchSettings | None = None) -> SensitivityResult:
    started = time.monotonic()
    session = _Session(prepared, out)
    try:
        return _analyse(prepared, devices, out, budget_s, progress, bench or BenchSettings(), session, started)
    finally:
        session.child.close()


def _analyse(prepared, devices, out, budget_s, progress, bench, session: _Session, started) -> SensitivityResult:
    name, data = prepared.label, prepared.data
    data_file = session.work / "data.npz"
    np.savez(data_file, **_arrays(data))  # type: ignore[arg-type]  # numpy stub: **arrays read as allow_pickle
    float_file, float_predictions = session.work / "float.tflite", session.predictions_path()
    progress(f"{name}: loading the float model in the sensitivity child")
    loaded = session.ask({"op": "load", "source": source_request(prepared), "data": str(data_file),
                          "plan": training_plan(prepared), "float_out": str(float_file),
                          "predictions": str(float_predictions)})
    units = [UnitInfo(u["name"], u["layer_class"], tuple(u["layers"])) for u in loaded["units"]]
    if not units:
        raise UsageError(f"{name}: no layer tfmot quantizes (Conv, DepthwiseConv, Dense, ...): nothing to rank")
    labels = data.y_eval if data.labels_meaningful else None
    roles: list[OutputRole] = classify_outputs(tflite.inspect_model(float_file), None, label_classes(labels))
    kind = task_kind(roles)
    float_outputs = read_outputs(float_predictions)
    budget = Budget(budget_s)

    def evaluate(keep: tuple[str, ...], quantize_others: bool = True) -> TaskMetric:
        path = session.predictions_path()
        t0 = time.monotonic()
        session.ask({"op": "evaluate", "keep": list(keep), "quantize_others": quantize_others,
                     "predictions": str(path)})
        budget.record(time.monotonic() - t0)
        return task_metric(read_outputs(path), float_outputs, roles, labels)

    progress(f"{name}: every layer quantized")
    full = evaluate(())
    quick = [QuickError(e["unit"], e["weight_sqnr_db"], e["output_sqnr_db"])
             for e in session.ask({"op": "quick"})["errors"]]
    by_unit = {q.unit: q for q in quick}
    order = quick_order(quick)
    names = [u.name for u in units]
    layers = {u.name: LayerSensitivity(u, by_unit.get(u.name)) for u in units}
    for unit in order:
        if not budget.allows_another():
            break
        progress(f"{name}: {unit}: only it quantized, then all but it")
        only = evaluate(tuple(n for n in names if n != unit), quantize_others=False)
        if not budget.allows_another():
            layers[unit] = dataclasses.replace(layers[unit], only_this=only)
            break
        layers[unit] = dataclasses.replace(layers[unit], only_this=only, all_but_this=evaluate((unit,)))
    ranking = ranked(list(layers.values()))
    known: dict[tuple[str, ...], TaskMetric] = {(s.unit.name,): s.all_but_this for s in ranking
                                                if s.all_but_this is not None}
    proposal = propose([s.unit.name for s in ranking if s.measured], full, evaluate, within_bounds, budget, known)
    result = SensitivityResult(name, kind, bounds_text(kind), units, full, ranking, proposal, budget_s, 0.0)
    if proposal.keep:
        progress(f"{name}: building the fix (keep {', '.join(proposal.keep)} in float) beside full int8")
        result.fixed = _build_fixed(prepared, devices, session, proposal.keep, float_file, float_outputs, roles,
                                    labels, bench)
    result.seconds = time.monotonic() - started
    return result


def _build_fixed(prepared, devices, session: _Session, keep, float_file: Path, float_outputs, roles, labels,
                 bench: BenchSettings) -> FixedModel:
    built = session.ask({"op": "build", "keep": list(keep), "out": str(session.work)})["built"]
    files = {"float": float_file, **{label: Path(b["file"]) for label, b in built.items()}}
    keras = {label: task_metric(read_outputs(Path(b["keras_predictions"])), float_outputs, roles, labels)
             for label, b in built.items()}
    costs = deploy.measure_devices(files, devices, prepared.data.x_eval, labels, roles, prepared.input_names,
                                   session.work / "devices", bench)
    training = next(iter(built.values()))["training"]
    return FixedModel(tuple(keep), files, {v: deploy.file_facts(p) for v, p in files.items()}, keras, costs,
                      training)
