"""The matrix's devices, opened once for the whole run (``MatrixDevices``), and a probe's int8
.tflite on each of them: the ``DEV:runs``, ``DEV:delegated`` and ``DEV:numeric`` cells, the
reference kernels first since their outputs are every other device's oracle, and the trace of a
numeric WARN/FAIL cell (at which op the device departs from the reference kernels)."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np

from qat_harness.core.errors import DeviceError
from qat_harness.core.tflite import ModelInfo, model_inputs
from qat_harness.devices import registry
from qat_harness.devices.base import Device, Role, RunResult
from qat_harness.devices.device_set import DeviceSet
from qat_harness.layers.cells import NumericDetails, StageCell, cell, device_stage_keys
from qat_harness.layers.stages import FAIL, PASS, SKIP, WARN, delegated_stage, device_error_verdict, numeric_stage
from qat_harness.layers.tree import MatrixDeviceInfo, ProbeEntry
from qat_harness.record.folder import safe_name

RUN_TIMEOUT_S = 120.0
ORACLE = "cpu-ref"   # what the reference kernels are called when the set cannot give them


class MatrixDevices:
    """The requested devices: each available one with a lock (probes run in several threads, a
    device runs one model at a time), the reference kernels, and why the others are not there."""

    def __init__(self, names: list[str], device_set: DeviceSet):
        self.names, self.device_set = list(names), device_set
        self.open: dict[str, Device] = {n: device_set[n] for n in names if device_set.availability[n].available}
        self.unavailable = {n: device_set.availability[n].reason for n in names if n not in self.open}
        self.oracle = device_set.oracle()
        self.oracle_name = self.oracle.name if self.oracle is not None else ORACLE
        self.oracle_note = "" if self.oracle is not None else (device_set.oracle_problem or "no oracle device")
        self.locks = {n: threading.Lock() for n in [*self.open, self.oracle_name]}

    @classmethod
    def open_all(cls, names: list[str], options: dict[str, dict[str, Any]], opened: DeviceSet | None) -> MatrixDevices:
        """``opened``: the caller's set, already probed; otherwise the devices are opened here.
        An unavailable device stays in the matrix, with SKIP cells giving its reason."""
        return cls(names, opened or DeviceSet.open(names, per_device_options=options, num_threads=2,
                                                   require_available=False))

    def info(self) -> dict[str, MatrixDeviceInfo]:
        out = {}
        for name in self.names:
            avail, dev_class = self.device_set.availability[name], registry.device_class(name)
            simulated = self.open[name].simulated if name in self.open else dev_class.simulated
            out[name] = MatrixDeviceInfo(avail.available, avail.reason, simulated, dev_class.role)
        return out

    def recipe_kernels(self) -> tuple[list[str], dict[str, str], set[str]]:
        """(the kernels that run each recipe's file, why a listed device runs none, the simulated ones)."""
        skipped = {n: f"device not available: {why}" for n, why in self.unavailable.items()}
        kernels = []
        for name, dev in self.open.items():
            if dev.role is Role.OVERHEAD:
                skipped[name] = f"{name} runs no kernel (it measures the harness's overhead)"
            else:
                kernels.append(name)
        if self.oracle is not None and self.oracle_name not in kernels:
            kernels.append(self.oracle_name)  # the reference kernels: always one of the kernels compared
        return kernels, skipped, {n for n, d in self.open.items() if d.simulated}

    def _device(self, name: str) -> Device:
        dev = self.open.get(name) or (self.oracle if name == self.oracle_name else None)
        if dev is None:
            raise DeviceError(f"{name} is not open", kind="unsupported")
        return dev

    def run_file(self, name: str, model_path: Path, inputs: np.ndarray, workdir: Path) -> RunResult:
        """Run a .tflite on one device (or the reference kernels), isolated like every device
        run: a DeviceError says why not."""
        dev = self._device(name)
        workdir.mkdir(parents=True, exist_ok=True)
        with self.locks[name]:
            path, _ = dev.prepare(model_path, workdir)
            return dev.run(path, inputs, RUN_TIMEOUT_S)

    def oracle_outputs(self, model_path: Path, xq: np.ndarray) -> tuple[np.ndarray | None, str]:
        if self.oracle is None:
            return None, self.oracle_note
        try:
            with self.locks[self.oracle_name]:
                return np.asarray(self.oracle.run(model_path, xq, RUN_TIMEOUT_S).outputs), ""
        except DeviceError as exc:
            return None, f"{self.oracle_name} failed: {exc.kind}: {exc.reason}"

    def close(self) -> None:
        self.device_set.close()


@dataclasses.dataclass(frozen=True)
class ProbeFile:
    """A probe's int8 .tflite with what its device cells are judged on."""
    path: Path
    info: ModelInfo
    x: np.ndarray               # the probe's float inputs
    keras_out: np.ndarray       # the QAT Keras model's outputs on them


def skip_device_cells(entry: ProbeEntry, names: list[str], reason: str) -> None:
    for name in names:
        for key in device_stage_keys(name):
            entry.stages[key] = cell(SKIP, reason)


def run_on_devices(devices: MatrixDevices, entry: ProbeEntry, probe: ProbeFile, out_dir: Path) -> None:
    """Every device's cells of one probe; ``out_dir``: the matrix folder (traces go below it)."""
    xq = model_inputs(probe.info, probe.x)
    entry.details.numeric = {}
    if devices.oracle_name in devices.open:
        oracle_out, oracle_note = None, f"{devices.oracle_name} did not run"
    else:
        oracle_out, oracle_note = devices.oracle_outputs(probe.path, xq)
    for name in sorted(devices.names, key=lambda n: n != devices.oracle_name):
        out = _on_device(devices, entry, name, probe, xq, oracle_out, oracle_note, out_dir)
        if name == devices.oracle_name:
            oracle_out = out


def _on_device(devices: MatrixDevices, entry: ProbeEntry, name: str, probe: ProbeFile, xq: np.ndarray,
               oracle_out: np.ndarray | None, oracle_note: str, out_dir: Path) -> np.ndarray | None:
    runs, delegated, numeric = device_stage_keys(name)
    if name in devices.unavailable:
        skip_device_cells(entry, [name], f"device not available: {devices.unavailable[name]}")
        return None
    dev = devices.open[name]
    workdir = probe.path.parent / safe_name(name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with devices.locks[name]:
            path, prepared = dev.prepare(probe.path, workdir)
            run = dev.run(path, xq, RUN_TIMEOUT_S)
    except DeviceError as exc:
        entry.stages[runs] = cell(device_error_verdict(exc), f"{exc.kind}: {exc.reason}")
        entry.stages[delegated] = cell(SKIP, "did not run")
        entry.stages[numeric] = cell(SKIP, "did not run")
        return None
    outputs = np.asarray(run.outputs)
    numeric_cell = numeric_stage(dev.role, outputs, oracle_out, oracle_note, probe.keras_out,
                                 probe.info.tensor(probe.info.outputs[0]))
    assert entry.details.numeric is not None  # set by run_on_devices
    entry.details.numeric[name] = (numeric_cell.details if isinstance(numeric_cell.details, NumericDetails)
                                   else NumericDetails())
    if numeric_cell.verdict in (WARN, FAIL) and dev.role is not Role.ORACLE:
        numeric_cell = _traced(numeric_cell, devices, entry.name, name, probe, out_dir)
    cells = {runs: cell(PASS, f"ran {len(xq)} inputs"),
             delegated: delegated_stage(dev.role, run.delegation or prepared), numeric: numeric_cell}
    simulated = run.simulated or dev.simulated  # never let a simulator pass for hardware
    entry.stages.update({k: c.as_simulated() if simulated else c for k, c in cells.items()})
    return outputs


def _traced(numeric: StageCell, devices: MatrixDevices, probe_name: str, name: str, probe: ProbeFile,
            out_dir: Path) -> StageCell:
    """The numeric cell with the trace that says at which op the device departs from the
    reference kernels (a probe has no float .tflite: the device stage only)."""
    from qat_harness.trace.service import trace_cell

    folder = out_dir / "traces" / safe_name(probe_name) / safe_name(name)
    try:
        with devices.locks[name]:
            result = trace_cell(probe.path, probe.x, name, devices.open[name], folder)
    except Exception as exc:  # noqa: BLE001 - a trace explains a cell; it never costs the matrix
        return dataclasses.replace(numeric, trace_error=f"{type(exc).__name__}: {exc}"[:300])
    md = result.markdown or Path("")
    try:
        link = md.relative_to(out_dir)
    except ValueError:
        link = md
    c = result.culprit
    return dataclasses.replace(numeric, trace=str(link),
                               trace_culprit=f"op {c.op} {c.opcode} ({c.layer}), {c.stage}" if c else "none")
