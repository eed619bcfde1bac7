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
adapters, which isolate themselves (``layers.device_runs``). Probes run ``workers`` at a time
(one child each). The matrix is the typed ``layers.tree.MatrixReport``; layers.json is its ``to_json``.

A user probe is ``module:function``; see ``layers.child.load_probe`` for what the function
may return (a model, or ``(model, {"LayerClass": QuantizeConfig})``).
"""
from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from qat_harness.claims import AllowListedLayers, judge_layer_matrix
from qat_harness.core.child import ChildFailure, ServingChild
from qat_harness.core.errors import UsageError
from qat_harness.devices.device_set import DeviceSet
from qat_harness.layers import report as layers_report
from qat_harness.layers.cells import FLOAT_KEY, PROBE_STAGES, StageCell, cell, device_stage_keys
from qat_harness.layers.device_runs import MatrixDevices, ProbeFile, run_on_devices, skip_device_cells
from qat_harness.layers.protocol import ProbeResult
from qat_harness.layers.recipes import RecipeAxis, check_recipes, recipe_verdicts
from qat_harness.layers.stages import (
    ERROR,
    PASS,
    SKIP,
    blocking,
    bn_fold_stage,
    compare_with_documentation,
    first_failure,
    int8_stage,
)
from qat_harness.layers.tasks import Task, make_tasks
from qat_harness.layers.tree import (
    DocumentationMatch,
    MatrixReport,
    MatrixSettings,
    NumericThresholds,
    ProbeDetails,
    ProbeEntry,
    TfliteSummary,
)
from qat_harness.record.folder import safe_name

CHILD = "qat_harness.layers.child"
USER_DIR_ENV = "QAT_HARNESS_PROBE_PATH"  # read by the child (layers.child)
N_EXAMPLES = 16
PROBE_TIMEOUT_S = 300.0

Progress = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ProbeChild(Protocol):
    """What the matrix needs of a probe child (``core.child.ServingChild``)."""
    def run(self, request: dict, timeout_s: float) -> dict: ...


# -- the run ------------------------------------------------------------------------------------
class MatrixRun:
    def __init__(self, tasks: list[Task], devices: list[str], out_dir: Path, progress: Progress | None,
                 workers: int, timeout_s: float, n_examples: int, device_options: dict | None = None,
                 recipes: list[str] | None = None):
        from qat_harness.environment import environment

        self.tasks, self.device_names, self.out_dir = tasks, list(devices), Path(out_dir)
        self.progress: Progress = progress or (lambda _msg: None)
        self.workers, self.timeout_s, self.n_examples = max(1, workers), timeout_s, n_examples
        self.work = self.out_dir / "work"
        self.device_options = dict(device_options or {})
        self.lock = threading.Lock()
        self.devices: MatrixDevices | None = None
        self.done = 0
        self.recipes = list(recipes or [])
        self.recipe_axis: RecipeAxis | None = None  # made in open_devices
        self.slots: list[ProbeEntry | None] = [None] * len(tasks)  # in the order asked, as they finish
        self.matrix = MatrixReport(started=_now(), environment=environment(2),
                                   thresholds=NumericThresholds(**AllowListedLayers.thresholds()),
                                   settings=MatrixSettings(n_examples, self.workers, timeout_s))

    # devices
    def open_devices(self, opened: DeviceSet | None = None) -> None:
        """Use ``opened`` (the CLI's set, already probed) or open the devices here; a device
        that is not available gets SKIP cells with its reason. They are closed by ``execute``."""
        self.devices = MatrixDevices.open_all(self.device_names, self.device_options, opened)
        self.matrix.devices = self.devices.info()
        self.matrix.stage_keys = [*PROBE_STAGES, *[k for n in self.device_names for k in device_stage_keys(n)]]
        if self.recipes:
            from qat_harness.build.cache import default_dir

            kernels, skipped, simulated = self.devices.recipe_kernels()
            self.recipe_axis = RecipeAxis(self.recipes, self.device_names, kernels, skipped, simulated,
                                          self.devices.run_file, default_dir() / "recipes", self.timeout_s,
                                          oracle=self.devices.oracle_name if self.devices.oracle is not None else None)
            self.matrix.recipe_axis = self.recipe_axis.describe()

    def _written(self) -> None:
        self.matrix.probes = [e for e in self.slots if e is not None]
        layers_report.write_json(self.matrix, self.out_dir / "layers.json")

    def execute(self) -> MatrixReport:
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

        def worker(child: ServingChild) -> None:
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
                        self.slots[index] = entry
                        self.done += 1
                        self.progress(f"[{self.done}/{len(self.tasks)}] {task.name}: {_cell_summary(entry)}")
                        self._written()
            finally:
                child.close()

        pool = ThreadPoolExecutor(max(1, len(children)))
        try:
            for f in [pool.submit(worker, c) for c in children]:
                f.result()
            self.matrix.status = "complete"
        except BaseException:
            stop.set()  # Ctrl-C: no new probe starts, the running children are killed
            for c in children:
                c.kill()
            raise
        finally:
            pool.shutdown(wait=True)
            self.matrix.probes = [e for e in self.slots if e is not None]
            folding = {t.name for t in self.tasks if t.bn_fold}
            self.matrix.claims = judge_layer_matrix(self.matrix.layer_matrix(folding))
            self.matrix.finished = _now()
            self.matrix.elapsed_s = round(time.perf_counter() - t0, 1)
            if self.matrix.status == "running":
                self.matrix.status = "interrupted"
            layers_report.write_json(self.matrix, self.out_dir / "layers.json")
            layers_report.write_markdown(self.matrix, self.out_dir / "layers.md")
            if self.devices is not None:
                self.devices.close()
        return self.matrix

    # one probe
    def _entry(self, task: Task) -> ProbeEntry:
        return ProbeEntry(task.name, task.layer, task.group, task.description, list(task.claims), task.source)

    def error_entry(self, task: Task, reason: str) -> ProbeEntry:
        entry = self._entry(task)
        entry.stages = {k: cell(SKIP, "not reached") for k in self.matrix.stage_keys if k != "bn_fold"}
        entry.stages["qat"] = cell(ERROR, reason)
        entry.matches_documentation = DocumentationMatch(None, "not comparable: " + reason)
        entry.first_failure = "qat"
        if self.recipe_axis is not None:
            entry.recipe_stages = self.recipe_axis.every_cell(SKIP, f"not reached: {reason}")
        return entry

    def probe(self, task: Task, child: ProbeChild) -> ProbeEntry:
        entry = self._entry(task)
        entry.details = ProbeDetails()
        workdir = self.work / safe_name(task.name)
        axis = self.recipe_axis
        request = task.request(workdir, self.n_examples, axis is not None and axis.wants_float_model)
        t0 = time.perf_counter()
        float_crash = None
        result: ProbeResult | None = None
        try:
            result = ProbeResult.from_json(child.run(request.to_json(), self.timeout_s))
        except ChildFailure as exc:
            failure = exc
            if exc.stage == "float":
                # the float conversion took the child down after the int8 stages: those are
                # redone without it (a fresh child), the recipe cells get the crash
                float_crash = exc.reason
                try:
                    request = task.request(workdir, self.n_examples, False)
                    result = ProbeResult.from_json(child.run(request.to_json(), self.timeout_s))
                except ChildFailure as again:
                    failure = again
            if result is None:
                stage = failure.stage if failure.stage in ("qat", "convert") else "qat"
                entry.stages[stage] = cell(ERROR, failure.reason)
        entry.details.child_s = round(time.perf_counter() - t0, 2)
        if result is not None:
            if result.error:
                entry.stages.setdefault("qat", cell(ERROR, result.error))
            entry.stages.update({k: StageCell(c.verdict, c.reason) for k, c in result.stages.items()})
            entry.layer = result.layer or entry.layer
            entry.documented = result.documented
            entry.details.timings = dict(result.timings)
            if result.custom_configs:
                entry.details.custom_quantize_configs = list(result.custom_configs)
        has_bn = bool(result and result.has_batchnorm) or task.bn_fold
        self._after_convert(entry, result, has_bn)
        entry.matches_documentation = compare_with_documentation(entry.documented, entry.stages)
        entry.first_failure = first_failure(entry.stages, self.matrix.stage_keys)
        if axis is not None:
            entry.recipe_stages = self._recipe_stages(axis, task, result, float_crash, workdir)
        return entry

    def _recipe_stages(self, axis: RecipeAxis, task: Task, result: ProbeResult | None, float_crash: str | None,
                       workdir: Path) -> dict[str, StageCell]:
        if float_crash:
            cells = axis.every_cell(SKIP, "no float .tflite: its conversion crashed the probe child")
            cells[FLOAT_KEY] = cell(ERROR, float_crash)
            return cells
        if result is None and axis.wants_float_model:
            return axis.every_cell(SKIP, "no float .tflite: the probe child failed before it")
        float_model = result.float_model if result is not None else None
        if float_model is None and axis.wants_float_model:
            qat = result.stages.get("qat") if result is not None else None
            why = (result.error if result is not None else None) or (qat.reason if qat is not None else None)
            return axis.every_cell(SKIP, f"no float .tflite: the probe child stopped before it ({why})")
        try:
            return axis.judge(task.name, float_model, result.single_io if result is not None else True, workdir)
        except Exception as exc:  # noqa: BLE001 - a harness bug costs the recipe cells, not the probe
            return axis.every_cell(ERROR, f"harness error: {type(exc).__name__}: {exc}"[:300])

    def _after_convert(self, entry: ProbeEntry, result: ProbeResult | None, has_bn: bool) -> None:
        from qat_harness.core import tflite as ti

        stages = entry.stages
        blocked = blocking(stages)
        files = result.files if result is not None else None
        info = None
        if blocked is None and files is not None:
            try:
                info = ti.inspect_model(files.tflite)
            except ti.InvalidModel as exc:
                stages["int8"] = cell(ERROR, f"the converted model cannot be read: {exc}")
                blocked = "int8"
        for key in ("qat", "convert"):
            stages.setdefault(key, cell(SKIP, f"not reached: {blocked} did not pass"))
        if info is None or files is None or result is None:
            no_file = f"no .tflite: {blocked} did not pass"
            stages.setdefault("int8", cell(SKIP, no_file))
            if has_bn:
                stages["bn_fold"] = cell(SKIP, no_file)
            skip_device_cells(entry, self.device_names, no_file)
            return
        stages["int8"] = int8_stage(info)
        if has_bn:
            stages["bn_fold"] = bn_fold_stage(info)
        entry.details.tflite = TfliteSummary(info.size_bytes, info.op_counts())
        if not result.single_io:
            skip_device_cells(entry, self.device_names,
                              "the device adapters run one input and one output; this model has more")
            return
        assert self.devices is not None  # opened before any probe runs
        probe = ProbeFile(Path(files.tflite), info, np.load(files.inputs, allow_pickle=False),
                          np.load(files.keras_outputs, allow_pickle=False))
        run_on_devices(self.devices, entry, probe, self.out_dir)


def _cell_summary(entry: ProbeEntry) -> str:
    bad = [f"{k} {c.verdict.value}" for k, c in entry.stages.items() if c.verdict not in (PASS, SKIP)]
    text = "all PASS" if not bad else ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else "")
    if entry.recipe_stages:
        text += "; recipes: " + ", ".join(f"{r} {v.value}" for r, v in recipe_verdicts(entry.recipe_stages).items())
    return text


# -- entry point --------------------------------------------------------------------------------
def run_layers(layers: list[str] | None, devices: list[str], out_dir: Path, user_probes: Iterable[str] = (),
               progress: Progress | None = None, workers: int | None = None, timeout_s: float = PROBE_TIMEOUT_S,
               n_examples: int = N_EXAMPLES, device_options: dict | None = None,
               recipes: list[str] | None = None, opened: DeviceSet | None = None) -> MatrixReport:
    """Run the probes (all built-in ones when ``layers`` is None, plus ``user_probes``, each
    ``module:function``) through every stage on ``devices``; write ``out_dir/layers.json``
    and ``out_dir/layers.md``; return the matrix (``to_json()``: the layers.json content).

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
    tasks = make_tasks(layers, user_probes)
    if recipes:
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
        progress(f"{len(matrix.probes)} probes in {matrix.elapsed_s} s")
        print(layers_report.render_table(matrix), flush=True)
    return matrix
