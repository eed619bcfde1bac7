"""Host-CPU adapters on LiteRT: ``cpu`` (XNNPACK, LiteRT's default CPU path), ``cpu-builtin``
(LiteRT's built-in kernels without delegates) and ``cpu-ref`` (the reference kernels, slow but
simple: the numeric oracle the other devices are compared with). ``null`` runs nothing and
measures the harness's own per-run overhead."""
from __future__ import annotations

import platform
import re
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from qat_harness.core import timing
from qat_harness.core.child import ChildFailure, ServingChild, run_child
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
from qat_harness.devices.litert import runtime

WORKER = "qat_harness.devices.litert.worker"
BLOCK_WORKER = "qat_harness.devices.litert.block_worker"
RUNTIME_OPTION = DeviceOption(
    "litert_runtime", "folder holding the LiteRT package to load instead of the installed one (e.g. made by "
                      "pip install --target DIR ai-edge-litert==X, to time another build)",
    flag="--litert-runtime")


class LiteRTDevice(Device):
    resolver = "auto"
    kernel = "xnnpack"
    #: the child module that loads and runs the model (CompiledModel's in ``devices.litert.compiled``)
    worker = WORKER
    #: how the block worker loads a model: LiteRT's Interpreter, or its CompiledModel
    api = "interpreter"
    runs_on_host = True
    options: ClassVar[tuple[DeviceOption, ...]] = (RUNTIME_OPTION,)

    def __init__(self, num_threads: int = 2, litert_runtime: str | None = None):
        self.num_threads = num_threads
        #: the folder the runtime is imported from (None: the installed one), and what it is
        self.runtime_root: Path | None = None
        self.runtime_package: runtime.RuntimePackage | None = None
        self.option_error: str | None = None   # reported by probe(), raised by run(), never at creation
        try:
            self.runtime_package = runtime.in_folder(litert_runtime) if litert_runtime else runtime.installed()
            self.runtime_root = self.runtime_package.root if litert_runtime and self.runtime_package else None
        except ValueError as exc:
            self.option_error = str(exc)

    def probe(self) -> Availability:
        if self.option_error:
            return Availability(False, self.option_error)
        if self.runtime_package is None:
            return Availability(False, "no LiteRT runtime: pip install ai-edge-litert")
        return Availability(True, f"{self.runtime_package.module} on {platform.machine()}",
                            {"runtime": self.runtime_package.module})

    def describe(self) -> dict:
        return {**super().describe(), **(self.runtime_package.facts() if self.runtime_package else {}),
                "resolver": self.resolver, "num_threads": self.num_threads}

    def _request(self, **kw) -> dict:
        return {"resolver": self.resolver, **self._common_request(), **kw}

    def _common_request(self) -> dict:
        if self.option_error:
            raise DeviceError(self.option_error, kind="failed")
        return {"num_threads": self.num_threads, "runtime_root": str(self.runtime_root) if self.runtime_root else None}

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

    def benchmark_runtimes(self, models: dict[str, Path], runtimes: dict[str, Path | None], sample,
                           settings: BenchSettings) -> BenchResult:
        """Time ``models`` each loaded by its own runtime (``runtimes``: label -> the folder to
        import LiteRT from, None: this device's), in the one ABBA schedule: one long-lived child
        per runtime holds its models, and each block is asked of the child of that block's
        label. What a new runtime costs, measured beside the old one on the same files, in the
        same minutes. A child that imported another runtime than asked is an error, not a
        comparison of a runtime with itself."""
        def root_of(label: str) -> str | None:
            chosen = runtimes.get(label) or self.runtime_root
            return str(chosen) if chosen else None

        roots = {label: root_of(label) for label in models}
        children: dict[str | None, ServingChild] = {}
        with tempfile.TemporaryDirectory(prefix="qat-runtimes-") as tmp:
            try:
                first: dict[str, float] = {}
                for root in dict.fromkeys(roots.values()):
                    labels = [label for label in models if roots[label] == root]
                    inputs = {}
                    for label in labels:
                        inputs[label] = str(Path(tmp) / f"{len(inputs)}-{len(children)}.npz")
                        save_inputs(Path(inputs[label]), sample[label] if isinstance(sample, dict) else sample)
                    # one session for both: with the kernel's autogroup, children in sessions of their own
                    # each met another job's load with a share of its own, and the same runtime timed
                    # against itself came out from 0.76x to 2.2x (2 vCPUs, 1-2 spinning processes of
                    # another session); in the harness's session, 0.93x to 1.17x
                    child = children[root] = ServingChild(BLOCK_WORKER, Path(tmp) / f"child-{len(children)}.log",
                                                          own_session=False)
                    answer = _answer(child, {**self._request(op="load", api=self.api), "runtime_root": root,
                                             "models": {label: str(Path(models[label]).resolve()) for label in labels},
                                             "inputs": inputs}, settings.timeout_s)
                    _check_loaded(answer["runtime"], root)
                    first.update(answer["first_invoke_ms"])

                def run_block(label: str, runs: int) -> list[float]:
                    return _answer(children[roots[label]], {"op": "block", "label": label, "runs": runs},
                                   settings.timeout_s)["times_ms"]

                timed = timing.run_schedule(list(models), run_block, timing.Schedule(
                    warmup_runs=settings.warmup_runs, min_runs=settings.min_runs,
                    min_seconds=settings.min_seconds, max_runs=settings.max_runs))
            finally:
                for child in children.values():
                    child.close()
        return BenchResult(times_ms=timed["times_ms"], first_invoke_ms=first,
                           details={"blocks": timed["blocks"], "runtimes": roots})

    def _delegation(self, ops: dict) -> Delegation | None:
        return None


def _answer(child: ServingChild, request: dict, timeout_s: float) -> dict:
    try:
        answer = child.run(request, timeout_s)
    except ChildFailure as exc:
        raise DeviceError(exc.reason, kind="timeout" if "timed out" in exc.reason else "crash") from None
    if "error" in answer:
        raise DeviceError(" ".join(str(answer["error"]).split()), kind="failed")
    return answer


def _check_loaded(loaded: dict, root: str | None) -> None:
    """The child imported LiteRT from ``root`` (when one was asked for)."""
    where = loaded.get("file")
    if root and not (where and Path(where).resolve().is_relative_to(Path(root).resolve())):
        raise DeviceError(f"asked to load LiteRT from {root}, the child imported {where}", kind="failed")


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

    def __init__(self, num_threads: int = 1, litert_runtime: str | None = None):
        super().__init__(1, litert_runtime)


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
