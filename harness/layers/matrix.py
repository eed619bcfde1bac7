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

import datetime as dt
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qat_harness.claims import AllowListedLayers, judge_layer_matrix
from qat_harness.claims.layer_matrix import LayerMatrix
from qat_harness.core.child import ChildFailure, ServingChild
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.core.tflite import model_inputs
from qat_harness.devices import registry
from qat_harness.devices.base import Role
from qat_harness.devices.device_set import DeviceSet
from qat_harness.layers.stages import (
    ERROR,
    FAIL,
    PASS,
    SKIP,
    WARN,
    blocking,
    bn_fold_stage,
    compare_with_documentation,
    delegated_stage,
    device_error_verdict,
    first_failure,
    int8_stage,
    numeric_stage,
    stage,
)
from qat_harness.layers.tasks import Task, make_tasks
from qat_harness.record.folder import safe_name
from qat_harness.results import plain

CHILD = "qat_harness.layers.child"
USER_DIR_ENV = "QAT_HARNESS_PROBE_PATH"  # read by the child (layers.child)
N_EXAMPLES = 16
PROBE_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 120.0
SCHEMA_VERSION = 1


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
        self.device_set: DeviceSet | None = None
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
            "devices": {}, "stage_keys": [], "thresholds": AllowListedLayers.thresholds(),
            "settings": {"examples": n_examples, "workers": self.workers, "probe_timeout_s": timeout_s,
                         "qat": "tfmot default 8-bit quantize_model, one Adam step (lr 1e-3, MSE)"},
            "probes": [None] * len(tasks), "claims": [], "elapsed_s": None}

    # devices
    def open_devices(self, opened: DeviceSet | None = None) -> None:
        """Use ``opened`` (the CLI's set, already probed) or open the devices here; a device
        that is not available gets SKIP cells with its reason. The set is closed by ``execute``."""
        self.device_set = opened or DeviceSet.open(self.device_names, per_device_options=self.device_options,
                                                   num_threads=2, require_available=False)
        for name in self.device_names:
            avail = self.device_set.availability[name]
            dev_class = registry.device_class(name)
            self.matrix["devices"][name] = {"available": avail.available, "reason": avail.reason,
                                            "simulated": self.device_set[name].simulated if avail.available
                                            else dev_class.simulated, "role": dev_class.role.value}
            if avail.available:
                self.devices[name] = self.device_set[name]
                self.device_locks[name] = threading.Lock()
            else:
                self.unavailable[name] = avail.reason
        self.oracle = self.device_set.oracle()
        self.oracle_name = self.oracle.name if self.oracle is not None else "cpu-ref"
        if self.oracle is None:
            self.oracle_note = self.device_set.oracle_problem or "no oracle device"
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
            self.matrix["claims"] = [c.to_dict() for c in judge_layer_matrix(LayerMatrix.from_json(self.matrix))]
            self.matrix["finished"] = _now()
            self.matrix["elapsed_s"] = round(time.perf_counter() - t0, 1)
            if self.matrix["status"] == "running":
                self.matrix["status"] = "interrupted"
            layers_report.write_json(self.matrix, self.out_dir / "layers.json")
            layers_report.write_markdown(self.matrix, self.out_dir / "layers.md")
            if self.device_set is not None:
                self.device_set.close()
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
        entry["first_failure"] = first_failure(entry, self.matrix["stage_keys"])
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
        blocked = blocking(stages)
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


def _cell_summary(entry: dict) -> str:
    bad = [f"{k} {c['verdict']}" for k, c in entry["stages"].items() if c["verdict"] not in (PASS, SKIP)]
    text = "all PASS" if not bad else ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else "")
    recipes = entry.get("recipe_stages")
    if recipes:
        from qat_harness.layers.recipes import recipe_verdicts
        text += "; recipes: " + ", ".join(f"{r} {v}" for r, v in recipe_verdicts(recipes).items())
    return text



# -- entry point --------------------------------------------------------------------------------
def run_layers(layers: list[str] | None, devices: list[str], out_dir: Path, user_probes=(),
               progress=None, workers: int | None = None, timeout_s: float = PROBE_TIMEOUT_S,
               n_examples: int = N_EXAMPLES, device_options: dict | None = None,
               recipes: list[str] | None = None, opened: DeviceSet | None = None) -> dict:
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
    recipe axis (see ``layers.recipes``); an unknown name is a UsageError. ``opened``: the
    devices already opened and probed by the caller (closed here, like those opened here)."""
    from qat_harness.layers import report as layers_report

    tasks = make_tasks(layers, user_probes)
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
    run.open_devices(opened)
    matrix = run.execute()
    if progress:  # a person is watching (the CLI): the compact matrix goes to stdout
        progress(f"{len(matrix['probes'])} probes in {matrix['elapsed_s']} s")
        print(layers_report.render_table(matrix), flush=True)
    return matrix
