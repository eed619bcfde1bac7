"""Faults across processes (issue 9): SIGTERM and Ctrl-C in the middle of a run with a live
child, the children they leave (none), a json.py in the current folder (never runs), two
processes on one cache key, two nightlies in the same second, a phone that drops off mid-run
(through the fake adb server)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qat_harness.core.child import child_command, run_child

pytest_plugins = ["simulators.android_fixtures"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


@pytest.fixture
def started():
    """Processes a test starts (and the sessions of the children they report): whatever a
    failed assertion leaves running is killed, so a failing test never leaves a sleeper."""
    procs: list[subprocess.Popen] = []
    sessions: list[int] = []
    yield procs, sessions
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    for pid in sessions:
        try:
            os.killpg(pid, signal.SIGKILL)  # a child the harness starts leads its own session
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def sleepy_modules(tmp_path, monkeypatch):
    """Child modules that write their pid and then sleep: a one-shot one and a serving one
    (which never says it is ready)."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "qat_sleepy.py").write_text(textwrap.dedent("""
        import json, os, sys, time
        req = json.load(open(sys.argv[1]))
        open(req["pidfile"], "w").write(str(os.getpid()))
        time.sleep(600)
    """))
    (mods / "qat_slow_start.py").write_text(textwrap.dedent("""
        import os, sys, time
        open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
        time.sleep(600)
    """))
    (mods / "qat_sleepy_served.py").write_text(textwrap.dedent("""
        import os, sys, time
        from qat_harness.core.child import serve_once

        def handle(req):
            open(req["pidfile"], "w").write(str(os.getpid()))
            time.sleep(600)
            return {}

        sys.exit(serve_once(handle))
    """))
    monkeypatch.setenv("PYTHONPATH", str(mods) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return mods


# -- 4 and 11: SIGTERM and Ctrl-C mid-run ---------------------------------------------------------
RUN_SCRIPT = """
import sys
from pathlib import Path
from qat_harness import cli, pipeline, claims
from qat_harness.build.cache import ArtifactCache
from qat_harness.core.child import run_child

class SlowRun:
    def __init__(self, source, opts, devices, cache, report, progress):
        self.report, self.name = report, source.label
    def execute(self):
        self.report.add_claim(claims.Size.judge(self.name, claims.FileSizes(4000, 1000)))  # measured before the signal
        self.report.save()
        ArtifactCache(Path(sys.argv[2])).store("k" * 64, lambda folder: run_child(
            "qat_sleepy", {"pidfile": sys.argv[3]}, 600))

from functools import partial
from qat_harness.commands.errors import guarded
from qat_harness.commands.run import cmd_run

args = cli.build_parser().parse_args(["run", "--models", sys.argv[4], "--skip-bitwidth", "--out", sys.argv[1]])
sys.exit(guarded(lambda: cmd_run(args, run=partial(pipeline.run, model_run=SlowRun))))
"""


#: What a shell does to every job a script starts with ``&`` (and some CI runners to their
#: steps): the harness then inherits SIGINT ignored.
SIGINT_IGNORED_BY_THE_PARENT = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"


@pytest.mark.parametrize("signum,code,status,inherited", [
    (signal.SIGTERM, 143, "terminated (SIGTERM)", ""),
    (signal.SIGINT, 130, "interrupted (Ctrl-C / SIGINT)", ""),
    (signal.SIGINT, 130, "interrupted (Ctrl-C / SIGINT)", SIGINT_IGNORED_BY_THE_PARENT),
], ids=["SIGTERM", "SIGINT", "SIGINT-inherited-ignored"])
def test_a_signal_mid_run_finishes_the_report_and_kills_the_child(tmp_path, sleepy_modules, tiny_models, started,
                                                                 signum, code, status, inherited):
    """Whatever SIGINT disposition the harness inherits (pytest itself may run with it
    ignored, as a background job), SIGINT stops a run with an ``interrupted`` report."""
    out, cache, pidfile = tmp_path / "out", tmp_path / "cache", tmp_path / "child.pid"
    script = tmp_path / "run.py"
    script.write_text(inherited + RUN_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(cache), str(pidfile),
                             str(tiny_models["int8"])], stderr=subprocess.PIPE, text=True)
    started[0].append(proc)
    child = int(_wait_for(pidfile))
    started[1].append(child)
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    time.sleep(0.2)
    assert not _alive(child), "the child outlived the harness"
    data = json.loads((out / "report.json").read_text())
    assert data["status"] == "interrupted" and data["stop_reason"] == status
    assert [c["id"] for c in data["claims"]] == ["C1-size"]
    assert "status **interrupted**" in (out / "report.md").read_text()
    assert not list(cache.glob(".building-*")), "a build folder was left in the cache"


def test_ctrl_c_while_a_serving_child_starts_kills_it(tmp_path, sleepy_modules, started):
    """The script takes stop signals as the harness's ``main`` does (``sigterm_as_interrupt``),
    so it holds when pytest runs with SIGINT ignored (a background job) too."""
    pidfile = tmp_path / "serving.pid"
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from qat_harness.core.child import ServingChild, sigterm_as_interrupt
        child = ServingChild("qat_slow_start", Path({str(tmp_path / 'log.txt')!r}),
                             env={{"PIDFILE": {str(pidfile)!r}}})
        try:
            with sigterm_as_interrupt():
                child.run({{}}, 600)
        except KeyboardInterrupt:
            raise SystemExit(130)
    """))
    proc = subprocess.Popen([sys.executable, str(script)])
    started[0].append(proc)
    child = int(_wait_for(pidfile))
    started[1].append(child)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    time.sleep(0.2)
    assert not _alive(child)


def test_a_harness_killed_by_sigkill_leaves_no_child_behind(tmp_path, sleepy_modules):
    """SIGKILL runs no handler of the harness: the child notices its parent is gone."""
    pidfile = tmp_path / "served.pid"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from qat_harness.core.child import run_child
        run_child("qat_sleepy_served", {{"pidfile": {str(pidfile)!r}}}, 600)
    """)])
    child = int(_wait_for(pidfile))
    assert _alive(child)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the child outlived a harness killed by SIGKILL"


# -- 2: a json.py in the current folder ----------------------------------------------------------
def test_a_json_py_in_the_current_folder_never_runs(tmp_path, monkeypatch, tiny_models, sleepy_modules):
    from qat_harness.core.errors import DeviceError
    from qat_harness.core.tflite import quantize_input
    from qat_harness.devices.litert.cpu import CpuDevice

    marker = tmp_path / "json-py-ran"
    (tmp_path / "json.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(9)\n")
    monkeypatch.chdir(tmp_path)
    assert "-P" in child_command("any")
    out = CpuDevice().run(tiny_models["int8"], quantize_input(tiny_models["x"][:2], 1 / 255, -128), 120)
    assert out.outputs.shape == (2, 3)
    with pytest.raises(DeviceError):
        run_child("qat_sleepy", {"pidfile": str(tmp_path / "p")}, 2)  # starts, then times out
    assert not marker.exists(), "the json.py of the current folder was imported by a child"


# -- 6: two processes on one cache key -----------------------------------------------------------
CACHE_SCRIPT = """
import json, sys, time
from pathlib import Path
from qat_harness.build.cache import ArtifactCache

cache = ArtifactCache(Path(sys.argv[1]))
def build(folder):
    for i in range(20):
        (folder / f"part{i}.bin").write_bytes(bytes([i]) * 20000)
    (folder / "metrics.json").write_text(json.dumps({"ok": True}))
for _ in range(15):
    entry = cache.store("k" * 64, build)
    assert json.loads((entry / "metrics.json").read_text()) == {"ok": True}
    found = cache.lookup("k" * 64)
    assert found is not None and len(list(found.glob("part*.bin"))) == 20, found
    assert not cache.take_problems()
print("ok")
"""


def test_processes_storing_and_reading_one_key_never_see_half_an_entry(tmp_path):
    script = tmp_path / "cache_race.py"
    script.write_text(CACHE_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["k" * 24]


# -- 3: two nightlies in the same second ---------------------------------------------------------
NIGHTLY_SCRIPT = """
import datetime, sys, time
from qat_harness import cli
from qat_harness.commands.nightly import cmd_nightly
from qat_harness.record.report import Report
from recorded_reports import ENV, options

def frozen_clock():  # both nightlies start in the same second
    return datetime.datetime(2024, 1, 1, 3, 0, 0)

def fake_run(args, out=None):
    report = Report(out, ENV, options(out, models=(f"pid{sys.argv[2]}",)))
    time.sleep(1)  # overlap with the other nightly
    report.finish()
    if sys.argv[3] == "stagger":  # the runs overlap; their history records do not
        time.sleep(3 * int(sys.argv[2]))
    return 0, report

args = cli.build_parser().parse_args(["nightly", "--out", sys.argv[1]])
sys.exit(cmd_nightly(args, run=fake_run, clock=frozen_clock))
"""


@pytest.mark.parametrize("history", ["stagger", "together"])
def test_two_nightlies_at_once_never_share_a_run_folder(tmp_path, history):
    script = tmp_path / "nightly.py"
    script.write_text(NIGHTLY_SCRIPT)
    tests_folder = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": tests_folder + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "nightly"), str(i), history], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    folders = sorted(p for p in (tmp_path / "nightly").iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["2024-01-01-030000", "2024-01-01-030000-2"]
    pids = {json.loads((f / "report.json").read_text())["options"]["models"][0] for f in folders}
    assert pids == {"pid0", "pid1"}  # each run wrote its own report


# -- a phone that drops off the bus mid-run -------------------------------------------------------
@pytest.mark.simulated
def test_a_phone_going_offline_mid_run_is_an_error_and_the_run_goes_on(tmp_path, fake_adb, binary,
                                                                       tiny_models):
    from simulators.fake_adb import FakeDevice

    from qat_harness import pipeline
    from qat_harness.devices.android.nnapi import NnapiDevice
    from qat_harness.devices.device_set import DeviceSet
    from qat_harness.devices.litert.cpu import CpuDevice

    server = fake_adb(FakeDevice(offline_after=5))
    phone = NnapiDevice(env={"ADB_SERVER_SOCKET": server.socket_spec, "QAT_BENCHMARK_MODEL": str(binary)})
    opts = pipeline.RunOptions(models=[f"{tiny_models['int8']}={tiny_models['float']}"],
                               devices=["nnapi", "cpu"], out=tmp_path / "out", check_bit_widths=False)
    devices = DeviceSet({"nnapi": phone, "cpu": CpuDevice()}, availability={}, options={})
    report = pipeline.run(opts, devices=devices)
    data = json.loads(report.json_path.read_text())
    assert data["status"] == "complete"
    errors = data["models"]["int8.tflite"]["devices"]["nnapi"]["errors"]
    assert any("offline" in e for e in errors.values()), errors
    nnapi_claims = [c for c in data["claims"] if c["device"] == "nnapi"]
    assert nnapi_claims and all(c["verdict"] in ("ERROR", "SKIP") for c in nnapi_claims)
    assert data["models"]["int8.tflite"]["devices"]["cpu"].get("latency")  # the cpu still measured
