"""``BenchmarkModelDevice``: an Android phone reached through an adb server, models run by
TFLite's ``benchmark_model`` with one delegate. The NNAPI, GPU and CPU (XNNPACK) devices are
small subclasses that name their delegate (``delegate_kind``, ``delegate_flags``) and what it
means for the report (``warnings``, ``delegation``).

- ``run``: one ``benchmark_model`` invocation per example (``--input_layer_value_files`` with
  the example's raw bytes, ``--output_filepath`` pulled back: the raw bytes of every output
  tensor, concatenated). Each invocation loads the model and applies the delegate again, so
  this costs about (model load + delegate preparation) per example; invocations are chained
  ``run_batch`` per adb shell command (and inputs pushed / outputs pulled per batch in one sync
  session) so the adb round trips do not add up.
- ``benchmark``: ``benchmark_model`` reports only aggregates (avg/std/min/max of a loop), never
  per-run times. Each label is run ``bench_invocations`` times, interleaved (a, b, a, b, ...),
  and each invocation's average is one sample of ``times_ms``; the aggregates of every
  invocation are kept in ``details``. A first, untimed invocation per label runs with
  ``--enable_op_profiling=true`` to see which node types stayed on the CPU.

A result from the test suite's simulated phone carries ``simulated=True``.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from qat_harness.core.errors import DeviceError
from qat_harness.devices.android import benchmark_output as bmo
from qat_harness.devices.android import benchmark_tool as tool
from qat_harness.devices.android.adb import quote_command
from qat_harness.devices.android.delegation import DelegateKind, account
from qat_harness.devices.android.model_info import ModelInfo, TensorInfo, read_model_info
from qat_harness.devices.android.phone import BENCHMARK_MODEL_ENV, Phone, binary_problem, int8_cpu_warnings
from qat_harness.devices.android.remote import RemoteFolder
from qat_harness.devices.base import (
    Availability,
    BenchResult,
    BenchSettings,
    Delegation,
    Device,
    DeviceOption,
    ModelInputs,
    RunResult,
    TimingProtocol,
)

# Every Android device declares these identically: devices that share an option share its flag.
SERIAL = DeviceOption("serial", "Android device serial", flag="--serial", env="ANDROID_SERIAL")
BENCHMARK_MODEL = DeviceOption("benchmark_model", "path of TFLite's Android benchmark_model binary",
                               flag="--benchmark-model", env=BENCHMARK_MODEL_ENV)
BENCH_INVOCATIONS = DeviceOption("bench_invocations", "benchmark_model invocations per model when timing",
                                 flag="--android-bench-invocations", type=int, default=10)
RUN_BATCH = DeviceOption("run_batch", "examples per adb shell command when evaluating",
                         flag="--android-run-batch", type=int, default=32)
ANDROID_OPTIONS = (SERIAL, BENCHMARK_MODEL, BENCH_INVOCATIONS, RUN_BATCH)

SAMPLING_METHOD = ("benchmark_model reports aggregates only, never per-run times: each sample is the "
                   "average of one invocation")


class BenchmarkModelDevice(Device):
    """One phone, one delegate. Subclasses set ``delegate_kind`` and ``delegate_flags``."""

    delegate_kind: ClassVar[DelegateKind]

    def __init__(self, serial: str | None = None, benchmark_model: str | None = None, num_threads: int = 2,
                 bench_invocations: int = 10, run_batch: int = 32, env: dict | None = None):
        env = dict(os.environ if env is None else env)
        self.phone = Phone(serial, env)
        self.remote = RemoteFolder(self.phone)
        self.benchmark_model = benchmark_model or env.get(BENCHMARK_MODEL_ENV) or None
        self.num_threads = num_threads
        self.bench_invocations = max(1, int(bench_invocations))
        self.run_batch = max(1, int(run_batch))

    # --- the delegate hook ------------------------------------------------------------------

    def delegate_flags(self) -> list[str]:
        """benchmark_model flags that apply this device's delegate."""
        raise NotImplementedError

    def required_flags(self) -> Sequence[str]:
        """Flag prefixes the binary must understand; one it ignores is a missing-tool error."""
        return [f.split("=", 1)[0] for f in self.delegate_flags()] + ["--output_filepath"]

    def warnings(self) -> list[str]:
        """What the phone means for this delegate and int8 models (``describe``)."""
        return []

    def nothing_taken_reason(self, info: ModelInfo) -> str:
        return f"{self.delegate_kind.label} took no node of the graph"

    def delegation(self, parsed: bmo.BenchmarkOutput, info: ModelInfo) -> Delegation:
        """One invocation's output -> how much of the graph the delegate ran."""
        deleg = account(self.delegate_kind, parsed, info, self.nothing_taken_reason(info))
        deleg.details["simulated"] = self.simulated
        return deleg

    # --- compatibility names (the phone and remote folder own these) --------------------------

    @property
    def serial(self) -> str | None:
        return self.phone.serial

    @property
    def requested_serial(self) -> str | None:
        return self.phone.requested_serial

    @property
    def remote_dir(self) -> str:
        return self.remote.path

    @property
    def remote_binary(self) -> str:
        return self.remote.binary

    @property
    def simulated(self) -> bool:  # type: ignore[override]
        return self.phone.simulated

    # --- availability and description -----------------------------------------------------------

    def _ready(self) -> str:
        serial = self.phone.select()
        problem = binary_problem(self.benchmark_model, self.phone.properties())
        if problem:
            raise DeviceError(problem[1], kind=problem[0])
        return serial

    def probe(self) -> Availability:
        try:
            serial = self._ready()
        except DeviceError as exc:
            return Availability(False, exc.reason, {"kind": exc.kind})
        sim = " [simulated by the test suite]" if self.simulated else ""
        return Availability(True, f"{self.phone.summary()}, benchmark_model {self.benchmark_model}{sim}",
                            {"serial": serial, "simulated": self.simulated})

    def describe(self) -> dict:
        address = self.phone.address
        d = {"name": self.name, "role": self.role.value, "delegate": self.delegate_kind.backend,
             "delegate_flags": self.delegate_flags(), "simulated": self.simulated,
             "adb_server": str(address) if address else None,
             "adb_server_source": address.source if address else None,
             "benchmark_model": self.benchmark_model, "num_threads": self.num_threads}
        try:
            d.update(self.phone.facts())
        except DeviceError as exc:
            d.update(available=False, error=f"{exc.kind}: {exc.reason}")
            return d
        d.update(available=True, simulated=self.simulated, warnings=self.warnings())
        return d

    def cpu_warnings(self) -> list[str]:
        return int8_cpu_warnings(self.phone.cpu_info())

    # --- running ------------------------------------------------------------------------------

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        deadline = time.monotonic() + timeout_s
        serial = self._ready()
        assert self.benchmark_model is not None  # _ready() raises when no binary is configured
        info = _single_input_model(model_path, self.name)
        tin = info.inputs[0]
        examples = _examples(np.asarray(inputs), tin)
        run_dir = self.remote.new_run_dir()
        remote_model = f"{run_dir}/model.tflite"
        rows, first = [], None
        try:
            self.remote.ensure_binary(Path(self.benchmark_model), deadline)
            self.remote.push([(Path(model_path), remote_model, 0o644)], deadline)
            for start in range(0, len(examples), self.run_batch):
                idx = list(range(start, min(len(examples), start + self.run_batch)))
                self.remote.push([(examples[i].tobytes(), f"{run_dir}/in{i}.bin", 0o644) for i in idx], deadline)
                runs = [tool.Invocation(remote_model, tin, f"{run_dir}/in{i}.bin", self.num_threads, warmup_runs=0,
                                        runs=1, profile=(i == 0), output_file=f"{run_dir}/out{i}.bin") for i in idx]
                for i, (rc, text) in zip(idx, self._invoke(runs, deadline)):
                    parsed = tool.checked_output(rc, text, f"example {i}", self.required_flags())
                    first = first or parsed
                outs = self.remote.pull([f"{run_dir}/out{i}.bin" for i in idx], deadline)
                for i in idx:
                    rows.append(self._output_row(outs[f"{run_dir}/out{i}.bin"], info, i, deadline))
                self.remote.shell(quote_command(["rm", "-f"] + [f"{run_dir}/{k}{i}.bin" for i in idx
                                                                     for k in ("in", "out")]), deadline)
        finally:
            self.remote.remove(run_dir)
        return RunResult(outputs=np.stack(rows) if rows else np.empty((0,), info.outputs[0].dtype),
                         delegation=self.delegation(first, info) if first else None, simulated=self.simulated,
                         details={"serial": serial, "invocations": len(rows), "one_invocation_per_example": True,
                                  "accelerators_available": first.accelerators if first else []})

    def benchmark(self, models: dict[str, Path], sample, settings: BenchSettings) -> BenchResult:
        deadline = time.monotonic() + settings.timeout_s
        serial = self._ready()
        assert self.benchmark_model is not None  # _ready() raises when no binary is configured
        labels = list(models)
        infos = {label: _single_input_model(models[label], self.name) for label in labels}
        run_dir = self.remote.new_run_dir()
        remote = {label: (f"{run_dir}/m{k}.tflite", f"{run_dir}/in{k}.bin") for k, label in enumerate(labels)}
        invocations = self.bench_invocations
        runs = max(1, math.ceil(settings.min_runs / invocations))
        min_secs = settings.min_seconds / invocations
        times: dict[str, list[float]] = {label: [] for label in labels}
        per_invocation: dict[str, list[dict]] = {label: [] for label in labels}
        accelerators: list[str]
        first_ms, delegation, profiles, accelerators = {}, {}, {}, []
        try:
            self.remote.ensure_binary(Path(self.benchmark_model), deadline)
            files = []
            for label in labels:
                x = sample[label] if isinstance(sample, dict) else sample
                example = _examples(np.asarray(x), infos[label].inputs[0])[0]
                files += [(Path(models[label]), remote[label][0], 0o644), (example.tobytes(), remote[label][1], 0o644)]
            self.remote.push(files, deadline)

            def invocation(label: str, profile: bool) -> tool.Invocation:
                return tool.Invocation(remote[label][0], infos[label].inputs[0], remote[label][1],
                                       settings.num_threads, warmup_runs=settings.warmup_runs,
                                       runs=1 if profile else runs, min_secs=0.0 if profile else min_secs,
                                       profile=profile)

            # untimed profiling pass: delegation, the node types left on the CPU, first invoke
            for label, (rc, text) in zip(labels, self._invoke([invocation(l, True) for l in labels], deadline)):
                parsed = tool.checked_output(rc, text, f"{label} (profiling run)", self.required_flags())
                delegation[label] = self.delegation(parsed, infos[label])
                first_ms[label] = bmo.us_to_ms(tool.first_invoke_us(parsed))
                profiles[label] = {"node_types": parsed.node_types, "init_us": parsed.init_us,
                                   "replacements": [vars(r) for r in parsed.replacements]}
                accelerators = parsed.accelerators or accelerators
            # timed passes, interleaved a, b, a, b, ...: one sample = one invocation's average
            for _ in range(invocations):
                results = self._invoke([invocation(l, False) for l in labels], deadline)
                for label, (rc, text) in zip(labels, results):
                    parsed = tool.checked_output(rc, text, label, self.required_flags())
                    assert parsed.inference_avg_us is not None  # checked_output: the run completed
                    times[label].append(parsed.inference_avg_us / 1000.0)
                    per_invocation[label].append(tool.aggregates(parsed))
        finally:
            self.remote.remove(run_dir)
        details = {
            "serial": serial, "delegate_flags": self.delegate_flags(),
            "method": (f"{SAMPLING_METHOD} ({runs} run(s) after {settings.warmup_runs} warmup run(s)); "
                       f"{invocations} invocations per label, interleaved across labels"),
            "per_run_times": False, "runs_per_invocation": runs, "invocations_per_label": invocations,
            "per_invocation_us": per_invocation, "profiling_run": profiles,
            "accelerators_available": accelerators,
        }
        return BenchResult(times_ms=times, first_invoke_ms={k: v for k, v in first_ms.items() if v is not None},
                           delegation=delegation, simulated=self.simulated, details=details,
                           protocol=TimingProtocol.INVOCATION_MEANS)

    def close(self) -> None:
        self.remote.close()

    # --- helpers ------------------------------------------------------------------------------

    def _invoke(self, invocations: list[tool.Invocation], deadline: float) -> list[tuple[int | None, str]]:
        argvs = [inv.argv(self.remote.binary, self.delegate_flags()) for inv in invocations]
        res = self.remote.shell(tool.chained_command(argvs), deadline, kill_on_timeout=True)
        return tool.split_chained_output(res.stdout, res.stderr, len(argvs))

    def _output_row(self, data: bytes | None, info: ModelInfo, i: int, deadline: float) -> np.ndarray:
        if data is None:
            if self.remote.disk_full(deadline):
                raise DeviceError(f"benchmark_model could not write its outputs for example {i}: "
                                  "no space left on the device", kind="disk-full")
            raise DeviceError(f"benchmark_model wrote no --output_filepath file for example {i}", kind="failed")
        if len(data) != info.output_nbytes:
            raise DeviceError(f"benchmark_model wrote {len(data)} bytes of outputs for example {i}; the "
                              f"model's outputs take {info.output_nbytes}", kind="failed")
        t = info.outputs[0]
        out = np.frombuffer(data[: t.nbytes], dtype=t.dtype).reshape(t.shape)
        return out[0] if out.ndim else out  # drop the batch axis, as the CPU adapters do


def _single_input_model(path: Path, device_name: str) -> ModelInfo:
    info = read_model_info(Path(path))
    if len(info.inputs) != 1 or not info.outputs:
        raise DeviceError(f"{Path(path).name} has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                          f"the {device_name} adapter feeds models with exactly one input", kind="unsupported")
    return info


def _examples(x: np.ndarray, tin: TensorInfo) -> np.ndarray:
    """The inputs as one array per invocation, in the model's input shape and dtype."""
    per = int(np.prod(tin.shape, dtype=np.int64))
    if x.dtype != tin.dtype:
        if x.dtype.kind == "f" and tin.dtype.kind == "f":
            x = x.astype(tin.dtype)
        else:
            raise DeviceError(f"inputs are {x.dtype} but the model's input is {tin.dtype}; "
                              "quantize them to the model's input type first", kind="failed")
    if per == 0 or x.size % per:
        raise DeviceError(f"inputs of shape {x.shape} do not split into examples of shape {tin.shape}", kind="failed")
    return np.ascontiguousarray(x.reshape((x.size // per,) + tin.shape))
