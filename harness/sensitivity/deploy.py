"""The fixed model beside full int8 on each device: agreement and accuracy (the task metric),
file size and latency, measured with the harness's own functions (``measure.outputs``,
``measure.latency``, ``core.tflite``). A device that cannot take a model mixing float and int8
ops (``Device.mixed_precision_cost``) is not measured; what the mix costs there is said."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import BenchSettings, Device
from qat_harness.measure import latency, outputs
from qat_harness.measure.agreement import real_values
from qat_harness.measure.output_kinds import OutputRole
from qat_harness.preparation import take
from qat_harness.sensitivity.measure import TaskMetric, task_metric
from qat_harness.variants import Variant

FULL = "qat_int8"
FIXED = "qat_mixed"
_NON_COMPUTE = {"QUANTIZE", "DEQUANTIZE"}


@dataclasses.dataclass(frozen=True)
class FileFacts:
    size_bytes: int
    float_ops: tuple[str, ...]       # ops computing in float32 (QUANTIZE / DEQUANTIZE not counted)
    ops: int


def file_facts(path: Path) -> FileFacts:
    info = tflite.inspect_model(path)
    floating = tuple(op.opcode for op in info.ops if op.opcode not in _NON_COMPUTE
                     and any(i >= 0 and info.tensor(i).dtype == "float32" for i in op.inputs))
    return FileFacts(info.size_bytes, floating, len(info.ops))


@dataclasses.dataclass(frozen=True)
class DeviceCost:
    """Both files on one device; ``not_measured``: why not (a device without mixed models)."""
    device: str
    metrics: dict[str, TaskMetric] = dataclasses.field(default_factory=dict)   # FULL / FIXED -> metric
    median_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    not_measured: str | None = None

    @property
    def speed(self) -> float | None:
        """How many times as fast the fixed file runs as full int8 (below 1: slower)."""
        if FULL in self.median_ms and FIXED in self.median_ms and self.median_ms[FIXED] > 0:
            return self.median_ms[FULL] / self.median_ms[FIXED]
        return None


def measure_devices(files: Mapping[str, Path], devices: Mapping[str, Device], x_eval, labels: np.ndarray | None,
                    roles: list[OutputRole], input_names: list[str] | None, workdir: Path,
                    settings: BenchSettings, timeout_s: float = 300.0) -> list[DeviceCost]:
    """``files``: float, FULL and FIXED .tflite. The float file is the reference of the
    agreement, run on each device like the others."""
    infos = {v: tflite.inspect_model(p) for v, p in files.items()}
    costs = []
    for name, dev in devices.items():
        if dev.mixed_precision_cost:
            costs.append(DeviceCost(name, not_measured=dev.mixed_precision_cost))
            continue
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        prepared = outputs.prepare_files(dev, files, folder)
        ran = outputs.run_files(dev, prepared.paths, lambda v: tflite.model_inputs(infos[v], x_eval, input_names),
                                {v: len(infos[v].outputs) for v in prepared.paths}, timeout_s)
        errors = {**prepared.errors, **ran.errors}
        real = {v: [real_values(o, infos[v].tensor(t)) for o, t in zip(outs, infos[v].outputs)]
                for v, outs in ran.outputs.items()}
        metrics = {}
        if Variant.FLOAT in real:
            metrics = {v: task_metric(real[v], real[Variant.FLOAT], roles, labels) for v in (FULL, FIXED) if v in real}
        medians = {}
        timed = {v: p for v, p in prepared.paths.items() if v in (FULL, FIXED)}
        if len(timed) == 2:
            samples = {v: tflite.model_inputs(infos[v], take(x_eval, 1), input_names) for v in timed}
            try:
                measured = latency.time_variants(dev, timed, samples, settings, FIXED)
                medians = {v: s.median_ms for v, s in measured.summaries.items() if s.median_ms is not None}
            except DeviceError as exc:
                errors["time"] = f"{exc.kind}: {exc.reason}"
        costs.append(DeviceCost(name, metrics, medians, errors))
    return costs
