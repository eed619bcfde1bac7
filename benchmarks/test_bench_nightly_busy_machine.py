"""The nightly gate on a machine others use (issue #25), through ``cmd_nightly`` with its seams:
each "night" re-times already built files on the real CPU device (the timing stage's own
``latency.time_variants`` inside ``machine_state.watch``), so nothing is retrained, and the
re-timing that confirms a suspect is the nightly's own (``nightly_gate.device_timer``).

    python3 -m pytest benchmarks/test_bench_nightly_busy_machine.py --benchmark-only -s --timeout=0

* false alarms: ``QAT_BENCH_NIGHTS`` (20) nights of digits_cnn, every ``QAT_BENCH_BUSY_EVERY``-th
  (3rd) with a CPU-bound load of our own (one spinning process per core, bounded in time)
  while it times, and the int8 file's bytes changing every night (the same model), so every
  night's confirming re-time runs too. Counted: regressions (must be 0), the nights the gate
  names busy and the nights it re-timed.
* detection: ``QAT_BENCH_TRIALS`` (10) trials of MobileNet V2 (96x96): last night's int8 file,
  then tonight's with an extra layer (about 20% slower, measured quiet before the trials),
  quiet and under the injected load.
  Caught = exit 1 blaming the model file.
* runtime: the same files (MobileNet V2's from ``QAT_BENCH_RUNTIME_FOLDER``, else digits_cnn's),
  last night loaded by the installed ai_edge_litert, tonight by a copy of it whose
  ``Interpreter.invoke`` spins 20% longer on models with int8 inputs (a runtime slowdown
  simulated in the runtime the device loads, ``--litert-runtime``). Caught = exit 1 blaming the
  runtime, quiet and under the injected load. The control: a rebuilt copy (its files differ,
  its speed does not), where every blame is false. The gate keeps last night's runtime and
  re-times tonight's files loaded by each runtime in one ABBA schedule.

The digits_cnn files come from ``QAT_BENCH_DIGITS_REPORT`` (a report.json of
``qat-harness run --models digits_cnn``); the MobileNet V2 pair is built once into
``QAT_BENCH_FOLDER``."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qat_harness import cli
from qat_harness.commands.nightly import cmd_nightly
from qat_harness.compare import load, nightly_gate
from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.environment import environment
from qat_harness.measure import latency, machine_state
from qat_harness.options import RunOptions
from qat_harness.record import codec, sections
from qat_harness.record.report import Report
from qat_harness.record.tree import ArtifactsInfo, DeviceDescription, DeviceSection, ModelSection, RunReport

NIGHTS = int(os.environ.get("QAT_BENCH_NIGHTS", "20"))
BUSY_EVERY = int(os.environ.get("QAT_BENCH_BUSY_EVERY", "3"))
TRIALS = int(os.environ.get("QAT_BENCH_TRIALS", "10"))
FOLDER = Path(os.environ.get("QAT_BENCH_FOLDER", "/tmp/qat-bench-nightly"))
DIGITS_REPORT = os.environ.get("QAT_BENCH_DIGITS_REPORT")
SLOWDOWN = 0.20
#: how long each night times its files (``--min-seconds`` of the nightly; the run's default is 1 s)
NIGHT_MIN_SECONDS = float(os.environ.get("QAT_BENCH_NIGHT_MIN_SECONDS", "1"))
UNDER_TEST = "qat_int8"


# -- a load of our own, bounded in time ----------------------------------------------------------
SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\n"


@contextlib.contextmanager
def cpu_load(seconds: float = 120.0):
    """One spinning process per core for at most ``seconds``, stopped when the block ends, each in
    a session of its own, as another job on a shared CI machine is (where the kernel groups CPU
    time by session, that is the harder load: it takes a share of its own)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)], start_new_session=True)
             for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)   # let the load reach the scheduler before the canary runs
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


# -- a night: already built files re-timed as the device's timing stage times them ----------------
def base_report(model: str, files: dict[str, Path]) -> RunReport:
    opts = RunOptions(models=[model], devices=["cpu"], out=FOLDER / "unused", device_options={"cpu": {}})
    run = RunReport(environment(opts.num_threads), opts)
    run.models[model] = ModelSection(artifacts=ArtifactsInfo(files=dict(files)),
                                     devices={"cpu": DeviceSection(simulated=False)})
    return run


def night_run(base: RunReport, model: str, files: dict[str, Path], litert_runtime: Path | None = None):
    """The ``run`` seam of ``cmd_nightly``: tonight's report, its latency timed now, on the CPU
    device loading LiteRT from ``litert_runtime`` (None: the installed one)."""
    def run(args, out=None):
        report_run = copy.deepcopy(base)
        report_run.started = dt.datetime.now(dt.timezone.utc).isoformat()
        options = {"litert_runtime": str(litert_runtime)} if litert_runtime else {}
        report_run.options = dataclasses.replace(report_run.options, device_options={"cpu": options})
        report_run.models[model].artifacts = ArtifactsInfo(files=dict(files))
        section = report_run.models[model].devices["cpu"]
        dev = CpuDevice(num_threads=report_run.options.num_threads, **options)
        report_run.devices["cpu"] = DeviceDescription.of(dev.describe())
        samples = {v: _zeros(p) for v, p in files.items()}
        settings = dataclasses.replace(report_run.options.bench, num_threads=report_run.options.num_threads,
                                       min_seconds=NIGHT_MIN_SECONDS)
        with machine_state.watch() as window:
            measured = latency.time_variants(dev, files, samples, settings, UNDER_TEST)
        load.keep_state(measured.details, window.state)
        sections.record_latency(section, measured)
        report = Report(out, run=report_run)
        report.finish()
        return 0, report
    return run


def _zeros(path: Path):
    from qat_harness.compare.nightly_gate import zero_inputs

    return zero_inputs(path)


@dataclasses.dataclass
class NightResult:
    code: int
    busy_injected: bool
    named_busy: bool
    compare_txt: str


def one_night(folder: Path, index: int, run, busy: bool, timer=None) -> NightResult:
    args = cli.build_parser().parse_args(["nightly", "--out", str(folder)])
    clock = lambda: dt.datetime(2026, 1, 1) + dt.timedelta(days=index)  # noqa: E731 - one night a day
    with cpu_load() if busy else contextlib.nullcontext():
        code = cmd_nightly(args, run=run, clock=clock, timer=timer)
    night_dir = folder / clock().strftime("%Y-%m-%d-%H%M%S")
    text = (night_dir / "compare.txt").read_text() if (night_dir / "compare.txt").exists() else ""
    report = codec.load(night_dir / "report.json")
    named = any(n.text.startswith("timing on cpu: machine busy") for n in report.notes) \
        or "machine busy" in text.split("nightly gate:")[-1]
    return NightResult(code, busy, named, text)


# -- the files ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_files() -> dict[str, Path]:
    if not DIGITS_REPORT:
        pytest.skip("QAT_BENCH_DIGITS_REPORT: give the report.json of `qat-harness run --models digits_cnn`")
    run = codec.load(Path(DIGITS_REPORT))
    files = run.models["digits_cnn"].artifacts.files
    return {v: Path(files[v]) for v in ("float", "qat_int8", "ptq_int8") if v in files}


@pytest.fixture(scope="module")
def mobilenet_pair() -> dict[str, Path]:
    """MobileNet V2 (96x96, untrained: latency only) as float and int8, and the int8 file of the
    same model with one extra 1x1 convolution of ``QAT_BENCH_SLOW_FILTERS`` (1536) filters on its
    last feature map, built once (PTQ int8, random data). 1536 filters made it 20-22% slower on
    this machine's XNNPACK, quiet (1280: +15-17%, 1664: +23-26%, 2048: +28-30%): the detection
    table prints the pair's own quiet slowdown beside what the gate caught."""
    out = FOLDER / "mnv2"
    filters = int(os.environ.get("QAT_BENCH_SLOW_FILTERS", "1536"))
    paths = {"float": out / "float.tflite", "qat_int8": out / "int8.tflite",
             "slow": out / f"int8_slow_{filters}.tflite"}
    if all(p.is_file() for p in paths.values()):
        return paths
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    out.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 96, 96, 3)).astype(np.float32)

    def model(extra_filters: int) -> keras.Model:
        keras.utils.set_random_seed(0)
        base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, include_top=False)
        h = base.output
        if extra_filters:
            h = keras.layers.Conv2D(extra_filters, 1, activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(base.input, keras.layers.Dense(1000)(h))

    for key, (extra, int8) in {"float": (0, False), "qat_int8": (0, True), "slow": (filters, True)}.items():
        if not paths[key].is_file():   # each conversion takes a minute or more: kept
            paths[key].write_bytes(to_tflite(model(extra), int8, x))
    return paths


def quiet_slowdown(old: Path, new: Path) -> float:
    """The pair's own slowdown: the two files timed together in ABBA blocks for 10 s, before the
    trials (per-round ratio of block medians, their median)."""
    from qat_harness import stats

    dev = CpuDevice(num_threads=2)
    try:
        labels = {"old": old, "new": new}
        timed = dev.benchmark(labels, {k: _zeros(p) for k, p in labels.items()},
                              BenchSettings(warmup_runs=5, min_runs=300, min_seconds=10.0, max_runs=100_000,
                                            num_threads=2))
    finally:
        dev.close()
    per_block = int(timed.details["blocks"]["block_runs"]) - 1
    return stats.paired_block_ratio_ci(stats.split_blocks(timed.times_ms["new"], per_block),
                                       stats.split_blocks(timed.times_ms["old"], per_block)).ratio - 1


# -- the benchmarks -------------------------------------------------------------------------------
def test_no_false_regressions_over_nights_with_load_injected(benchmark, digits_files, tmp_path):
    base = base_report("digits_cnn", digits_files)
    # Odd nights time a rebuilt int8 file: the same model, other bytes (padding after the
    # flatbuffer), so its digest changes and the gate re-times it beside last night's every night.
    rebuilt = tmp_path / "rebuilt_qat_int8.tflite"
    rebuilt.write_bytes(digits_files[UNDER_TEST].read_bytes() + bytes(64))
    runs = [night_run(base, "digits_cnn", digits_files),
            night_run(base, "digits_cnn", {**digits_files, UNDER_TEST: rebuilt})]
    retimed: list[int] = []
    device_timer = nightly_gate.device_timer(base.options)

    def results_of(night: int) -> NightResult:
        def timer(device, labels):      # the nightly's own re-time, counted
            retimed.append(night)
            return device_timer(device, labels)
        return one_night(tmp_path / "nightly", night, runs[night % 2],
                         busy=BUSY_EVERY > 0 and night % BUSY_EVERY == BUSY_EVERY - 1, timer=timer)

    results = [results_of(i) for i in range(NIGHTS)]
    false_regressions = [i for i, r in enumerate(results) if r.code != 0]
    retimed = sorted(set(retimed))
    table = {"nights": NIGHTS, "int8 file changed (re-timed)": retimed,
             "load injected": [i for i, r in enumerate(results) if r.busy_injected],
             "named busy": [i for i, r in enumerate(results) if r.named_busy],
             "regressions (all false)": false_regressions,
             "injected and named busy": sum(r.busy_injected and r.named_busy for r in results)}
    benchmark.extra_info.update(table)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\nfalse alarms, digits_cnn:", table)
    for i in false_regressions:
        print(f"--- night {i} ---\n{results[i].compare_txt}")
    assert not false_regressions, table
    assert all(r.named_busy for r in results if r.busy_injected), table
    assert len(retimed) == NIGHTS - 1, table


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy"])
def test_a_20_percent_slower_file_is_caught_and_blamed_on_the_model(benchmark, mobilenet_pair, tmp_path, busy):
    files = {"float": mobilenet_pair["float"], "qat_int8": mobilenet_pair["qat_int8"]}
    slow = {"float": mobilenet_pair["float"], "qat_int8": mobilenet_pair["slow"]}
    base = base_report("mobilenet_v2", files)
    own_slowdown = quiet_slowdown(files["qat_int8"], slow["qat_int8"])
    caught, slowdowns = 0, []
    for trial in range(TRIALS):
        folder = tmp_path / f"trial{trial}"
        one_night(folder, 0, night_run(base, "mobilenet_v2", files), busy=False)
        tonight = one_night(folder, 1, night_run(base, "mobilenet_v2", slow), busy=busy)
        blamed = tonight.code == 1 and "REGRESSION (the model file)" in tonight.compare_txt
        caught += blamed
        slowdowns += [line.split("same ABBA blocks: ")[1].split(",")[0] for line in tonight.compare_txt.splitlines()
                      if "same ABBA blocks: " in line][:1]
        if not blamed:
            print(f"--- trial {trial} missed ---\n{tonight.compare_txt}")
    table = {"trials": TRIALS, "machine": "busy (load injected)" if busy else "as it is",
             "the file's own slowdown (quiet, before the trials)": f"{own_slowdown:+.1%}", "caught": caught,
             "re-timed slowdowns": slowdowns}
    benchmark.extra_info.update(table)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\ndetection, mobilenet_v2 +20% file:", table)
    assert caught >= int(np.ceil(0.9 * TRIALS)), table


@pytest.fixture(scope="module")
def runtime_files(request) -> tuple[str, dict[str, Path]]:
    """MobileNet V2's float and int8 files from ``QAT_BENCH_RUNTIME_FOLDER`` (e.g. an artifact
    folder of the harness's cache), else digits_cnn's."""
    folder = os.environ.get("QAT_BENCH_RUNTIME_FOLDER")
    if folder:
        return "mobilenet_v2", {v: Path(folder) / f"{v}.tflite" for v in ("float", "qat_int8")}
    digits = request.getfixturevalue("digits_files")
    return "digits_cnn", {"float": digits["float"], "qat_int8": digits["qat_int8"]}


#: nights with the old runtime before the new one (``QAT_BENCH_HISTORY_NIGHTS``); the re-time
#: beside last night's runtime needs one, the fallback (a runtime not kept) the spread of 5
HISTORY_NIGHTS = int(os.environ.get("QAT_BENCH_HISTORY_NIGHTS", "1"))

#: appended to a copy's ``interpreter.py``: models with an int8 input run ``factor`` as long
SLOWER_INT8 = """

# qat-harness benchmark: a runtime whose int8 models run {factor}x as long
import time as _qat_time

_qat_invoke = Interpreter.invoke


def _qat_invoke_int8_slower(self):
  if not hasattr(self, "_qat_int8"):
    self._qat_int8 = any(d["dtype"] == np.int8 for d in self.get_input_details())
  start = _qat_time.perf_counter()
  _qat_invoke(self)
  if self._qat_int8:
    until = _qat_time.perf_counter() + {extra} * (_qat_time.perf_counter() - start)
    while _qat_time.perf_counter() < until:
      pass


Interpreter.invoke = _qat_invoke_int8_slower
"""


@pytest.fixture(scope="module")
def runtime_builds(tmp_path_factory) -> dict[float, Path]:
    """factor -> a folder holding a copy of the installed ai_edge_litert whose int8 models run
    ``factor`` as long (1.0: a rebuilt copy, other files, same speed)."""
    import shutil

    from qat_harness.devices.litert import runtime

    installed = runtime.installed()
    assert installed is not None and installed.module == "ai_edge_litert", installed
    out = {}
    for factor in (1.0 + SLOWDOWN, 1.0):
        root = tmp_path_factory.mktemp(f"litert-x{factor:.2f}")
        shutil.copytree(installed.folder, root / installed.module, ignore=shutil.ignore_patterns("__pycache__"))
        with open(root / installed.module / "interpreter.py", "a") as f:
            f.write(SLOWER_INT8.format(factor=factor, extra=factor - 1.0) if factor > 1
                    else "\n# qat-harness benchmark: rebuilt, same speed\n")
        out[factor] = root
    return out


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy"])
@pytest.mark.parametrize("factor", [1.0 + SLOWDOWN, 1.0], ids=["int8_20pct_slower", "no_slowdown"])
def test_a_runtime_slowdown_is_caught_and_blamed_on_the_runtime(benchmark, runtime_files, runtime_builds,
                                                                 tmp_path, busy, factor):
    """``HISTORY_NIGHTS`` nights with the installed runtime (recorded once, copied for every
    trial), then tonight with the copy. With ``factor`` 1.0 the new build changed nothing: the
    control, where every blame is false."""
    import shutil

    model, files = runtime_files
    base = base_report(model, files)
    history = tmp_path / "history"
    for night in range(HISTORY_NIGHTS):
        assert one_night(history, night, night_run(base, model, files), busy=False).code == 0
    blamed_on_runtime, slowdowns = 0, []
    for trial in range(TRIALS):
        folder = tmp_path / f"trial{trial}"
        shutil.copytree(history, folder)
        tonight = one_night(folder, HISTORY_NIGHTS, night_run(base, model, files, runtime_builds[factor]), busy=busy)
        blamed = tonight.code == 1 and "REGRESSION (the runtime/library version)" in tonight.compare_txt
        blamed_on_runtime += blamed
        slowdowns += [line.split("same ABBA blocks: ")[1].split(",")[0]
                      for line in tonight.compare_txt.split("qat_int8 loaded by tonight's runtime")[1:2]]
        if blamed != (factor > 1):
            print(f"--- trial {trial} {'missed' if factor > 1 else 'falsely blamed'} ---\n{tonight.compare_txt}")
    table = {"model": model, "trials": TRIALS, "history nights": HISTORY_NIGHTS,
             "night timing s": NIGHT_MIN_SECONDS, "machine": "busy (load injected)" if busy else "as it is",
             "int8 in the new runtime": f"x{factor:.2f}", "blamed on the runtime": blamed_on_runtime,
             "re-timed int8 slowdowns": slowdowns}
    benchmark.extra_info.update(table)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\nruntime:", table)
    if factor > 1:
        assert blamed_on_runtime >= int(np.ceil(0.9 * TRIALS)), table
    else:
        assert blamed_on_runtime <= TRIALS // 10, table
