"""The ``openvino`` device: Intel's OpenVINO runtime, which reads .tflite files directly and
runs them on the CPU, an Intel GPU or an NPU (``--openvino-device``). Results are real, never
simulated.

OpenVINO compiles the whole graph or refuses it, so its delegation is all or nothing. Every
OpenVINO call, even listing devices (a GPU or NPU driver can hang), happens in the child
process of ``devices.openvino.worker``.

Float layers compute in the precision asked with ``--openvino-precision`` (f32 by default:
conformance compares kernels, not precisions); what the plugin really used is read back from
each compiled model and stated in the device's description and in every result.
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qat_harness.core.child import run_child
from qat_harness.devices.base import (
    Availability,
    BenchResult,
    BenchSettings,
    Delegation,
    Device,
    DeviceError,
    DeviceOption,
    ModelInputs,
    Role,
    RunResult,
    save_inputs,
)
from qat_harness.devices.openvino.targets import (
    PRECISIONS,
    TARGETS,
    is_listed,
    normalize_precision,
    normalize_target,
    role_for,
)

WORKER = "qat_harness.devices.openvino.worker"
INSTALL_HINT = "pip install 'qat-harness[openvino]'"
QUERY_TIMEOUT_S = 60.0


def short_version(version: str) -> str:
    """'2026.4.1-22982-e213a147257-releases/2026/4' -> '2026.4.1'."""
    return version.split("-", 1)[0]


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


class OpenVinoDevice(Device):
    name = "openvino"
    description = "OpenVINO reading .tflite directly: Intel CPU, GPU or NPU (--openvino-device)"
    role = Role.HOST_CPU  # per instance: GPU and NPU targets are accelerators
    kernel = "openvino"
    options = (
        DeviceOption("target", f"OpenVINO device: {', '.join(TARGETS)} or a numbered one such as GPU.1",
                     flag="--openvino-device", default="CPU"),
        DeviceOption("precision", f"inference precision of float layers: {', '.join(PRECISIONS)} (default "
                                  "f32, for conformance); the report states what the plugin used",
                     flag="--openvino-precision", default="f32"),
    )

    def __init__(self, target: str = "CPU", num_threads: int = 2, precision: str = "f32"):
        self.num_threads = num_threads
        # a bad option is reported by probe() and raised by run(), never at creation
        self.option_error: str | None = None
        try:
            self.target: str = normalize_target(target)
        except ValueError as exc:
            self.target, self.option_error = str(target), str(exc)
        try:
            self.precision: str = normalize_precision(precision)
        except ValueError as exc:
            self.precision, self.option_error = str(precision), self.option_error or str(exc)
        # facts of this instance's target, where other devices declare them for the class
        self.role = role_for(self.target)  # type: ignore[misc]
        self.runs_on_host = self.role is Role.HOST_CPU  # type: ignore[misc]
        self._runtime_facts: dict | None = None

    # --- availability ------------------------------------------------------------------------
    def runtime_facts(self) -> dict:
        """OpenVINO's version, its devices and their properties (asked once, in a child)."""
        if self._runtime_facts is None:
            self._runtime_facts = run_child(WORKER, {"mode": "query", **self._compile_request(self.num_threads)},
                                            QUERY_TIMEOUT_S)
        return self._runtime_facts

    def _unavailable_reason(self) -> str | None:
        if not openvino_installed():
            return f"the openvino package is not installed: {INSTALL_HINT}"
        if self.option_error:
            return self.option_error
        facts = self.runtime_facts()
        if not is_listed(self.target, facts["available_devices"]):
            listed = ", ".join(facts["available_devices"]) or "none"
            return (f"OpenVINO device '{self.target}' not found; "
                    f"OpenVINO {short_version(facts['version'])} lists: {listed}")
        return None

    def probe(self) -> Availability:
        try:
            problem = self._unavailable_reason()
        except DeviceError as exc:
            return Availability(False, f"OpenVINO is installed but listing its devices failed: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - probe never raises
            return Availability(False, f"probe failed: {type(exc).__name__}: {exc}")
        facts = self._runtime_facts or {}
        details = {"target": self.target, "version": facts.get("version"),
                   "available_devices": facts.get("available_devices"),
                   "inference_precision": facts.get("inference_precision")}
        if problem:
            return Availability(False, problem, details)
        return Availability(True, f"OpenVINO {short_version(facts['version'])}: {self.target} "
                                  f"({self._target_facts().get('full_device_name')}); "
                                  f"devices: {', '.join(facts['available_devices'])}", details)

    def _target_facts(self) -> dict:
        devices = (self._runtime_facts or {}).get("devices", {})
        if self.target == "AUTO":  # OpenVINO picks among all of them per model
            names = [f"{name}: {facts.get('full_device_name')}" for name, facts in devices.items()]
            return {"full_device_name": "AUTO over " + "; ".join(names)}
        matches = [facts for name, facts in devices.items() if is_listed(self.target, [name])]
        return matches[0] if matches else {}

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "runtime": "openvino", "target": self.target,
                     "num_threads": self.num_threads, "performance_hint": "LATENCY",
                     "inference_precision": {"requested": self.precision}}
        try:
            problem = self._unavailable_reason()
        except DeviceError as exc:
            problem = exc.reason
        if problem:
            return {**described, "error": problem}
        facts, target_facts = self.runtime_facts(), self._target_facts()
        capabilities = target_facts.get("optimization_capabilities") or []
        return {**described, "version": facts["version"],
                "available_devices": facts["available_devices"],
                "full_device_name": target_facts.get("full_device_name"),
                "architecture": target_facts.get("architecture"),
                "optimization_capabilities": capabilities,
                # what the plugin computes float layers in when not asked (bf16 where AMX is)
                "plugin_default_precision": target_facts.get("inference_precision_hint"),
                "inference_precision": facts.get("inference_precision"),
                # per model, run/benchmark details list which runtime layers ran in u8/i8
                "int8_kernels": "INT8" in capabilities if capabilities else None}

    # --- running ----------------------------------------------------------------------------
    def _check_runnable(self) -> None:
        if not openvino_installed():
            raise DeviceError(f"the openvino package is not installed: {INSTALL_HINT}", kind="missing-tool")
        if self.option_error:
            raise DeviceError(self.option_error, kind="failed")

    def _compile_request(self, num_threads: int) -> dict:
        return {"target": self.target, "num_threads": num_threads, "precision": self.precision}

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        self._check_runnable()
        with tempfile.TemporaryDirectory(prefix="qat-openvino-") as tmp:
            in_path, out_path = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            save_inputs(in_path, inputs)
            resp = run_child(WORKER, {"mode": "run", **self._compile_request(self.num_threads),
                                      "model": str(Path(model_path).resolve()),
                                      "inputs": str(in_path), "outputs": str(out_path)}, timeout_s)
            with np.load(out_path, allow_pickle=False) as npz:
                outputs = [npz[f"out_{k}"] for k in range(len(npz.files))]
        execution = resp["execution"]
        details = {"target": self.target, "execution_devices": execution["execution_devices"],
                   "inference_precision": execution["inference_precision"]}
        if resp["requantized"]:
            details["requantized"] = resp["requantized"]
        return RunResult(outputs=outputs[0], extra_outputs=outputs[1:], delegation=delegation(execution),
                         details=details)

    def benchmark(self, models: dict[str, Path], sample: np.ndarray | dict[str, np.ndarray],
                  settings: BenchSettings) -> BenchResult:
        self._check_runnable()
        with tempfile.TemporaryDirectory(prefix="qat-openvino-bench-") as tmp:
            inputs = {}
            for label in models:
                inputs[label] = str(Path(tmp) / f"{label}.npz")
                save_inputs(Path(inputs[label]), sample[label] if isinstance(sample, dict) else sample)
            resp = run_child(WORKER, {"mode": "bench", **self._compile_request(settings.num_threads),
                                      "models": {k: str(Path(v).resolve()) for k, v in models.items()},
                                      "inputs": inputs, "warmup_runs": settings.warmup_runs,
                                      "min_runs": settings.min_runs, "min_seconds": settings.min_seconds,
                                      "max_runs": settings.max_runs}, settings.timeout_s)
        execution = resp["execution"]
        return BenchResult(times_ms=resp["times_ms"], first_invoke_ms=resp["first_invoke_ms"],
                           delegation={k: delegation(v) for k, v in execution.items()},
                           details={"blocks": resp["blocks"], "target": self.target,
                                    "num_threads": settings.num_threads,
                                    "execution_devices": {k: v["execution_devices"] for k, v in execution.items()},
                                    "inference_precision": {k: v["inference_precision"]
                                                            for k, v in execution.items()}})


def delegation(execution: dict) -> Delegation:
    """OpenVINO compiled the whole graph (it refuses a graph it cannot run whole)."""
    return Delegation(backend="openvino", ops_total=execution["ops_total"],
                      ops_delegated=execution["ops_total"],
                      details={"execution_devices": execution["execution_devices"],
                               "inference_precision": execution["inference_precision"],
                               "runtime_layers_by_precision": execution["runtime_layers_by_precision"]})
