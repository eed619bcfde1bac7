"""The Android NNAPI adapter (``nnapi``): a phone reached through an adb server, models run by
TFLite's ``benchmark_model`` with the NNAPI delegate.

Finding the phone works as Android users expect: the adb server from ``ADB_SERVER_SOCKET``
(``tcp:host:port``, as device farms expose it) or ``ANDROID_ADB_SERVER_ADDRESS`` /
``ANDROID_ADB_SERVER_PORT``; the device from the ``serial`` option or ``ANDROID_SERIAL``; with
several devices attached and none chosen, an error lists them. ``benchmark_model`` is the
Android build of TFLite's benchmark tool for the phone's ABI (``QAT_BENCHMARK_MODEL`` or the
``benchmark_model`` option): the harness never downloads it (see ``BENCHMARK_MODEL_DOCS``).

Everything goes to ``/data/local/tmp/qat-harness/<session>/``: the binary once per adapter,
each run's files in a sub-folder removed after the run; ``close()`` removes the session folder.

- ``run``: one ``benchmark_model`` invocation per example (``--input_layer_value_files`` with
  the example's raw bytes, ``--output_filepath`` pulled back: the raw bytes of every output
  tensor, concatenated). Each invocation loads the model and compiles it for NNAPI again, so
  this costs about (model load + NNAPI compilation) per example; invocations are chained
  ``run_batch`` per adb shell command (and inputs pushed / outputs pulled per batch in one sync
  session) so the adb round trips do not add up.
- ``benchmark``: ``benchmark_model`` reports only aggregates (avg/std/min/max of a loop), not
  per-run times. Each label is run ``bench_invocations`` times, interleaved (a, b, a, b, ...),
  and each invocation's average is one sample of ``times_ms``; the aggregates of every
  invocation are kept in ``details``. A first, untimed invocation per label runs with
  ``--enable_op_profiling=true`` to see which node types stayed on the CPU.

A device whose property ``qat_harness.simulator`` is ``1`` is the test suite's simulated phone:
the adapter and every result then carry ``simulated=True``.
"""
from __future__ import annotations

import math
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np

from qat_harness.devices import benchmark_model_output as bmo
from qat_harness.devices.adb_transport import (AdbConfigError, AdbTransport, DeviceEntry, ShellResult,
                                               quote_command, server_address)
from qat_harness.devices.base import (Availability, BenchResult, BenchSettings, Delegation, Device,
                                      DeviceError, RunResult)
from qat_harness.devices.nnapi_model_info import ModelInfo, TensorInfo, read_model_info

BENCHMARK_MODEL_ENV = "QAT_BENCHMARK_MODEL"
BENCHMARK_MODEL_DOCS = ("https://ai.google.dev/edge/litert/models/measurement (\"Native benchmark "
                        "binary\": the nightly android_aarch64 / android_arm benchmark_model builds, or "
                        "`bazel build -c opt --config=android_arm64 "
                        "//tensorflow/lite/tools/benchmark:benchmark_model`)")
REMOTE_ROOT = "/data/local/tmp/qat-harness"
SIMULATOR_PROPERTY = "qat_harness.simulator"
NNAPI_DELEGATE = "TfLiteNnapiDelegate"  # the delegate kernel's name in TFLite's log
NNAPI_PROVIDER = "NNAPI"                # the delegate provider's name in benchmark_model's log
_MARK = "@@qat:"

# ELF e_machine of a binary -> the Android ABIs that can execute it
_ELF_MACHINES = {183: ("aarch64", {"arm64-v8a"}), 40: ("32-bit ARM", {"armeabi-v7a", "armeabi"}),
                 62: ("x86-64", {"x86_64"}), 3: ("x86", {"x86"}), 243: ("RISC-V", {"riscv64"})}


def api_warnings(api_level: int | None) -> list[str]:
    """What the phone's Android version means for int8 models on NNAPI."""
    if api_level is None:
        return ["Android API level unknown (ro.build.version.sdk unreadable)"]
    warnings = []
    if api_level < 27:
        warnings.append(f"API {api_level}: NNAPI appeared in Android 8.1 (API 27); nothing will be delegated")
    if api_level < 29:
        warnings.append(f"API {api_level} < 29 (NNAPI 1.2): per-channel quantized int8 convolutions "
                        "cannot run on NNAPI; such layers stay on the CPU")
    if api_level < 30:
        warnings.append(f"API {api_level} < 30 (NNAPI 1.3): no signed int8 (TENSOR_QUANT8_ASYMM_SIGNED) "
                        "quantize/dequantize; int8 models are only partly delegated or converted to uint8")
    if api_level >= 35:
        warnings.append(f"API {api_level}: NNAPI is deprecated from Android 15 (API 35); vendors may ship "
                        "no or stale NNAPI drivers")
    return warnings


class NnapiDevice(Device):
    name = "nnapi"

    def __init__(self, serial: str | None = None, benchmark_model: str | None = None,
                 accelerator: str | None = None, num_threads: int = 2, bench_invocations: int = 10,
                 run_batch: int = 32, env: dict | None = None):
        self._env = dict(os.environ if env is None else env)
        self.requested_serial = serial or self._env.get("ANDROID_SERIAL") or None
        self.serial_source = "the serial option" if serial else "ANDROID_SERIAL"
        self.benchmark_model = benchmark_model or self._env.get(BENCHMARK_MODEL_ENV) or None
        self.accelerator = accelerator or None
        self.num_threads = num_threads
        self.bench_invocations = max(1, int(bench_invocations))
        self.run_batch = max(1, int(run_batch))
        self.session = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.remote_dir = f"{REMOTE_ROOT}/{self.session}"
        self.remote_binary = f"{self.remote_dir}/benchmark_model"
        try:
            self.address = server_address(self._env)
            self._config_error = None
            self.transport: AdbTransport | None = AdbTransport(self.address)
        except AdbConfigError as exc:
            self.address, self._config_error, self.transport = None, str(exc), None
        self.serial: str | None = None
        self._props: dict[str, str] | None = None
        self._binary_pushed = False
        self._session_used = False
        self._runs = 0
        self._accelerators_seen: list[str] = []

    # --- finding the phone -----------------------------------------------------------------

    def _select(self) -> str:
        """The serial of the device to use, checked to be attached and authorized."""
        if self.serial is not None:
            return self.serial
        if self._config_error:
            raise DeviceError(self._config_error, kind="failed")
        why = self.transport.unreachable_reason()
        if why:
            raise DeviceError(why, kind="offline")
        entries = self.transport.devices()
        where = f"the adb server at {self.address}"
        if self.requested_serial:
            match = [e for e in entries if e.serial == self.requested_serial]
            if not match:
                raise DeviceError(f"device {self.requested_serial} (from {self.serial_source}) is not attached "
                                  f"to {where}; attached: {_listing(entries)}", kind="offline")
            entry = match[0]
        elif not entries:
            raise DeviceError(f"no Android device attached to {where} (`adb devices` lists none): connect "
                              "a phone with USB debugging enabled, or `adb connect HOST:PORT`", kind="offline")
        elif len(entries) > 1:
            raise DeviceError(f"{len(entries)} devices attached to {where}: {_listing(entries)}; choose one "
                              "with ANDROID_SERIAL or the serial option", kind="failed")
        else:
            entry = entries[0]
        _check_state(entry)
        self.serial = entry.serial
        return self.serial

    def _properties(self) -> dict[str, str]:
        if self._props is None:
            serial = self._select()
            res = self.transport.shell(serial, "getprop", timeout_s=30)
            self._props = parse_getprop(res.stdout)
            self.simulated = self._props.get(SIMULATOR_PROPERTY) == "1"
        return self._props

    def _api_level(self) -> int | None:
        try:
            return int(self._properties().get("ro.build.version.sdk", ""))
        except ValueError:
            return None

    def _binary_problem(self) -> tuple[str, str] | None:
        """(kind, reason) when the local benchmark_model cannot be used on this phone."""
        if not self.benchmark_model:
            return ("missing-tool", f"no benchmark_model configured: set {BENCHMARK_MODEL_ENV} (or the "
                    f"benchmark_model option) to TFLite's Android benchmark_model for the phone's ABI; "
                    f"the harness never downloads it. Get it from {BENCHMARK_MODEL_DOCS}")
        path = Path(self.benchmark_model)
        if not path.is_file():
            return ("missing-tool", f"benchmark_model {path} (from {BENCHMARK_MODEL_ENV} or the option) "
                    f"does not exist; get it from {BENCHMARK_MODEL_DOCS}")
        try:
            head = path.open("rb").read(20)
        except OSError as exc:
            return ("missing-tool", f"benchmark_model {path} is unreadable: {exc.strerror or exc}")
        if head[:4] != b"\x7fELF" or len(head) < 20:
            return ("missing-tool", f"benchmark_model {path} is not an ELF executable (an Android build is "
                    f"needed; {BENCHMARK_MODEL_DOCS})")
        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        arch, abis = _ELF_MACHINES.get(machine, (f"ELF machine {machine}", set()))
        props = self._properties()
        phone_abis = set(filter(None, props.get("ro.product.cpu.abilist", "").split(","))) | {
            props.get("ro.product.cpu.abi", "")}
        if not abis & phone_abis:
            return ("missing-tool", f"benchmark_model {path} is built for {arch}, the phone runs "
                    f"{props.get('ro.product.cpu.abi', '?')}: use the build for that ABI ({BENCHMARK_MODEL_DOCS})")
        return None

    def _ready(self) -> str:
        serial = self._select()
        self._properties()
        problem = self._binary_problem()
        if problem:
            raise DeviceError(problem[1], kind=problem[0])
        return serial

    def probe(self) -> Availability:
        try:
            serial = self._ready()
        except DeviceError as exc:
            return Availability(False, exc.reason, {"kind": exc.kind})
        p = self._props
        sim = " [simulated by the test suite]" if self.simulated else ""
        return Availability(True, f"{p.get('ro.product.model', '?')} ({serial}), Android "
                            f"{p.get('ro.build.version.release', '?')} API {self._api_level()}, "
                            f"{p.get('ro.product.cpu.abi', '?')}, benchmark_model {self.benchmark_model}{sim}",
                            {"serial": serial, "simulated": self.simulated})

    def describe(self) -> dict:
        d = {"name": self.name, "simulated": self.simulated,
             "adb_server": str(self.address) if self.address else None,
             "adb_server_source": self.address.source if self.address else None,
             "benchmark_model": self.benchmark_model, "accelerator": self.accelerator or "auto",
             "num_threads": self.num_threads}
        try:
            props = self._properties()
        except DeviceError as exc:
            d.update(available=False, error=f"{exc.kind}: {exc.reason}")
            return d
        api = self._api_level()
        d.update(
            available=True, simulated=self.simulated, serial=self.serial,
            model=props.get("ro.product.model"), manufacturer=props.get("ro.product.manufacturer"),
            soc_model=props.get("ro.soc.model"), soc_manufacturer=props.get("ro.soc.manufacturer"),
            board_platform=props.get("ro.board.platform"), hardware=props.get("ro.hardware"),
            android_release=props.get("ro.build.version.release"), api_level=api,
            abi=props.get("ro.product.cpu.abi"), abilist=props.get("ro.product.cpu.abilist"),
            nnapi_accelerators=self._accelerators_seen or self._nnapi_hal_services(),
            warnings=api_warnings(api))
        return d

    def _nnapi_hal_services(self) -> list[str] | None:
        """NNAPI drivers registered as AIDL services (Android 12+), the only list readable
        without running a model; benchmark_model's own list replaces it after a run."""
        try:
            res = self.transport.shell(self._select(), "service list", timeout_s=15)
        except DeviceError:
            return None
        names = re.findall(r"android\.hardware\.neuralnetworks\.IDevice/([^\s:\]]+)", res.stdout)
        return sorted(set(names)) or None

    # --- running ---------------------------------------------------------------------------

    def run(self, model_path: Path, inputs: np.ndarray, timeout_s: float = 300.0) -> RunResult:
        deadline = time.monotonic() + timeout_s
        serial = self._ready()
        info = _single_input_model(model_path)
        tin = info.inputs[0]
        examples = _examples(np.asarray(inputs), tin)
        run_dir = self._new_run_dir()
        remote_model = f"{run_dir}/model.tflite"
        rows, first = [], None
        try:
            self._ensure_binary(serial, deadline)
            self._push(serial, [(Path(model_path), remote_model, 0o644)], deadline)
            for start in range(0, len(examples), self.run_batch):
                idx = list(range(start, min(len(examples), start + self.run_batch)))
                self._push(serial, [(examples[i].tobytes(), f"{run_dir}/in{i}.bin", 0o644) for i in idx],
                           deadline)
                argvs = [self._argv(remote_model, tin, f"{run_dir}/in{i}.bin", self.num_threads, warmup=0,
                                    runs=1, profile=(i == 0), output=f"{run_dir}/out{i}.bin") for i in idx]
                for i, (rc, text) in zip(idx, self._invoke(serial, argvs, deadline)):
                    parsed = self._checked(rc, text, f"example {i}")
                    first = first or parsed
                outs = self._pull(serial, [f"{run_dir}/out{i}.bin" for i in idx], deadline)
                for i in idx:
                    rows.append(self._output_row(outs[f"{run_dir}/out{i}.bin"], info, i, serial, deadline))
                self._shell(serial, quote_command(["rm", "-f"] + [f"{run_dir}/{k}{i}.bin" for i in idx
                                                                  for k in ("in", "out")]), deadline)
        finally:
            self._remove(serial, run_dir)
        delegation = self._delegation(first, info) if first else None
        return RunResult(outputs=np.stack(rows) if rows else np.empty((0,), info.outputs[0].dtype),
                         delegation=delegation, simulated=self.simulated,
                         details={"serial": serial, "invocations": len(rows), "one_invocation_per_example": True,
                                  "accelerators_available": first.accelerators if first else []})

    def benchmark(self, models: dict[str, Path], sample, settings: BenchSettings) -> BenchResult:
        deadline = time.monotonic() + settings.timeout_s
        serial = self._ready()
        labels = list(models)
        infos = {label: _single_input_model(models[label]) for label in labels}
        run_dir = self._new_run_dir()
        remote = {label: (f"{run_dir}/m{k}.tflite", f"{run_dir}/in{k}.bin") for k, label in enumerate(labels)}
        invocations = self.bench_invocations
        runs = max(1, math.ceil(settings.min_runs / invocations))
        min_secs = settings.min_seconds / invocations
        times = {label: [] for label in labels}
        per_invocation = {label: [] for label in labels}
        first_ms, delegation, profiles = {}, {}, {}
        try:
            self._ensure_binary(serial, deadline)
            files = []
            for label in labels:
                x = sample[label] if isinstance(sample, dict) else sample
                example = _examples(np.asarray(x), infos[label].inputs[0])[0]
                files += [(Path(models[label]), remote[label][0], 0o644),
                          (example.tobytes(), remote[label][1], 0o644)]
            self._push(serial, files, deadline)

            def argv(label, profile):
                return self._argv(remote[label][0], infos[label].inputs[0], remote[label][1], settings.num_threads,
                                  warmup=settings.warmup_runs, runs=1 if profile else runs,
                                  min_secs=0.0 if profile else min_secs, profile=profile)

            # untimed profiling pass: delegation, the node types left on the CPU, first invoke
            for label, (rc, text) in zip(labels, self._invoke(serial, [argv(l, True) for l in labels], deadline)):
                parsed = self._checked(rc, text, f"{label} (profiling run)")
                delegation[label] = self._delegation(parsed, infos[label])
                first_ms[label] = bmo.us_to_ms(_first_invoke_us(parsed))
                profiles[label] = {"node_types": parsed.node_types, "init_us": parsed.init_us,
                                   "replacements": [vars(r) for r in parsed.replacements]}
            # timed passes, interleaved a, b, a, b, ...: one sample = one invocation's average
            for _ in range(invocations):
                results = self._invoke(serial, [argv(l, False) for l in labels], deadline)
                for label, (rc, text) in zip(labels, results):
                    parsed = self._checked(rc, text, label)
                    times[label].append(parsed.inference_avg_us / 1000.0)
                    per_invocation[label].append(_aggregates(parsed))
        finally:
            self._remove(serial, run_dir)
        details = {
            "serial": serial,
            "method": ("benchmark_model reports aggregates only: each sample is the average of one "
                       f"invocation ({runs} run(s) after {settings.warmup_runs} warmup run(s)); "
                       f"{invocations} invocations per label, interleaved across labels"),
            "runs_per_invocation": runs, "invocations_per_label": invocations,
            "per_invocation_us": per_invocation, "profiling_run": profiles,
            "accelerator": self.accelerator or "auto (NNAPI CPU implementation disabled)",
            "accelerators_available": self._accelerators_seen,
        }
        return BenchResult(times_ms=times, first_invoke_ms={k: v for k, v in first_ms.items() if v is not None},
                           delegation=delegation, simulated=self.simulated, details=details)

    def close(self) -> None:
        if self.serial is not None and self._session_used:
            self._remove(self.serial, self.remote_dir)
        self._session_used = self._binary_pushed = False

    # --- helpers ---------------------------------------------------------------------------

    def _new_run_dir(self) -> str:
        self._runs += 1
        return f"{self.remote_dir}/run{self._runs}"

    def _argv(self, remote_model: str, tin: TensorInfo, input_file: str, threads: int, warmup: int,
              runs: int, profile: bool, min_secs: float = 0.0, output: str | None = None) -> list[str]:
        # --input_layer only has to match the flag's own lists (a different tensor name is a
        # warning), and ',' / ':' separate items there: a converter name such as
        # "serving_default_x:0" is replaced by a plain alias.
        layer = tin.name if re.fullmatch(r"[\w./-]+", tin.name or "") else "input0"
        argv = [self.remote_binary, f"--graph={remote_model}", "--use_nnapi=true", "--disable_nnapi_cpu=true"]
        if self.accelerator:
            argv.append(f"--nnapi_accelerator_name={self.accelerator}")
        argv += [f"--num_threads={threads}", f"--warmup_runs={warmup}", "--warmup_min_secs=0",
                 f"--num_runs={runs}", f"--min_secs={min_secs:g}",
                 f"--enable_op_profiling={'true' if profile else 'false'}",
                 f"--input_layer={layer}", f"--input_layer_shape={tin.shape_flag}",
                 f"--input_layer_value_files={layer}:{input_file}"]
        if output:
            argv.append(f"--output_filepath={output}")
        return argv

    def _ensure_binary(self, serial: str, deadline: float) -> None:
        if self._binary_pushed:
            return
        self._session_used = True  # from here on close() may have a folder to remove
        self._push(serial, [(Path(self.benchmark_model), self.remote_binary, 0o755)], deadline)
        self._binary_pushed = True
        res = self._shell(serial, quote_command(["chmod", "755", self.remote_binary]), deadline)
        if res.returncode != 0:
            raise _shell_error(res.output, res.returncode, f"chmod of {self.remote_binary}")

    def _invoke(self, serial: str, argvs: list[list[str]], deadline: float) -> list[tuple[int | None, str]]:
        """Run several benchmark_model invocations in one shell command; each one's output
        (stdout and stderr) and exit code, split on echoed markers."""
        parts = [f"echo {_MARK}begin:{k}; {quote_command(a)} 2>&1; echo {_MARK}end:{k}:$?"
                 for k, a in enumerate(argvs)]
        res = self._shell(serial, "; ".join(parts), deadline, kill_on_timeout=True)
        out = res.stdout
        results = []
        for k in range(len(argvs)):
            m = re.search(rf"{re.escape(_MARK)}begin:{k}\n(.*?){re.escape(_MARK)}end:{k}:(\d+)", out, re.S)
            if m:
                results.append((int(m.group(2)), m.group(1)))
            else:
                tail = out.split(f"{_MARK}begin:{k}\n", 1)[-1] + res.stderr
                results.append((None, tail))
        return results

    def _checked(self, rc: int | None, text: str, what: str) -> bmo.BenchmarkOutput:
        """The parsed output of one invocation, or the DeviceError that explains its failure."""
        parsed = bmo.parse(text)
        if parsed.accelerators:
            self._accelerators_seen = parsed.accelerators
        ignored = [f for f in parsed.unconsumed_flags if f.startswith(("--use_nnapi", "--output_filepath"))]
        if rc is None or rc != 0 or not parsed.completed:
            err = _shell_error(text, rc, f"benchmark_model ({what})", parsed)
            raise err
        if ignored:
            raise DeviceError(f"this benchmark_model ignores {', '.join(ignored)}: it needs the Android build "
                              f"of a recent TFLite ({BENCHMARK_MODEL_DOCS})", kind="missing-tool")
        return parsed

    def _output_row(self, data: bytes | None, info: ModelInfo, i: int, serial: str, deadline: float) -> np.ndarray:
        if data is None:
            if self._disk_full(serial, deadline):
                raise DeviceError(f"benchmark_model could not write its outputs for example {i}: "
                                  "no space left on the device", kind="disk-full")
            raise DeviceError(f"benchmark_model wrote no --output_filepath file for example {i}", kind="failed")
        if len(data) != info.output_nbytes:
            raise DeviceError(f"benchmark_model wrote {len(data)} bytes of outputs for example {i}; the "
                              f"model's outputs take {info.output_nbytes}", kind="failed")
        t = info.outputs[0]
        out = np.frombuffer(data[: t.nbytes], dtype=t.dtype).reshape(t.shape)
        return out[0] if out.ndim else out  # drop the batch axis, as the CPU adapters do

    def _disk_full(self, serial: str, deadline: float) -> bool:
        try:
            res = self._shell(serial, quote_command(["df", REMOTE_ROOT.rsplit("/", 1)[0]]), deadline)
        except DeviceError:
            return False
        for line in res.stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 4 and cols[3].isdigit():
                return int(cols[3]) == 0
        return False

    def _delegation(self, parsed: bmo.BenchmarkOutput, info: ModelInfo) -> Delegation:
        reps = parsed.replacements_for(NNAPI_DELEGATE)
        if reps and all(r.total is not None for r in reps):
            total = sum(r.total for r in reps)
        else:
            total = len(info.operators)
        delegated = sum(r.replaced for r in reps)
        cpu_types = {t: n for t, n in parsed.node_types.items() if t != NNAPI_DELEGATE}
        if delegated == 0:
            status = "none"
            api = self._api_level()
            why = "NNAPI took no node of the graph"
            if api is not None and api < 30 and any(t.dtype == np.int8 for t in info.inputs + info.outputs):
                why += f" (API {api}: see the device's warnings about int8 on NNAPI)"
            fallback = [(op, why) for op in info.operators]
        else:
            status = "full" if delegated >= total and not cpu_types else "partial"
            if cpu_types:
                fallback = [(t, f"{n} node(s) ran on the CPU: not accepted by NNAPI") for t, n in cpu_types.items()]
            elif delegated < total:
                fallback = [("unknown", f"{total - delegated} node(s) stayed on the CPU")]
            else:
                fallback = []
        return Delegation(backend="nnapi", ops_total=total, ops_delegated=delegated, fallback=fallback,
                          details={"status": status, "partitions": sum(r.partitions for r in reps),
                                   "delegate_kernels": parsed.delegate_kernels.get(NNAPI_PROVIDER),
                                   "tool_says": parsed.applied.get(NNAPI_PROVIDER),
                                   "cpu_node_types": cpu_types,
                                   "accelerator": self.accelerator or "auto (NNAPI CPU disabled)",
                                   "accelerators_available": parsed.accelerators,
                                   "simulated": self.simulated})

    # --- adb calls with the adapter's error wording -------------------------------------------

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceError("ran out of time", kind="timeout")
        return left

    def _shell(self, serial: str, command: str, deadline: float, kill_on_timeout: bool = False) -> ShellResult:
        try:
            return self.transport.shell(serial, command, self._left(deadline))
        except DeviceError as exc:
            if exc.kind == "timeout" and kill_on_timeout:
                self._kill_leftovers(serial)
                raise DeviceError(f"benchmark_model did not finish in time on {serial}", kind="timeout",
                                  details=exc.details) from None
            raise self._explain(serial, exc) from None

    def _push(self, serial: str, files, deadline: float) -> None:
        try:
            self.transport.push(serial, files, self._left(deadline))
        except DeviceError as exc:
            raise self._explain(serial, exc) from None

    def _pull(self, serial: str, remotes: list[str], deadline: float) -> dict[str, bytes | None]:
        try:
            return self.transport.pull(serial, remotes, self._left(deadline))
        except DeviceError as exc:
            raise self._explain(serial, exc) from None

    def _explain(self, serial: str, exc: DeviceError) -> DeviceError:
        """A connection lost mid-run: say whether the phone went away."""
        if exc.kind != "offline":
            return exc
        try:
            states = {e.serial: e.state for e in self.transport.devices()}
        except DeviceError:
            return DeviceError(f"device {serial} went offline: {exc.reason}", kind="offline")
        state = states.get(serial, "gone")
        if state == "device":
            return DeviceError(f"connection to {serial} lost: {exc.reason}", kind="offline")
        return DeviceError(f"device {serial} went offline during the run (adb state now: {state}); "
                           "check the cable or `adb reconnect`", kind="offline")

    def _kill_leftovers(self, serial: str) -> None:
        """After a timeout: stop what still runs from this session on the phone (best effort)."""
        try:
            self.transport.shell(serial, quote_command(["pkill", "-f", self.remote_dir]), timeout_s=10)
        except DeviceError:
            pass

    def _remove(self, serial: str, remote_path: str) -> None:
        """Best-effort cleanup; a phone that went away keeps its files until the next session."""
        if not remote_path.startswith(REMOTE_ROOT + "/"):
            return  # never remove anything outside the harness's folder
        try:
            self.transport.shell(serial, quote_command(["rm", "-rf", remote_path]), timeout_s=30)
        except DeviceError:
            pass


def _listing(entries: list[DeviceEntry]) -> str:
    return ", ".join(f"{e.serial} ({e.state})" for e in entries) or "none"


def _check_state(entry: DeviceEntry) -> None:
    if entry.state == "device":
        return
    if entry.state == "unauthorized":
        raise DeviceError(f"device {entry.serial} is unauthorized: unlock it and accept the \"Allow USB "
                          "debugging\" prompt (this computer's adb key)", kind="offline")
    if entry.state == "offline":
        raise DeviceError(f"device {entry.serial} is offline: reconnect it (`adb reconnect`) or restart its "
                          "adb daemon", kind="offline")
    raise DeviceError(f"device {entry.serial} is in state {entry.state!r}, not ready for commands", kind="offline")


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop``'s ``[name]: [value]`` lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M)}


def _single_input_model(path: Path) -> ModelInfo:
    info = read_model_info(Path(path))
    if len(info.inputs) != 1 or not info.outputs:
        raise DeviceError(f"{Path(path).name} has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                          "the nnapi adapter feeds models with exactly one input", kind="unsupported")
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


def _first_invoke_us(parsed: bmo.BenchmarkOutput) -> float | None:
    """The first Invoke of the process: the first warmup run, or the first timed run when
    there was no warmup (the tool then prints "First inference: 0")."""
    if parsed.warmup is not None and parsed.warmup.count:
        return parsed.warmup.first if parsed.warmup.first is not None else parsed.first_inference_us
    if parsed.inference is not None and parsed.inference.count:
        return parsed.inference.first if parsed.inference.first is not None else parsed.inference.curr
    return parsed.first_inference_us


def _aggregates(parsed: bmo.BenchmarkOutput) -> dict:
    s = parsed.inference
    return {"init_us": parsed.init_us, "first_inference_us": parsed.first_inference_us,
            "warmup_avg_us": parsed.warmup_avg_us, "avg_us": parsed.inference_avg_us,
            "count": s.count if s else None, "min_us": s.min if s else None, "max_us": s.max if s else None,
            "std_us": s.std if s else None}


def _shell_error(text: str, rc: int | None, what: str, parsed: bmo.BenchmarkOutput | None = None) -> DeviceError:
    """A failed command on the phone -> DeviceError with the kind its output shows."""
    low = text.lower()
    tail = " | ".join(l.strip() for l in text.strip().splitlines()[-3:])[:400]
    if "no space left on device" in low:
        return DeviceError(f"{what}: no space left on the device", kind="disk-full")
    if rc == 127 or "inaccessible or not found" in low or ("not found" in low and rc not in (0, None)):
        return DeviceError(f"{what}: not found on the device ({tail})", kind="missing-tool")
    if rc == 126 or "permission denied" in low:
        return DeviceError(f"{what}: permission denied on the device ({tail}); /data/local/tmp must allow "
                           "executing files pushed by adb", kind="failed")
    if rc is None:
        return DeviceError(f"{what}: output cut off before its exit status ({tail})", kind="offline")
    if rc > 128:
        return DeviceError(f"{what} died with signal {rc - 128}: "
                           f"{parsed.error_summary() if parsed else tail}", kind="crash")
    if parsed is not None:
        return DeviceError(f"{what} failed (exit {rc}): {parsed.error_summary()}", kind="failed",
                           details={"output_tail": text[-2000:]})
    return DeviceError(f"{what} failed (exit {rc}): {tail}", kind="failed")


def register_devices(register) -> None:
    def factory(serial=None, benchmark_model=None, accelerator=None, num_threads=2, bench_invocations=10,
                run_batch=32, **_):
        return NnapiDevice(serial=serial, benchmark_model=benchmark_model, accelerator=accelerator,
                           num_threads=num_threads, bench_invocations=bench_invocations, run_batch=run_batch)
    register("nnapi", factory, "Android phone's NNAPI over adb, with TFLite's benchmark_model "
                               f"(${BENCHMARK_MODEL_ENV}; device from ANDROID_SERIAL / ADB_SERVER_SOCKET)")
