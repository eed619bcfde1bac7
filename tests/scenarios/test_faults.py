"""Faults and hostile input, in-process (issue 9): the crash log, a full disk, corrupt and
racing cache entries, flatbuffers LiteRT would refuse, bad command-line values, hostile
images and names, the layer matrix's exit code, evidence on too few examples, and resuming a
run. Signals, concurrent processes and the current folder's ``json.py`` are in
test_faults_processes.py."""
from __future__ import annotations

import errno
import functools
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from recorded_reports import ENV, options

from qat_harness import cli, pipeline
from qat_harness.build.cache import BUILDING_PREFIX, ArtifactCache
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.record.folder import RunFolderBusy
from qat_harness.record.report import Report
from qat_harness.record.tree import ModelSection
from qat_harness.writers.pages import run_pages


def _run_cli(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _run_with(capsys, model_run, *argv):
    """``qat-harness run ARGV`` with the run's per-model stage replaced: the command's own
    error handling and exit codes, the test's ``model_run``."""
    from qat_harness.commands.errors import guarded
    from qat_harness.commands.run import cmd_run

    args = cli.build_parser().parse_args(["run", *argv])
    code = guarded(lambda: cmd_run(args, run=functools.partial(pipeline.run, model_run=model_run)))
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("qat-harness")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 1. the crash log -------------------------------------------------------------------------
def _crash(monkeypatch):
    def boom(args):
        raise RuntimeError("simulated internal failure")
    monkeypatch.setattr(cli, "cmd_claims", boom)


def test_crash_log_never_follows_a_planted_symlink(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    now = int(time.time())
    for t in range(now - 2, now + 30):  # every name the old code could have picked
        (tmp_path / f"qat-harness-crash-{t}.log").symlink_to(victim)
    _crash(monkeypatch)
    code, err = _run_cli(capsys, "claims")
    assert code == cli.EXIT_INTERNAL
    assert victim.read_text() == "precious"
    log = Path(_one_error_line(err).split("traceback in ")[1].rstrip(")"))
    assert log.parent == tmp_path and not log.is_symlink()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "simulated internal failure" in log.read_text()


def test_two_crashes_in_one_second_keep_two_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    _crash(monkeypatch)
    logs = set()
    for _ in range(2):
        _code, err = _run_cli(capsys, "claims")
        logs.add(_one_error_line(err).split("traceback in ")[1].rstrip(")"))
    assert len(logs) == 2 and all(Path(p).exists() for p in logs)


# -- 3. two runs never share a folder -----------------------------------------------------------
def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: cli.new_run_folder(tmp_path, "2024-01-01-000000"), range(8)))
    assert len(set(folders)) == 8 and all(f.is_dir() for f in folders)


def test_a_second_report_on_a_folder_in_use_is_refused(tmp_path):
    first = Report(tmp_path, ENV, options(tmp_path))
    with pytest.raises(RunFolderBusy, match="in use by another run"):
        Report(tmp_path, ENV, options(tmp_path))
    first.finish()
    Report(tmp_path, ENV, options(tmp_path)).finish()  # once finished, the folder is free again


# -- 5. disk full -------------------------------------------------------------------------------
def _fake_model_run(claims_by_call):
    """A ModelRun whose execute records one claim with a measurement and saves."""
    from qat_harness import claims as claim_lib

    class FakeRun:
        def __init__(self, source, opts, devices, cache, report, progress):
            self.report, self.name = report, source.label

        def execute(self):
            for _device in ("cpu",):
                self.report.add_claim(claim_lib.Size.judge(self.name, claim_lib.FileSizes(4000, 1000)))
                self.report.run.models.setdefault(self.name, ModelSection()).description = \
                    "latencies " + ",".join(str(v) for v in range(2000))
                claims_by_call.append(self.name)
                self.report.save()
    return FakeRun


def _fail_fsync_once(monkeypatch, after: int):
    import qat_harness.record.folder as report_module

    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)
    monkeypatch.setattr(report_module.os, "fsync", fsync)


def test_disk_full_keeps_every_measurement_and_leaves_no_temporary_files(tmp_path, monkeypatch, capsys,
                                                                         tiny_models):
    _fail_fsync_once(monkeypatch, after=2)  # the save right after the measurement
    out = tmp_path / "out"
    code, err = _run_with(capsys, _fake_model_run([]), "--models", str(tiny_models["int8"]), "--skip-bitwidth",
                         "--out", str(out))
    assert code == cli.EXIT_DISK_FULL
    assert "disk full" in _one_error_line(err)
    data = json.loads((out / "report.json").read_text())
    assert data["status"] == "interrupted" and data["stop_reason"].startswith("disk full")
    assert [c["id"] for c in data["claims"]] == ["C1-size"]  # the measurement made it to disk
    assert (out / "report.md").exists()
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_ends_with_one_line_and_the_last_report(small_tmpfs, monkeypatch, capsys,
                                                                   tiny_models):
    calls: list[str] = []
    out = small_tmpfs / "out"
    out.mkdir()
    filler = small_tmpfs / "filler"
    original_save = Report.save

    def save_then_fill(self):
        original_save(self)
        if calls and not filler.exists():  # the disk fills up (another process) after the measurement
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
                except OSError:
                    pass
    monkeypatch.setattr(Report, "save", save_then_fill)
    code, err = _run_with(capsys, _fake_model_run(calls), "--models", f"{tiny_models['int8']},{tiny_models['int8']}",
                         "--skip-bitwidth", "--out", str(out))
    assert code == cli.EXIT_DISK_FULL, err
    assert "disk full" in _one_error_line(err)
    data = json.loads((out / "report.json").read_text())
    assert data["claims"] and data["claims"][0]["model"] == "int8.tflite"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no orphan temporaries


# -- 6, 7. the artifact cache -------------------------------------------------------------------
def _build(text: str):
    def build(folder: Path):
        (folder / "qat_int8.tflite").write_bytes(text.encode() * 100)
        (folder / "metrics.json").write_text(json.dumps({"text": text}))
    return build


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_cache_entry_is_named_and_rebuilt(tmp_path, damage):
    cache = ArtifactCache(tmp_path)
    entry = cache.store("k" * 64, _build("model"))
    target = entry / ("qat_int8.tflite" if damage == "truncate" else "metrics.json")
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    else:
        target.write_text("{not json")
    assert cache.lookup("k" * 64) is None
    problems = cache.take_problems()
    assert len(problems) == 1 and str(target) in problems[0] and "rebuilt" in problems[0]
    entry = cache.store("k" * 64, _build("model"))
    assert cache.lookup("k" * 64) == entry
    assert json.loads((entry / "metrics.json").read_text()) == {"text": "model"}


def test_storing_over_an_intact_entry_keeps_the_one_in_place(tmp_path):
    cache = ArtifactCache(tmp_path)
    first = cache.store("k" * 64, _build("first"))
    inode = first.stat().st_ino
    again = cache.store("k" * 64, _build("second"))
    assert again == first and again.stat().st_ino == inode  # never removed under a reader
    assert json.loads((again / "metrics.json").read_text()) == {"text": "first"}


def test_build_folders_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{BUILDING_PREFIX}{socket.gethostname()}-{dead.pid}-abcdefgh"
    stale.mkdir(parents=True)
    live = tmp_path / f"{BUILDING_PREFIX}{socket.gethostname()}-{os.getpid()}-abcdefgh"
    live.mkdir()
    ArtifactCache(tmp_path).store("k" * 64, _build("x"))
    assert not stale.exists() and live.exists()


def test_an_interrupted_build_leaves_no_build_folder(tmp_path):
    def interrupted(folder):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        ArtifactCache(tmp_path).store("k" * 64, interrupted)
    assert not list(tmp_path.glob(BUILDING_PREFIX + "*"))


# -- 8. flatbuffers LiteRT refuses --------------------------------------------------------------
def _name_offset(data: bytes, name: bytes) -> int:
    at = data.index(name)
    assert struct.unpack_from("<I", data, at - 4)[0] == len(name) and data[at + len(name)] == 0
    return at + len(name)


def test_a_name_without_its_terminator_is_refused_as_litert_does(tmp_path, tiny_models):
    data = bytearray(tiny_models["int8"].read_bytes())
    info = tflite.inspect_model(bytes(data))
    name = info.tensor(info.inputs[0]).name.encode()
    data[_name_offset(bytes(data), name)] = ord("x")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(tflite.InvalidModel, match="unterminated"):
        tflite.inspect_model(bad)
    from qat_harness.devices.litert.cpu import CpuRefDevice
    with pytest.raises(DeviceError, match="not a valid Flatbuffer"):
        CpuRefDevice().run(bad, np.zeros((1, 8, 8, 1), np.float32), 60)


def _repacked(path: Path, change) -> bytes:
    import flatbuffers

    s = tflite._schema()
    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    change(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_unknown_operator_and_data_type_are_refused(tiny_models):
    def unknown_op(m):
        m.operatorCodes[0].builtinCode = 4000
        m.operatorCodes[0].deprecatedBuiltinCode = 127
    with pytest.raises(tflite.InvalidModel, match="not a TFLite builtin operator"):
        tflite.inspect_model(_repacked(tiny_models["int8"], unknown_op))

    def unknown_type(m):
        m.subgraphs[0].tensors[0].type = 97
    with pytest.raises(tflite.InvalidModel, match="unknown data type 97"):
        tflite.inspect_model(_repacked(tiny_models["int8"], unknown_type))


def test_a_model_with_no_inputs_is_a_clear_error(tmp_path, capsys, tiny_models):
    path = tmp_path / "noinput.tflite"
    path.write_bytes(_repacked(tiny_models["int8"], lambda m: setattr(m.subgraphs[0], "inputs", [])))
    code, err = _run_cli(capsys, "run", "--models", str(path), "--skip-bitwidth", "--out", str(tmp_path / "o"))
    assert code == cli.EXIT_USAGE
    assert "has no inputs" in _one_error_line(err)


# -- 9. input that used to be mishandled silently -------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["run", "--input-size", "0"], "--input-size: must be at least 1, got 0"),
    (["run", "--eval-limit", "0"], "--eval-limit: must be at least 1, got 0"),
    (["run", "--models", ""], "--models: is empty"),
    (["run", "--models", " , "], "--models: is empty"),
    (["run", "--min-seconds", "nan"], "--min-seconds: must be at least 0.0"),
    (["nightly", "--latency-tolerance", "-1"], "--latency-tolerance: must be at least 0.0, got -1"),
    (["compare", "a.json", "b.json", "--latency-tolerance", "-1"], "--latency-tolerance: must be at least"),
])
def test_bad_numbers_and_empty_lists_are_refused(capsys, argv, needle):
    code, err = _run_cli(capsys, *argv)
    assert code == cli.EXIT_USAGE
    assert needle in _one_error_line(err)


def test_run_options_refuse_zero_as_unset(tmp_path):
    with pytest.raises(UsageError, match="eval-limit must be at least 1"):
        pipeline.RunOptions(models=["digits_cnn"], devices=["cpu"], out=tmp_path, eval_limit=0)
    with pytest.raises(UsageError, match="input-size must be at least 1"):
        pipeline.RunOptions(models=["digits_cnn"], devices=["cpu"], out=tmp_path, input_size=0)


@pytest.mark.parametrize("models", ["digits_cnn", None])  # None: the default model set
def test_weights_are_refused_for_a_model_trained_here(tmp_path, capsys, models):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"x")
    argv = ["run", "--weights", str(weights), "--out", str(tmp_path / "o")]
    code, err = _run_cli(capsys, *argv, *(["--models", models] if models else []))
    assert code == cli.EXIT_USAGE
    assert "--weights applies to the application models" in _one_error_line(err)
    assert not (tmp_path / "o").exists()  # refused before anything ran


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares a size and holds (almost) no pixels: the header is all a
    decompression bomb needs."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 10000])  # above twice Pillow's limit, and just above it
def test_a_huge_image_is_refused_before_decoding(tmp_path, side):
    from qat_harness.models import datasets

    (tmp_path / "cat").mkdir()
    _png_header_only(tmp_path / "cat" / "big.png", side, side)
    with pytest.raises(UsageError, match="big.png .*(too large|more than)"):
        datasets.image_folder(tmp_path, 32, datasets.preprocess("raw"))


def test_a_16_bit_png_keeps_its_range(tmp_path):
    from PIL import Image

    from qat_harness.models import datasets

    (tmp_path / "cat").mkdir()
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "cat" / "deep.png")
    assert Image.open(tmp_path / "cat" / "deep.png").mode.startswith("I")
    data = datasets.image_folder(tmp_path, 32, datasets.preprocess("raw"), eval_fraction=1.0)
    x = data.x_eval[0]
    assert x.max() == pytest.approx(255, abs=1) and x.min() == pytest.approx(0, abs=1)
    assert np.mean(x >= 254) < 0.1  # a ramp, not a clipped white image


# -- 10. evidence ---------------------------------------------------------------------------------
def test_one_example_is_too_few_to_pass():
    from qat_harness.evidence import examples_needed, judge_rate

    one = judge_rate(1, 1, pass_at=0.99, warn_at=0.95)
    assert one.verdict == "WARN" and one.too_few and "too few examples" in one.reason
    assert judge_rate(1000, 1000, pass_at=0.99, warn_at=0.95).verdict == "PASS"
    assert judge_rate(900, 1000, pass_at=0.99, warn_at=0.95).verdict == "FAIL"
    assert judge_rate(990, 1000, pass_at=0.99, warn_at=0.95).verdict == "WARN"  # interval straddles
    need = examples_needed(0.99)
    assert judge_rate(need, need, 0.99, 0.95).verdict == "PASS"
    assert judge_rate(need - 1, need - 1, 0.99, 0.95).too_few


# -- 12. names from the user's file system ------------------------------------------------------
HOSTILE = "# Owned\n<img src=x onerror=alert(1)> [link](http://evil) | col"


def test_hostile_names_are_inert_in_report_md(tmp_path):
    from qat_harness.record.tree import DatasetInfo, DeviceSection, ModelSection

    r = Report(tmp_path, ENV, options(tmp_path), pages=run_pages(tmp_path))
    section = r.model(HOSTILE, ModelSection(description=HOSTILE))
    section.dataset = DatasetInfo(f"folder:{HOSTILE}", 3, True, HOSTILE)
    section.devices["cpu"] = DeviceSection(simulated=False, errors={"run:int8": HOSTILE})
    r.note(HOSTILE, HOSTILE)
    r.model_error(HOSTILE, HOSTILE)
    r.finish()
    md = r.md_path.read_text()
    assert "<img" not in md and "](http" not in md
    assert not [line for line in md.splitlines() if line.startswith("# Owned")]


def test_hostile_names_are_inert_in_layers_md():
    from qat_harness.layers import report as layers_report

    cell = {"verdict": "ERROR", "reason": HOSTILE}
    matrix = {"probes": [{"name": HOSTILE, "layer": HOSTILE, "description": HOSTILE, "stages": {"qat": cell},
                          "documented": {"status": HOSTILE}, "matches_documentation": {"agrees": False,
                                                                                     "note": HOSTILE}}],
              "stage_keys": ["qat"], "devices": {HOSTILE: {"available": False, "reason": HOSTILE}},
              "claims": [{"id": "M2-layers", "device": HOSTILE, "verdict": "ERROR", "reason": HOSTILE}]}
    md = layers_report.markdown(matrix)
    assert "<img" not in md and "](http" not in md
    assert not [line for line in md.splitlines() if line.startswith("# Owned")]


# -- 13. the layer matrix -----------------------------------------------------------------------
def test_layers_exits_1_on_error_cells_takes_a_probe_timeout_and_warns_about_user_code(tmp_path, capsys):
    from qat_harness.commands.layers import cmd_layers

    seen = {}

    def fake_run_layers(names, devices, out, user_probes=(), progress=None, device_options=None, **kw):
        seen.update(kw)
        return {"probes": [{"name": "p", "stages": {"qat": {"verdict": "ERROR", "reason": "SIGABRT"}}}]}
    args = cli.build_parser().parse_args(["layers", "--probe", "my_probes:make", "--probe-timeout", "7",
                                          "--out", str(tmp_path)])
    code = cmd_layers(args, engine=fake_run_layers)
    err = capsys.readouterr().err
    assert code == cli.EXIT_GATE
    opened = seen.pop("opened")  # the devices the CLI checked, handed over instead of reopened
    assert seen == {"timeout_s": 7.0} and list(opened.availability) == ["cpu"]
    assert "--probe imports and runs your code (my_probes:make)" in err
    assert "1 cell(s) are ERROR" in err and "p qat" in err


# -- resume ---------------------------------------------------------------------------------------
def test_resume_redoes_only_what_is_missing(tmp_path, monkeypatch, capsys, tiny_models):
    from qat_harness import claims as claim_lib
    from qat_harness.record.tree import DeviceSection

    calls: list[str] = []

    class OneClaimPerDevice(pipeline.ModelRun):
        def on_device(self, dev_name, dev):
            on_device(self, dev_name, dev)

    def on_device(self, dev_name, dev):
        calls.append(dev_name)
        # as the real one does: a resumed run then holds the kept device's section as recorded
        self.section.devices.setdefault(dev_name, DeviceSection(simulated=dev.simulated))
        if dev_name == "cpu-ref" and len(calls) == 2:
            raise KeyboardInterrupt  # the first run stops here
        self.add(claim_lib.CpuLatency.skip(self.name, dev_name, f"measured in call {len(calls)}"))
    out = tmp_path / "run"
    models = f"{tiny_models['int8']}={tiny_models['float']}"
    code, _err = _run_with(capsys, OneClaimPerDevice, "--models", models, "--devices", "cpu,cpu-ref",
                          "--skip-bitwidth", "--out", str(out))
    assert code == cli.EXIT_SIGINT
    first = json.loads((out / "report.json").read_text())
    assert first["status"] == "interrupted" and first["done"] == {"int8.tflite": ["cpu"]}

    code, err = _run_with(capsys, OneClaimPerDevice, "--resume", str(out), "--fail-on", "never")
    assert code == cli.EXIT_OK, err
    assert calls == ["cpu", "cpu-ref", "cpu-ref"]  # cpu was not redone
    data = json.loads((out / "report.json").read_text())
    assert data["status"] == "complete"
    latency = {c["device"]: c["reason"] for c in data["claims"] if c["id"] == "C2-cpu-latency"}
    assert latency == {"cpu": "measured in call 1", "cpu-ref": "measured in call 3"}
    assert len([c for c in data["claims"] if c["id"] == "C1-size"]) == 1  # kept, not duplicated
    assert data["resumed"][0]["kept"] == ["int8.tflite on cpu"]
    assert "Resumed at" in (out / "report.md").read_text()

    code, err = _run_cli(capsys, "run", "--resume", str(out), "--threads", "3")
    assert code == cli.EXIT_USAGE and "drop --threads" in _one_error_line(err)
