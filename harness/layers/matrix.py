"""The layer support matrix: every probe model through every stage, each stage with its own
verdict and reason, so a user knows before a week of training whether a layer survives.

Stages, in order (keys of ``stages`` in layers.json):

- ``qat``       tfmot's default 8-bit scheme applied (annotate + apply), one training step;
- ``convert``   full-int8 conversion (int8 input and output, TFLITE_BUILTINS_INT8);
- ``int8``      is every op integer in the flatbuffer, or which ops are float / DEQUANTIZE;
- ``bn_fold``   only for models with a BatchNormalization: folded into the conv (claim M3);
- ``DEV:runs``, ``DEV:delegated``, ``DEV:numeric`` per device: it runs; how much of the graph
  the device's delegate / accelerator took; its int8 outputs against the reference kernels
  (``cpu-ref``) and against the QAT Keras model, in int8 steps of the output scale.

With ``recipes`` (``layers --recipes``), every probe also gets the quantization-recipe axis:
``recipe_stages`` beside ``stages``, judged by ``layers.recipes`` (which layers take int4 weights,
whether the kernels agree on the file).

``qat`` and ``convert`` run in a long-lived child process (``layers_child``) so a converter
abort or a hang becomes an ERROR in that probe's cell; device runs go through the device
adapters, which isolate themselves. Probes run ``workers`` at a time (one child each).

A user probe is ``module:function``; see ``layers_child.load_probe`` for what the function
may return (a model, or ``(model, {"LayerClass": QuantizeConfig})``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qat_harness import inspection
from qat_harness.core.child import ChildFailure, ServingChild
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.core.tflite import model_inputs, quantize_input
from qat_harness.devices.base import Role
from qat_harness.results import SEVERITY as _SEVERITY
from qat_harness.report import safe_name
from qat_harness.results import ClaimResult, Verdict, plain

PASS, WARN, FAIL, SKIP, ERROR = (Verdict.PASS.value, Verdict.WARN.value, Verdict.FAIL.value,
                                 Verdict.SKIP.value, Verdict.ERROR.value)
CHILD = "qat_harness.layers.child"
USER_DIR_ENV = "QAT_HARNESS_PROBE_PATH"  # read by the child (layers.child)

# Numeric agreement, in steps of the int8 output scale (one step = 1/256 of the output range).
# XNNPACK and the reference kernels may round a requantization differently: one step apart is
# the same answer.
ORACLE_PASS_STEPS = 1
ORACLE_WARN_STEPS = 2
# The QAT Keras model simulates int8 in float (fake quantization); the converter then rounds
# biases to int32 and multipliers to fixed point, so a step or two apart is agreement.
# Beyond 8 steps (3% of the output range) the int8 model computes something else.
KERAS_PASS_STEPS = 2
KERAS_WARN_STEPS = 8

N_EXAMPLES = 16
PROBE_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 120.0
SCHEMA_VERSION = 1
_USER_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def available_probes() -> list[str]:
    from qat_harness.models.probes import names
    return names()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def stage(verdict: str, reason: str, **details) -> dict:
    cell = {"verdict": verdict, "reason": reason}
    if details:
        cell["details"] = details
    return cell


def worst(verdicts) -> str:
    return Verdict.worst(verdicts).value


# -- tasks --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Task:
    name: str
    request: dict
    layer: str
    group: str
    description: str
    claims: tuple = ()
    bn_fold: bool = False
    source: str = "built-in"


def _tasks(layers: list[str] | None, user_probes) -> list[Task]:
    from qat_harness.models.probes import PROBES

    names = list(PROBES) if layers is None else list(layers)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise UsageError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    tasks = [Task(n, {"kind": "builtin", "probe": n}, PROBES[n].layer, PROBES[n].group,
                  PROBES[n].description, PROBES[n].claims, PROBES[n].bn_fold) for n in names]
    for ref in user_probes or ():
        if not _USER_REF.match(ref):
            raise UsageError(f"--probe {ref!r}: expected MODULE:FUNCTION, e.g. my_probes:make_model")
        module = ref.split(":")[0]
        if not _module_findable(module):
            raise UsageError(f"--probe {ref}: cannot find module {module} "
                             "(run from the folder that holds it, or put it on PYTHONPATH)")
        tasks.append(Task(ref, {"kind": "user", "ref": ref}, ref, "user", f"user probe {ref}",
                          source="user"))
    seen = set()
    for t in tasks:
        if t.name in seen:
            raise UsageError(f"probe {t.name} given twice")
        seen.add(t.name)
    return tasks


def _module_findable(module: str) -> bool:
    """Is the user's module there, without running any of its code in this process? Only
    the top-level name is looked up (find_spec of a dotted name would import its parents);
    the child, which runs from the same folder, imports the module itself."""
    top = module.split(".")[0]
    try:
        if importlib.util.find_spec(top) is not None:
            return True
    except (ImportError, ValueError):
        pass
    base = Path.cwd() / top
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


# -- stages in the parent -----------------------------------------------------------------------
def int8_stage(info, ti) -> dict:
    check = inspection.full_integer_check(info, require_int8_io=True)
    ops = info.op_counts()
    if check.ok:
        return stage(PASS, f"{check.reason}; ops: {_ops_text(ops)}", ops=ops)
    fallbacks = sorted(set(check.float_ops))
    reason = check.reason + (f" (float fallback: {', '.join(fallbacks)})" if fallbacks else "")
    return stage(FAIL, f"{reason}; ops: {_ops_text(ops)}", ops=ops,
                 float_ops=check.float_ops, dequantize_ops=check.dequantize_ops)


def _ops_text(ops: dict) -> str:
    return ", ".join(f"{k}x{v}" if v > 1 else k for k, v in ops.items())


def bn_fold_stage(info, ti) -> dict:
    check = inspection.batchnorm_fold_check(info)
    if check.ok:
        return stage(PASS, f"BatchNorm folded: {check.reason}")
    return stage(FAIL, f"BatchNorm not folded: {check.reason}",
                 unfolded_after=check.unfolded_after)


def device_error_verdict(exc) -> str:
    # A crash, a hang or a lost device is an ERROR; a runtime that refuses the model FAILs it.
    return ERROR if exc.kind in ("crash", "timeout", "offline", "missing-tool", "disk-full") else FAIL


def delegated_stage(role: Role, deleg) -> dict:
    if deleg is None:
        if role is Role.ORACLE:
            return stage(SKIP, "reference kernels: no delegate by design")
        return stage(SKIP, "the adapter did not report how the graph was delegated")
    frac, backend = deleg.fraction, deleg.backend
    left = [name for name, _why in deleg.fallback] or deleg.details.get("cpu_builtin_ops", [])
    if frac is None:
        return stage(SKIP, f"{backend}: delegation not measurable", **deleg.to_dict())
    text = f"{deleg.ops_delegated}/{deleg.ops_total} ops on {backend}"
    if frac >= 1.0:
        return stage(PASS, f"{text} (whole graph)")
    kept = ", ".join(sorted(set(left))) if left else "unknown ops"
    if frac <= 0.0:
        verdict = FAIL if role is Role.ACCELERATOR else WARN
        return stage(verdict, f"{text}: {backend} took none of the graph; on the CPU: {kept}")
    return stage(WARN, f"{text}; left on the CPU: {kept}")


def numeric_stage(role: Role, out: np.ndarray, oracle: np.ndarray | None, oracle_note: str,
                  keras_out: np.ndarray, out_tensor) -> dict:
    """int8 device outputs against the reference kernels and against the QAT Keras model."""
    if out_tensor.dtype != "int8" or not out_tensor.scales:
        return stage(SKIP, f"output tensor is {out_tensor.dtype}, not int8: no int8 steps to compare")
    scale, zp = out_tensor.scales[0], out_tensor.zero_points[0]
    q = out.astype(np.int32)
    verdicts, parts, details = [], [], {"output_scale": scale, "output_zero_point": zp}
    if role is not Role.ORACLE:
        if oracle is None:
            parts.append(f"no reference-kernel output ({oracle_note})")
        elif oracle.shape != q.shape:
            verdicts.append(FAIL)
            parts.append(f"output shape {list(q.shape)} differs from the reference {list(oracle.shape)}")
        else:
            d = np.abs(q - oracle.astype(np.int32))
            mx = int(d.max()) if d.size else 0
            details["vs_reference"] = {"max_steps": mx, "mean_steps": round(float(d.mean()), 4)}
            verdicts.append(PASS if mx <= ORACLE_PASS_STEPS else WARN if mx <= ORACLE_WARN_STEPS else FAIL)
            parts.append(f"vs reference kernels: max {mx} step(s)")
    if keras_out.size != q.size:
        verdicts.append(FAIL)
        parts.append(f"output has {q.size} values, the QAT Keras model {keras_out.size}")
    else:
        kq = quantize_input(keras_out.reshape(q.shape), scale, zp).astype(np.int32)
        d = np.abs(q - kq)
        mx, mean = int(d.max()), float(d.mean())
        details["vs_keras"] = {"max_steps": mx, "mean_steps": round(mean, 4),
                               "within_1_step": round(float(np.mean(d <= 1)), 4)}
        verdicts.append(PASS if mx <= KERAS_PASS_STEPS else WARN if mx <= KERAS_WARN_STEPS else FAIL)
        parts.append(f"vs QAT Keras: max {mx}, mean {mean:.2f} step(s)")
        ref = details.get("vs_reference")
        if ref and oracle is not None and ref["max_steps"] > ORACLE_PASS_STEPS:
            # Which of the two int8 kernels is off? The QAT Keras model arbitrates: when the
            # reference kernels are further from it than this device, the reference is the
            # outlier (e.g. its fixed-point LOGISTIC/TANH against XNNPACK's exact tables).
            od = np.abs(oracle.astype(np.int32).reshape(q.shape) - kq)
            details["reference_vs_keras"] = {"max_steps": int(od.max()), "mean_steps": round(float(od.mean()), 4)}
            if float(od.mean()) > mean and verdicts[0] == FAIL:
                verdicts[0] = WARN
                parts[0] += (f", but the reference kernels are the further from QAT Keras "
                             f"(max {int(od.max())}, mean {float(od.mean()):.2f} step(s))")
    verdict = worst(verdicts) if verdicts else SKIP
    return stage(verdict, "; ".join(parts) + f" (output scale {scale:.3g})", **details)


# -- one probe ----------------------------------------------------------------------------------
class MatrixRun:
    def __init__(self, tasks: list[Task], devices: list[str], out_dir: Path, progress,
                 workers: int, timeout_s: float, n_examples: int, device_options: dict | None = None,
                 recipes: list[str] | None = None):
        from qat_harness.environment import environment

        self.tasks, self.device_names, self.out_dir = tasks, list(devices), Path(out_dir)
        self.progress = progress or (lambda _msg: None)
        self.workers, self.timeout_s, self.n_examples = max(1, workers), timeout_s, n_examples
        self.work = self.out_dir / "work"
        self.device_options = dict(device_options or {})
        self.lock = threading.Lock()
        self.device_locks: dict[str, threading.Lock] = {}
        self.devices: dict = {}
        self.unavailable: dict[str, str] = {}
        self.oracle = None
        self.oracle_name = ""
        self.oracle_note = ""
        self.done = 0
        self.recipes = list(recipes or [])
        self.recipe_axis = None  # layers.recipes.RecipeAxis, made in open_devices
        self.matrix = {
            "schema_version": SCHEMA_VERSION, "tool": "qat-harness layers", "started": _now(),
            "finished": None, "status": "running", "environment": plain(environment(2)),
            "devices": {}, "stage_keys": [], "thresholds": {
                "oracle_pass_steps": ORACLE_PASS_STEPS, "oracle_warn_steps": ORACLE_WARN_STEPS,
                "keras_pass_steps": KERAS_PASS_STEPS, "keras_warn_steps": KERAS_WARN_STEPS},
            "settings": {"examples": n_examples, "workers": self.workers, "probe_timeout_s": timeout_s,
                         "qat": "tfmot default 8-bit quantize_model, one Adam step (lr 1e-3, MSE)"},
            "probes": [None] * len(tasks), "claims": [], "elapsed_s": None}

    # devices
    def open_devices(self) -> None:
        from qat_harness.devices import registry

        for name in self.device_names:
            dev = registry.create(name, **self.device_options.get(name, {}))
            avail = dev.probe()
            self.matrix["devices"][name] = {"available": avail.available, "reason": avail.reason,
                                            "simulated": dev.simulated, "role": dev.role.value}
            if avail.available:
                self.devices[name] = dev
                self.device_locks[name] = threading.Lock()
            else:
                self.unavailable[name] = avail.reason
        oracle_names = [n for n, d in self.devices.items() if d.role is Role.ORACLE]
        if oracle_names:
            self.oracle_name = oracle_names[0]
            self.oracle = self.devices[self.oracle_name]
        else:
            dev = registry.oracle()
            avail = dev.probe()
            self.oracle_name = dev.name
            if avail.available:
                self.oracle = dev
            else:
                self.oracle_note = f"{dev.name} unavailable: {avail.reason}"
        self.device_locks.setdefault(self.oracle_name, threading.Lock())
        keys = ["qat", "convert", "int8", "bn_fold"]
        for name in self.device_names:
            keys += [f"{name}:runs", f"{name}:delegated", f"{name}:numeric"]
        self.matrix["stage_keys"] = keys
        if self.recipes:
            self._open_recipe_axis()

    def _open_recipe_axis(self) -> None:
        from qat_harness.build.cache import default_dir
        from qat_harness.layers.recipes import RecipeAxis

        skipped = {n: f"device not available: {why}" for n, why in self.unavailable.items()}
        kernels = []
        for name, dev in self.devices.items():
            if dev.role is Role.OVERHEAD:
                skipped[name] = f"{name} runs no kernel (it measures the harness's overhead)"
            else:
                kernels.append(name)
        if self.oracle is not None and self.oracle_name not in kernels:
            kernels.append(self.oracle_name)  # the reference kernels: always one of the kernels compared
        simulated = {n for n, d in self.devices.items() if d.simulated}
        self.recipe_axis = RecipeAxis(self.recipes, self.device_names, kernels, skipped, simulated,
                                      self.run_file, default_dir() / "recipes", self.timeout_s)
        self.matrix["recipe_axis"] = self.recipe_axis.describe()

    def run_file(self, name: str, model_path: Path, inputs, workdir: Path):
        """Run a .tflite on one device (or the reference kernels), isolated like every device
        run: a DeviceError says why not."""
        dev = self.devices.get(name) or (self.oracle if name == self.oracle_name else None)
        if dev is None:
            raise DeviceError(f"{name} is not open", kind="unsupported")
        workdir.mkdir(parents=True, exist_ok=True)
        with self.device_locks[name]:
            path, _ = dev.prepare(model_path, workdir)
            return dev.run(path, inputs, RUN_TIMEOUT_S)

    # the run
    def execute(self) -> dict:
        from qat_harness.layers import report as layers_report

        t0 = time.perf_counter()
        self.work.mkdir(parents=True, exist_ok=True)
        queue = list(enumerate(self.tasks))
        qlock = threading.Lock()
        stop = threading.Event()
        # user probes are imported from the folder the user runs in (by their own request)
        env = ({USER_DIR_ENV: os.getcwd()} if any(t.source == "user" for t in self.tasks) else None)
        children = [ServingChild(CHILD, self.work / "logs" / f"probe-child-{slot}.log",
                                 first_stage="qat", env=env)
                    for slot in range(min(self.workers, len(self.tasks)))]

        def worker(child) -> None:
            try:
                while not stop.is_set():
                    with qlock:
                        if not queue:
                            return
                        index, task = queue.pop(0)
                    try:
                        entry = self.probe(task, child)
                    except Exception as exc:  # noqa: BLE001 - a harness bug costs one probe, not the run
                        entry = self.error_entry(task, f"harness error: {type(exc).__name__}: {exc}")
                    if stop.is_set():  # its child was killed by the interruption: no verdict
                        return
                    with self.lock:
                        self.matrix["probes"][index] = entry
                        self.done += 1
                        self.progress(f"[{self.done}/{len(self.tasks)}] {task.name}: {_cell_summary(entry)}")
                        partial = {**self.matrix, "probes": [e for e in self.matrix["probes"] if e]}
                        layers_report.write_json(partial, self.out_dir / "layers.json")
            finally:
                child.close()

        pool = ThreadPoolExecutor(max(1, len(children)))
        try:
            for f in [pool.submit(worker, c) for c in children]:
                f.result()
            self.matrix["status"] = "complete"
        except BaseException:
            stop.set()  # Ctrl-C: no new probe starts, the running children are killed
            for c in children:
                c.kill()
            raise
        finally:
            pool.shutdown(wait=True)
            self.matrix["probes"] = [p for p in self.matrix["probes"] if p is not None]
            self.matrix["claims"] = m_claims_from_matrix(self.matrix)
            self.matrix["finished"] = _now()
            self.matrix["elapsed_s"] = round(time.perf_counter() - t0, 1)
            if self.matrix["status"] == "running":
                self.matrix["status"] = "interrupted"
            layers_report.write_json(self.matrix, self.out_dir / "layers.json")
            layers_report.write_markdown(self.matrix, self.out_dir / "layers.md")
            for dev in {*self.devices.values(), *([self.oracle] if self.oracle else [])}:
                dev.close()
        return self.matrix

    def error_entry(self, task: Task, reason: str) -> dict:
        stages = {k: stage(SKIP, "not reached") for k in self.matrix["stage_keys"] if k != "bn_fold"}
        stages["qat"] = stage(ERROR, reason)
        entry = {"name": task.name, "layer": task.layer, "group": task.group,
                 "description": task.description, "claims": list(task.claims), "source": task.source,
                 "stages": stages, "documented": None,
                 "matches_documentation": {"agrees": None, "note": "not comparable: " + reason},
                 "details": {}, "first_failure": "qat"}
        if self.recipe_axis is not None:
            entry["recipe_stages"] = self.recipe_axis.every_cell(SKIP, f"not reached: {reason}")
        return entry

    def probe(self, task: Task, child) -> dict:
        entry = {"name": task.name, "layer": task.layer, "group": task.group,
                 "description": task.description, "claims": list(task.claims), "source": task.source,
                 "stages": {}, "documented": None, "matches_documentation": None, "details": {}}
        stages = entry["stages"]
        workdir = self.work / safe_name(task.name)
        request = {**task.request, "workdir": str(workdir), "n_examples": self.n_examples}
        axis = self.recipe_axis
        if axis is not None and axis.wants_float_model:
            request["float_model"] = True
        t0 = time.perf_counter()
        float_crash = None
        try:
            result = child.run(request, self.timeout_s)
        except ChildFailure as exc:
            if exc.stage == "float":
                # the float conversion took the child down after the int8 stages: those are
                # redone without it (a fresh child), the recipe cells get the crash
                float_crash = exc.reason
                try:
                    result = child.run({**request, "float_model": False}, self.timeout_s)
                except ChildFailure as again:
                    exc = again
                    result = None
            else:
                result = None
            if result is None:
                stages[exc.stage if exc.stage in ("qat", "convert") else "qat"] = stage(ERROR, exc.reason)
        entry["details"]["child_s"] = round(time.perf_counter() - t0, 2)
        if result is not None:
            if result.get("error"):
                stages.setdefault("qat", stage(ERROR, result["error"]))
            stages.update(result.get("stages", {}))
            entry["layer"] = result.get("layer") or entry["layer"]
            entry["documented"] = result.get("documented")
            entry["details"]["timings"] = result.get("timings", {})
            if result.get("custom_configs"):
                entry["details"]["custom_quantize_configs"] = result["custom_configs"]
        has_bn = bool(result and result.get("has_batchnorm")) or task.bn_fold
        self._after_convert(entry, result, has_bn)
        entry["matches_documentation"] = compare_with_documentation(entry)
        entry["first_failure"] = _first_failure(entry, self.matrix["stage_keys"])
        if axis is not None:
            entry["recipe_stages"] = self._recipe_stages(task, result, float_crash, workdir)
        return entry

    def _recipe_stages(self, task: Task, result: dict | None, float_crash: str | None, workdir: Path) -> dict:
        from qat_harness.layers.recipes import FLOAT_KEY

        axis = self.recipe_axis
        if float_crash:
            cells = axis.every_cell(SKIP, "no float .tflite: its conversion crashed the probe child")
            cells[FLOAT_KEY] = stage(ERROR, float_crash)
            return cells
        if result is None and axis.wants_float_model:
            return axis.every_cell(SKIP, "no float .tflite: the probe child failed before it")
        float_result = (result or {}).get("float")
        if float_result is None and axis.wants_float_model:
            why = (result or {}).get("error") or (result or {}).get("stages", {}).get("qat", {}).get("reason")
            return axis.every_cell(SKIP, f"no float .tflite: the probe child stopped before it ({why})")
        try:
            return axis.judge(task.name, float_result, bool((result or {}).get("single_io", True)), workdir)
        except Exception as exc:  # noqa: BLE001 - a harness bug costs the recipe cells, not the probe
            return axis.every_cell(ERROR, f"harness error: {type(exc).__name__}: {exc}"[:300])

    def _after_convert(self, entry: dict, result: dict | None, has_bn: bool) -> None:
        from qat_harness.core import tflite as ti

        stages = entry["stages"]
        blocked = _blocking(stages)
        files = (result or {}).get("files", {})
        info = None
        if blocked is None and files.get("tflite"):
            try:
                info = ti.inspect_model(files["tflite"])
            except ti.InvalidModel as exc:
                stages["int8"] = stage(ERROR, f"the converted model cannot be read: {exc}")
                blocked = "int8"
        for key in ("qat", "convert"):
            stages.setdefault(key, stage(SKIP, f"not reached: {blocked} did not pass"))
        if info is None:
            stages.setdefault("int8", stage(SKIP, f"no .tflite: {blocked} did not pass"))
            if has_bn:
                stages["bn_fold"] = stage(SKIP, f"no .tflite: {blocked} did not pass")
            for name in self.device_names:
                for k in ("runs", "delegated", "numeric"):
                    stages[f"{name}:{k}"] = stage(SKIP, f"no .tflite: {blocked} did not pass")
            return
        stages["int8"] = int8_stage(info, ti)
        if has_bn:
            stages["bn_fold"] = bn_fold_stage(info, ti)
        entry["details"]["tflite"] = {"size_bytes": info.size_bytes, "ops": info.op_counts()}
        if not result.get("single_io", True):
            for name in self.device_names:
                for k in ("runs", "delegated", "numeric"):
                    stages[f"{name}:{k}"] = stage(SKIP, "the device adapters run one input and one output; "
                                                        "this model has more")
            return
        x = np.load(files["inputs"], allow_pickle=False)
        keras_out = np.load(files["keras_outputs"], allow_pickle=False)
        xq = model_inputs(info, x)
        model_path = Path(files["tflite"])
        entry["details"]["numeric"] = {}
        # The reference kernels run first: their outputs are every other device's oracle.
        order = sorted(self.device_names, key=lambda n: n != self.oracle_name)
        if self.oracle_name in self.devices:
            oracle_out, oracle_note = None, f"{self.oracle_name} did not run"
        else:
            oracle_out, oracle_note = self._oracle_outputs(model_path, xq)
        for name in order:
            out = self._on_device(entry, name, model_path, xq, keras_out, info, oracle_out, oracle_note, x)
            if name == self.oracle_name:
                oracle_out = out

    def _trace_cell(self, entry: dict, name: str, dev, model_path: Path, x) -> None:
        """A numeric WARN/FAIL cell gets the trace that says at which op the device departs
        from the reference kernels (a probe has no float .tflite: the device stage only)."""
        from qat_harness.trace import command as trace_command

        out = self.out_dir / "traces" / safe_name(entry["name"]) / safe_name(name)
        try:
            with self.device_locks[name]:
                result = trace_command.trace_cell(model_path, x, name, dev, out)
        except Exception as exc:  # noqa: BLE001 - a trace explains a cell; it never costs the matrix
            entry["stages"][f"{name}:numeric"]["trace_error"] = f"{type(exc).__name__}: {exc}"[:300]
            return
        trace_command.cell_link(entry["stages"], name, result, self.out_dir)

    def _oracle_outputs(self, model_path: Path, xq):
        if self.oracle is None:
            return None, self.oracle_note
        try:
            with self.device_locks[self.oracle_name]:
                return self.oracle.run(model_path, xq, RUN_TIMEOUT_S).outputs, ""
        except DeviceError as exc:
            return None, f"{self.oracle_name} failed: {exc.kind}: {exc.reason}"

    def _on_device(self, entry, name, model_path, xq, keras_out, info, oracle_out, oracle_note,
                   x=None) -> None:
        stages = entry["stages"]
        keys = [f"{name}:runs", f"{name}:delegated", f"{name}:numeric"]
        if name in self.unavailable:
            for k in keys:
                stages[k] = stage(SKIP, f"device not available: {self.unavailable[name]}")
            return None
        dev = self.devices[name]
        workdir = model_path.parent / safe_name(name)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with self.device_locks[name]:
                path, prepared = dev.prepare(model_path, workdir)
                run = dev.run(path, xq, RUN_TIMEOUT_S)
        except DeviceError as exc:
            stages[keys[0]] = stage(device_error_verdict(exc), f"{exc.kind}: {exc.reason}")
            stages[keys[1]] = stage(SKIP, "did not run")
            stages[keys[2]] = stage(SKIP, "did not run")
            return None
        stages[keys[0]] = stage(PASS, f"ran {len(xq)} inputs")
        stages[keys[1]] = delegated_stage(dev.role, run.delegation or prepared)
        cell = numeric_stage(dev.role, np.asarray(run.outputs), oracle_out, oracle_note, keras_out,
                             info.tensor(info.outputs[0]))
        stages[keys[2]] = cell
        entry["details"]["numeric"][name] = cell.get("details", {})
        if cell["verdict"] in (WARN, FAIL) and x is not None and dev.role is not Role.ORACLE:
            self._trace_cell(entry, name, dev, model_path, x)
        if run.simulated or dev.simulated:  # never let a simulator pass for hardware
            for k in keys:
                stages[k]["reason"] += " [SIMULATED device]"
                stages[k]["simulated"] = True
        return np.asarray(run.outputs)




def error_cells(matrix: dict) -> list[str]:
    """'probe stage' for every ERROR cell (a crash, a hang, a broken probe): what makes the
    ``layers`` command exit non-zero."""
    return [f"{p['name']} {key}" for p in matrix.get("probes", []) if p
            for cells in (p.get("stages", {}), p.get("recipe_stages", {}))
            for key, cell in cells.items() if cell.get("verdict") == ERROR]


def _blocking(stages: dict) -> str | None:
    for key in ("qat", "convert"):
        cell = stages.get(key)
        if cell is None or cell["verdict"] not in (PASS, WARN):
            return key
    return None


def _first_failure(entry: dict, keys: list[str]) -> str | None:
    for key in keys:
        cell = entry["stages"].get(key)
        if cell and cell["verdict"] in (FAIL, ERROR):
            return key
    return None


def _cell_summary(entry: dict) -> str:
    bad = [f"{k} {c['verdict']}" for k, c in entry["stages"].items() if c["verdict"] not in (PASS, SKIP)]
    text = "all PASS" if not bad else ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else "")
    recipes = entry.get("recipe_stages")
    if recipes:
        from qat_harness.layers.recipes import recipe_verdicts
        text += "; recipes: " + ", ".join(f"{r} {v}" for r, v in recipe_verdicts(recipes).items())
    return text


# -- documentation ------------------------------------------------------------------------------
def compare_with_documentation(entry: dict) -> dict:
    """Does the measurement agree with what tfmot documents? ``agrees`` is None when the two
    cannot be compared (no documentation, or the stage errored)."""
    doc = entry.get("documented")
    stages = entry["stages"]
    qat = stages.get("qat", {}).get("verdict")
    if not doc or doc.get("status") == "unknown":
        return {"agrees": None, "note": "no documentation read for this probe"}
    status = doc["status"]
    predicted = doc.get("predicts", {}).get("qat")
    if qat == ERROR:
        return {"agrees": None, "note": f"documented '{status}'; not comparable: {stages['qat']['reason']}"}
    if predicted == "FAIL":
        if qat == FAIL:
            return {"agrees": True, "note": f"documented '{status}' ({doc.get('summary', '')}); "
                                            "QAT refuses it, as documented"}
        return {"agrees": False,
                "note": f"DIFFERS: documented '{status}' ({doc.get('summary', '')}), yet QAT went "
                        f"through ({qat}: {stages['qat']['reason']})"}
    if qat == FAIL:
        return {"agrees": False, "note": f"DIFFERS: documented '{status}', but QAT refused it: "
                                         f"{stages['qat']['reason']}"}
    later = [(k, c) for k, c in stages.items() if k not in ("qat",) and c["verdict"] in (FAIL, ERROR)]
    if later:
        k, c = later[0]
        return {"agrees": False,
                "note": f"DIFFERS: documented '{status}' (the QAT guide: allow-listed layers are "
                        f"supported), but {k} is {c['verdict']}: {c['reason']}"}
    note = f"documented '{status}'; QAT and every later stage that ran work"
    if status != "supported":
        note += f" (caveat: {doc.get('summary', '')})"
    return {"agrees": True, "note": note}


# -- claims M1-M5 -------------------------------------------------------------------------------
_EXPECTED = {
    "M1-api": "Sequential and Functional models quantize; a subclassed model gets a clear "
              "'unsupported' verdict, not a crash",
    "M2-layers": "every allow-listed layer passes QAT, conversion, full-int8, runs and agrees",
    "M3-bn-fold": "BatchNorm after Conv2D / DepthwiseConv2D folded: no separate BN/MUL/ADD op",
    "M4-concat": "concat works in (at least) the basic case; the limits are reported",
    "M5-rnn": "RNN/LSTM not covered: refused cleanly (no crash, no silent float model)",
}


def _claim(cid: str, device: str, verdict: str, measured, reason: str, simulated: bool = False) -> dict:
    if simulated:
        reason += " [SIMULATED device]"
    return ClaimResult(cid, "layer-probes", device, Verdict(verdict), measured, _EXPECTED[cid], reason,
                       simulated).to_dict()


def _unavailable(matrix: dict, device: str) -> str:
    """'' for a device that ran, else why it did not."""
    d = matrix.get("devices", {}).get(device)
    if d is None or d.get("available", True):
        return ""
    return f"device not available: {d.get('reason', '')}"


def _simulated(matrix: dict, device: str) -> bool:
    return bool(matrix.get("devices", {}).get(device, {}).get("simulated"))


def _end_to_end(entry: dict, device: str | None) -> tuple[str, str, str]:
    """A probe's overall verdict on a device (or on the stages before devices): the worst
    stage, with 'delegated' counted as at most WARN (partial delegation is speed, not
    support). Returns (verdict, 'stage: reason', stage)."""
    keys = ["qat", "convert", "int8", "bn_fold"]
    if device:
        keys += [f"{device}:runs", f"{device}:numeric"]
    worst_v, where, key = PASS, "", ""
    for k in keys:
        cell = entry["stages"].get(k)
        if not cell:
            continue
        v = cell["verdict"]
        if v == SKIP and k in ("qat", "convert"):
            v = FAIL
        if v == SKIP:
            continue
        if _SEVERITY[v] > _SEVERITY[worst_v]:
            worst_v, where, key = v, f"{k}: {cell['reason']}", k
    if device:
        d = entry["stages"].get(f"{device}:delegated")
        if d and d["verdict"] in (WARN, FAIL) and worst_v == PASS:
            worst_v, where, key = WARN, f"{device}:delegated: {d['reason']}", f"{device}:delegated"
    return worst_v, where, key


def _with(matrix: dict, claim: str) -> list[dict]:
    return [p for p in matrix.get("probes", []) if p and claim in p.get("claims", [])]


def _device_list(matrix: dict) -> list[str]:
    return list(matrix.get("devices", {})) or ["any"]


def m_claims_from_matrix(matrix: dict) -> list[dict]:
    """Claim entries M1-api .. M5-rnn drawn from a layer matrix (layers.json content)."""
    return [_m1(matrix), *_m2(matrix), _m3(matrix), *_m4(matrix), _m5(matrix)]


def _m1(matrix: dict) -> dict:
    probes = {p["name"]: p for p in _with(matrix, "M1")}
    if not probes:
        return _claim("M1-api", "any", SKIP, None, "no model-kind probes in this run")
    measured = {n: p["stages"].get("qat", {}).get("verdict") for n, p in probes.items()}
    parts, verdict = [], PASS
    for name in ("sequential_model", "functional_model"):
        if name in probes:
            v, where, _ = _end_to_end(probes[name], None)
            if v in (FAIL, ERROR):
                verdict = worst([verdict, v])
                parts.append(f"{name} fails ({where})")
            else:
                parts.append(f"{name} quantizes and converts")
    sub = probes.get("subclassed_model")
    if sub:
        q = sub["stages"].get("qat", {})
        if q.get("verdict") == FAIL:
            parts.append(f"subclassed refused cleanly ({q['reason']})")
        elif q.get("verdict") == ERROR:
            verdict = worst([verdict, ERROR])
            parts.append(f"subclassed crashed the harness stage ({q['reason']})")
        else:
            verdict = worst([verdict, WARN])
            parts.append(f"subclassed was NOT refused ({q.get('verdict')}): the documentation says unsupported")
    nested = probes.get("nested_model")
    if nested:
        q = nested["stages"].get("qat", {})
        parts.append(f"nested model (the guide is silent): qat {q.get('verdict')} ({q.get('reason', '')})")
    return _claim("M1-api", "any", verdict, measured, "; ".join(parts))


def _m2(matrix: dict) -> list[dict]:
    probes = _with(matrix, "M2")
    if not probes:
        return [_claim("M2-layers", "any", SKIP, None, "no allow-listed probes in this run")]
    out = []
    for device in _device_list(matrix):
        if _unavailable(matrix, device):
            out.append(_claim("M2-layers", device, SKIP, None, _unavailable(matrix, device)))
            continue
        dev = None if device == "any" else device
        results = {p["name"]: _end_to_end(p, dev) for p in probes}
        n_pass = sum(1 for r in results.values() if r[0] == PASS)
        bad = {n: r for n, r in results.items() if r[0] != PASS}
        verdict = worst([r[0] for r in results.values()])
        reason = f"{n_pass}/{len(results)} allow-listed probes pass every stage"
        if bad:
            reason += "; " + _list_bad(bad)
        out.append(_claim("M2-layers", device, verdict,
                          {"passing": n_pass, "total": len(results),
                           "not_passing": {n: r[0] for n, r in bad.items()}}, reason,
                          _simulated(matrix, device)))
    return out


def _list_bad(bad: dict) -> str:
    """'FAIL: a (int8: why); ERROR: ...; WARN: b (cpu:delegated), c (cpu:numeric)': worst
    first, with the reason for FAIL and ERROR and only the stage for WARN."""
    parts = []
    for verdict in (ERROR, FAIL, WARN):
        items = [(n, where, key) for n, (v, where, key) in bad.items() if v == verdict]
        if not items:
            continue
        if verdict == WARN:
            text = ", ".join(f"{n} ({key})" for n, _, key in items)
        else:
            text = "; ".join(f"{n} ({where[:160]})" for n, where, _ in items)
        parts.append(f"{verdict}: {text}")
    return "; ".join(parts)


def _m3(matrix: dict) -> dict:
    probes = _with(matrix, "M3")
    folded = [p for p in probes if p["name"] in _bn_fold_names()]
    if not folded:
        return _claim("M3-bn-fold", "any", SKIP, None, "no Conv2D/DepthwiseConv2D + BN probes in this run")
    measured, parts, verdicts = {}, [], []
    for p in folded:
        cell = p["stages"].get("bn_fold") or stage(SKIP, "no bn_fold stage")
        v = cell["verdict"]
        if v == SKIP:  # BN after conv that never reached a .tflite: the claim is not met
            v = FAIL
        verdicts.append(v)
        measured[p["name"]] = cell["verdict"]
        parts.append(f"{p['name']}: {cell['reason']}")
    others = []
    for p in (p for p in probes if p not in folded):  # BN elsewhere: reported as it behaves
        fold, q = p["stages"].get("bn_fold"), p["stages"].get("qat", {})
        if fold and fold["verdict"] != SKIP:
            measured[p["name"]] = fold["verdict"]
            others.append(f"{p['name']} bn_fold {fold['verdict']}")
        else:
            measured[p["name"]] = f"qat {q.get('verdict')}"
            others.append(f"{p['name']} qat {q.get('verdict')} ({q.get('reason', '')[:90]})")
    if others:
        parts.append("BN elsewhere: " + "; ".join(others))
    return _claim("M3-bn-fold", "any", worst(verdicts), measured, "; ".join(parts))


def _bn_fold_names() -> set[str]:
    from qat_harness.models.probes import PROBES
    return {n for n, p in PROBES.items() if p.bn_fold}


def _m4(matrix: dict) -> list[dict]:
    probes = _with(matrix, "M4")
    if not probes:
        return [_claim("M4-concat", "any", SKIP, None, "no concat probes in this run")]
    out = []
    for device in _device_list(matrix):
        if _unavailable(matrix, device):
            out.append(_claim("M4-concat", device, SKIP, None, _unavailable(matrix, device)))
            continue
        dev = None if device == "any" else device
        results = {p["name"]: _end_to_end(p, dev) for p in probes}
        basic = results.get("concat_channels")
        failing = {n: r for n, r in results.items() if r[0] != PASS}
        measured = {n: r[0] for n, r in results.items()}
        if basic is not None and basic[0] in (FAIL, ERROR):
            verdict = basic[0]
            reason = f"even the basic channel concat does not work: {basic[1]}"
        elif not failing:
            verdict, reason = PASS, f"concat works in all {len(results)} tested cases"
        else:
            verdict = WARN if basic is not None else worst(r[0] for r in failing.values())
            reason = (f"{len(results) - len(failing)}/{len(results)} concat cases work; limited: "
                      + _list_bad(failing))
        out.append(_claim("M4-concat", device, verdict, measured, reason, _simulated(matrix, device)))
    return out


def _m5(matrix: dict) -> dict:
    probes = _with(matrix, "M5")
    if not probes:
        return _claim("M5-rnn", "any", SKIP, None, "no RNN probes in this run")
    measured, parts, verdict = {}, [], PASS
    for p in probes:
        v, where, _ = _end_to_end(p, None)
        first = p.get("first_failure")
        measured[p["name"]] = f"{first} {p['stages'][first]['verdict']}" if first else "works"
        if v == ERROR:
            verdict = worst([verdict, ERROR])
            parts.append(f"{p['name']} crashed ({where})")
        elif v == FAIL:
            parts.append(f"{p['name']} refused at {where}")
        else:
            verdict = worst([verdict, WARN])
            parts.append(f"{p['name']} goes through QAT, conversion and full-int8: the documentation "
                         "(not covered) is more pessimistic than measured")
    return _claim("M5-rnn", "any", verdict, measured, "; ".join(parts))


# -- entry point --------------------------------------------------------------------------------
def run_layers(layers: list[str] | None, devices: list[str], out_dir: Path, user_probes=(),
               progress=None, workers: int | None = None, timeout_s: float = PROBE_TIMEOUT_S,
               n_examples: int = N_EXAMPLES, device_options: dict | None = None,
               recipes: list[str] | None = None) -> dict:
    """Run the probes (all built-in ones when ``layers`` is None, plus ``user_probes``, each
    ``module:function``) through every stage on ``devices``; write ``out_dir/layers.json``
    and ``out_dir/layers.md``; return the matrix (the layers.json content).

    ``workers`` probe children run at once (default: min(2, cores), or
    $QAT_HARNESS_LAYER_WORKERS);
    ``timeout_s`` bounds one probe's qat + convert stages. ``progress`` receives one line per
    probe; when it is given (the CLI), the compact matrix is also printed on stdout at the
    end. Raises UsageError for unknown probes or devices, a malformed user probe reference
    or an unwritable folder. ``device_options`` maps a device name to the options it declares
    (see ``devices.registry.split_options``). An unavailable device gets SKIP cells with its
    reason. ``recipes`` (names of ``recipes.catalog``, e.g. ['int4-weight', '16x8']) adds the
    recipe axis (see ``layers.recipes``); an unknown name is a UsageError."""
    from qat_harness.layers import report as layers_report

    tasks = _tasks(layers, user_probes)
    if recipes:
        from qat_harness.layers.recipes import check_recipes
        recipes = check_recipes(recipes)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ".write-test").write_text("")
        (out_dir / ".write-test").unlink()
    except OSError as exc:
        raise UsageError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None
    if workers is None:
        # Two children on two cores measured fastest (51 probes: 1 -> 76 s, 2 -> 43 s, 3 -> 51 s).
        default = max(1, min(2, os.cpu_count() or 1))
        try:
            workers = int(os.environ.get("QAT_HARNESS_LAYER_WORKERS", default))
        except ValueError:
            raise UsageError("QAT_HARNESS_LAYER_WORKERS must be an integer") from None
    run = MatrixRun(tasks, devices, out_dir, progress, workers, timeout_s, n_examples, device_options,
                    recipes)
    run.open_devices()
    matrix = run.execute()
    if progress:  # a person is watching (the CLI): the compact matrix goes to stdout
        progress(f"{len(matrix['probes'])} probes in {matrix['elapsed_s']} s")
        print(layers_report.render_table(matrix), flush=True)
    return matrix
