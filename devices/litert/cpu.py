"""Host-CPU adapters on LiteRT: ``cpu`` (XNNPACK, LiteRT's default CPU path), ``cpu-builtin``
(LiteRT's built-in kernels without delegates) and ``cpu-ref`` (the reference kernels, slow but
simple: the numeric oracle the other devices are compared with). ``null`` runs nothing and
measures the harness's own per-run overhead."""
from __future__ import annotations

import importlib.util
import platform
import re
import tempfile
from pathlib import Path

import numpy as np

from qat_harness.core.child import run_child
from qat_harness.devices.base import (
    Availability,
    BenchResult,
    BenchSettings,
    Delegation,
    Device,
    DeviceError,
    ModelInputs,
    Role,
    RunResult,
    save_inputs,
)

WORKER = "qat_harness.devices.litert.worker"


def litert_runtime() -> str | None:
    """Which LiteRT Python runtime is importable: ai-edge-litert first, tflite_runtime as the
    fallback (it needs numpy 1.x, so usually only in an environment of its own)."""
    for mod in ("ai_edge_litert", "tflite_runtime"):
        if importlib.util.find_spec(mod) is not None:
            return mod
    return None


class LiteRTDevice(Device):
    resolver = "auto"
    kernel = "xnnpack"
    #: the child module that loads and runs the model (CompiledModel's in ``devices.litert.compiled``)
    worker = WORKER
    runs_on_host = True

    def __init__(self, num_threads: int = 2):
        self.num_threads = num_threads

    def probe(self) -> Availability:
        rt = litert_runtime()
        if rt is None:
            return Availability(False, "no LiteRT runtime: pip install ai-edge-litert")
        return Availability(True, f"{rt} on {platform.machine()}", {"runtime": rt})

    def describe(self) -> dict:
        return {**super().describe(), "runtime": litert_runtime(), "resolver": self.resolver,
                "num_threads": self.num_threads}

    def _request(self, **kw) -> dict:
        return {"resolver": self.resolver, "num_threads": self.num_threads, **kw}

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        with tempfile.TemporaryDirectory(prefix="qat-run-") as tmp:
            in_path, out_path = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            save_inputs(in_path, inputs)
            try:
                resp = run_child(self.worker, self._request(mode="run", model=str(Path(model_path).resolve()),
                                                            inputs=str(in_path), outputs=str(out_path)),
                                 timeout_s)
            except DeviceError as exc:
                raise _explain_custom_ops(exc) from None
            try:
                with np.load(out_path, allow_pickle=False) as npz:
                    outputs = [npz[f"out_{k}"] for k in range(len(npz.files))]
            except ValueError as exc:   # an output no plain array holds (a resource or variant tensor)
                raise DeviceError(f"{Path(model_path).name}: an output cannot be read as an array: {exc}") from None
        if not outputs:
            raise DeviceError(f"{Path(model_path).name} has no outputs: there is nothing to compare")
        return RunResult(outputs=outputs[0], extra_outputs=outputs[1:],
                         delegation=self._delegation(resp.get("ops", {})))

    def benchmark(self, models: dict[str, Path], sample, settings: BenchSettings) -> BenchResult:
        with tempfile.TemporaryDirectory(prefix="qat-bench-") as tmp:
            inputs = {}
            for label in models:
                inputs[label] = str(Path(tmp) / f"{label}.npz")
                save_inputs(Path(inputs[label]), sample[label] if isinstance(sample, dict) else sample)
            req = self._request(mode="bench", models={k: str(Path(v).resolve()) for k, v in models.items()},
                                inputs=inputs, warmup_runs=settings.warmup_runs,
                                min_runs=settings.min_runs, min_seconds=settings.min_seconds,
                                max_runs=settings.max_runs, num_threads=settings.num_threads)
            try:
                resp = run_child(self.worker, req, settings.timeout_s)
            except DeviceError as exc:
                raise _explain_custom_ops(exc) from None
        details = {"blocks": resp["blocks"]} if "blocks" in resp else {}
        return BenchResult(times_ms=resp["times_ms"], first_invoke_ms=resp["first_invoke_ms"],
                           delegation={k: self._delegation(v) for k, v in resp.get("ops", {}).items()},
                           details=details)

    def _delegation(self, ops: dict) -> Delegation | None:
        return None


def _op_counts(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _explain_custom_ops(exc: DeviceError) -> DeviceError:
    """LiteRT's 'unresolved custom op' said as what to do about it."""
    match = re.search(r"unresolved custom op: ([\w-]+(?:\.[\w-]+)*)", exc.reason)
    if not match:
        return exc
    op = match.group(1)
    if op == "edgetpu-custom-op":  # only edgetpu_compiler puts a whole graph in one custom op
        return DeviceError(f"the model's work is in custom op '{op}', which LiteRT on the host CPU cannot run "
                           "(a model compiled by edgetpu_compiler: run it with --devices edgetpu, or give "
                           "the uncompiled .tflite)", kind="unsupported")
    return DeviceError(f"the model uses custom op '{op}', which LiteRT's built-in and reference kernels do "
                       "not implement (run it where that op is registered, or give a model without it)",
                       kind="unsupported")


class CpuDevice(LiteRTDevice):
    """LiteRT with its default delegate (XNNPACK) on the host CPU."""
    name = "cpu"
    description = "host CPU, LiteRT + XNNPACK"
    role = Role.HOST_CPU

    def _delegation(self, ops: dict) -> Delegation | None:
        if "ops_total" not in ops:
            return None
        return Delegation(backend="xnnpack", ops_total=ops["ops_total"],
                          ops_delegated=len(ops["delegated"]),
                          fallback=[(name, "not taken by XNNPACK: builtin kernel")
                                    for name in ops["cpu_ops"]],
                          details={"partitions": ops["partitions"],
                                   "delegated_ops": _op_counts(ops.get("delegated_ops", []))})


class CpuRefDevice(LiteRTDevice):
    """LiteRT's reference kernels: the numeric oracle. They are single-threaded whatever
    ``num_threads`` the run uses."""
    name = "cpu-ref"
    description = "host CPU, LiteRT reference kernels (numeric oracle)"
    role = Role.ORACLE
    resolver = "ref"
    kernel = "reference"

    def __init__(self, num_threads: int = 1):
        super().__init__(1)


class BuiltinKernelsDevice(LiteRTDevice):
    """LiteRT's built-in (optimized) kernels without the default XNNPACK delegate: the third
    kernel of the cross-kernel claim."""
    name = "cpu-builtin"
    description = "host CPU, LiteRT built-in kernels without delegates"
    role = Role.HOST_CPU
    resolver = "builtin-no-delegates"
    kernel = "builtin"


class NullDevice(Device):
    """Runs nothing: its latency is the harness's own overhead per run (as MLPerf's null
    backend). Outputs are zeros, so it is never used for agreement."""
    name = "null"
    description = "runs nothing: measures harness overhead"
    role = Role.OVERHEAD
    runs_on_host = True

    def __init__(self, num_threads: int = 2):
        self.num_threads = num_threads

    def probe(self) -> Availability:
        return Availability(True, "always available (runs nothing)")

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        raise DeviceError("the null device runs nothing; use it for overhead only", kind="unsupported")

    def benchmark(self, models, sample, settings) -> BenchResult:
        import time
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(settings.min_runs):
            for k in models:
                t0 = time.perf_counter()
                np.asarray(sample[k] if isinstance(sample, dict) else sample).copy()
                times[k].append((time.perf_counter() - t0) * 1e3)
        return BenchResult(times_ms=times)
