"""`qat-harness nightly` night after night with its seams (a run that returns a recorded report,
a fake timer): a busy night warns and exits 0, a slower file confirmed beside last night's
exits 1 blaming the model file, a new runtime exits 1 blaming the runtime, and the history page
and text mark busy nights and confirmed regressions differently (issue #25)."""
import dataclasses
import datetime as dt

import recorded_reports
from test_compare_ratio_and_blame import FakeTimer, RuntimeTimer

from qat_harness import cli
from qat_harness.commands.nightly import cmd_nightly
from qat_harness.compare import load, night_facts
from qat_harness.core.files import folder_digest
from qat_harness.measure.machine_state import MachineState
from qat_harness.record.report import Report
from qat_harness.record.tree import BenchDetails, DeviceDescription
from qat_harness.writers.history_text import history_text

QUIET = MachineState(window_s=10.0, cpus=2, load1_before=0.2, load1_after=0.8, other_cpu_s=0.3,
                     canary_before_ms=10.0, canary_after_ms=10.2)
BUSY = dataclasses.replace(QUIET, other_cpu_s=14.0, load1_after=3.9)
MODEL = "int8.tflite"


def _night(tmp_path, day: int, state: MachineState, int8_file: bytes, *, int8_ms: float, float_ms: float,
           litert: str = "2.3.0"):
    run = recorded_reports.night(f"2026-01-0{day}T02:00:00+00:00", seed=day, noise=0.02, int8_ms=int8_ms,
                                 float_ms=float_ms)
    run.environment = dataclasses.replace(run.environment,
                                          libraries={**run.environment.libraries, "ai-edge-litert": litert})
    files = tmp_path / f"build{day}"
    files.mkdir()
    (files / "float.tflite").write_bytes(b"float model")
    (files / "int8.tflite").write_bytes(int8_file)
    run.models[MODEL].artifacts = dataclasses.replace(run.models[MODEL].artifacts,
                                                      files={"float": files / "float.tflite",
                                                             "int8": files / "int8.tflite"})
    details = BenchDetails()
    load.keep_state(details, state)
    run.models[MODEL].devices["cpu"].bench_details = details
    return run


def _nightly(tmp_path, run, timer, day: int, *flags: str) -> tuple[int, str]:
    def fake_run(args, out=None):
        report = Report(out, run=run)
        report.finish()
        return 0, report

    args = cli.build_parser().parse_args(["nightly", "--out", str(tmp_path / "nightly"), *flags])
    code = cmd_nightly(args, run=fake_run, clock=lambda: dt.datetime(2026, 1, day, 2), timer=timer)
    folder = next(p for p in (tmp_path / "nightly").iterdir() if p.name.startswith(f"2026-01-0{day}"))
    compare_txt = folder / "compare.txt"
    return code, compare_txt.read_text() if compare_txt.exists() else ""


def test_busy_night_warns_a_slower_file_and_a_new_runtime_are_blamed_and_marked(tmp_path, capsys, monkeypatch):
    from qat_harness.writers import plots

    drawn = []   # the charts are not what is tested here (and drawing them is most of the time)
    monkeypatch.setattr(plots, "trend_figure", lambda data: drawn.append(data) or "data:image/png;base64,")
    timer = FakeTimer(1.25)
    code, _ = _nightly(tmp_path, _night(tmp_path, 1, QUIET, b"int8 v1", int8_ms=0.5, float_ms=1.0), timer, 1)
    assert code == 0
    # night 2: nothing changed but the machine's load (+65%)
    code, text = _nightly(tmp_path, _night(tmp_path, 2, BUSY, b"int8 v1", int8_ms=0.825, float_ms=1.65), timer, 2)
    assert code == 0, text
    assert "machine busy: tonight: other processes used 70%" in text and "0 regression(s)" in text
    assert not timer.calls                       # the files did not change: nothing to re-time
    # night 3: quiet, tonight's int8 file is 25% slower
    code, text = _nightly(tmp_path, _night(tmp_path, 3, QUIET, b"int8 v2", int8_ms=0.625, float_ms=1.0), timer, 3)
    assert code == 1, text
    assert "REGRESSION (the model file)" in text and "tonight's file vs last night's, same ABBA blocks: +25%" in text
    (_, labels), = timer.calls
    assert {s.file.parent.name for s in labels.values()} == {night_facts.FILES_FOLDER}
    # nights 4 and 5: quiet, nothing changed (the history learns how far the ratio moves alone)
    for day in (4, 5):
        code, text = _nightly(tmp_path, _night(tmp_path, day, QUIET, b"int8 v2", int8_ms=0.625, float_ms=1.0),
                              timer, day)
        assert code == 0, text
    # night 6: same files, a new runtime, int8 30% slower on a quiet machine
    code, text = _nightly(tmp_path, _night(tmp_path, 6, QUIET, b"int8 v2", int8_ms=0.8, float_ms=1.0,
                                           litert="2.4.0"), timer, 6)
    assert code == 1, text
    assert "REGRESSION (the runtime/library version)" in text and "ai-edge-litert 2.3.0 -> 2.4.0" in text
    assert len(timer.calls) == 1

    page = (tmp_path / "nightly" / "history.html").read_text()
    rows = page.split('<table id="nights-table">')[1].split("</table>")[0].split("<tr")[2:]
    assert 'class="night-busy"' in rows[1] and "mark-busy" in rows[1] and "mark-confirmed" not in rows[1]
    assert "night-confirmed" in rows[2] and "CONFIRMED REGRESSION" in rows[2] and "the model file" in rows[2]
    assert "the runtime/library version" in rows[5] and "mark-busy" not in rows[0] + rows[2] + rows[5]
    assert [label[16:] for label in drawn[-1].night_labels] == ["", " busy", " REGRESSION", "", "", " REGRESSION"]
    text_lines = history_text(tmp_path / "nightly" / "history.sqlite").splitlines()
    assert any("BUSY" in line and "2026-01-02" in line for line in text_lines)
    assert any("CONFIRMED REGRESSION int8.tflite on cpu (the model file)" in line for line in text_lines)
    kept = list((tmp_path / "nightly" / night_facts.FILES_FOLDER).glob("*.tflite"))
    assert len(kept) == 2                         # the last 3 nights' files: float and int8 v2, once each


def test_a_new_runtime_is_not_blamed_before_the_history_knows_how_far_the_ratio_moves(tmp_path):
    timer = FakeTimer(1.0)
    assert _nightly(tmp_path, _night(tmp_path, 1, QUIET, b"int8", int8_ms=0.5, float_ms=1.0), timer, 1)[0] == 0
    code, text = _nightly(tmp_path, _night(tmp_path, 2, QUIET, b"int8", int8_ms=0.65, float_ms=1.0,
                                           litert="2.4.0"), timer, 2)
    assert code == 0, text
    assert "not significant" in text and "ai-edge-litert 2.3.0 -> 2.4.0" in text and "too few" in text
    assert "WARN (the runtime/library version, not confirmed)" in text


def _with_runtime(run, package):
    """The night's cpu device loaded the LiteRT package in folder ``package``."""
    run.devices["cpu"] = DeviceDescription("cpu", run.devices["cpu"].role, False, {
        "runtime": "ai_edge_litert", "runtime_version": "2.3.0", "runtime_digest": folder_digest(package),
        "runtime_path": str(package)})
    return run


def _packages(tmp_path):
    out = []
    for name in ("old", "new"):
        package = tmp_path / f"site-{name}" / "ai_edge_litert"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f'__version__ = "2.3.0"  # the {name} build\n')
        (package / "__pycache__").mkdir()
        (package / "__pycache__" / "x.pyc").write_bytes(b"not kept")
        out.append(package)
    return out


def test_a_new_runtime_build_is_retimed_beside_last_nights_kept_copy_and_blamed(tmp_path):
    old, new = _packages(tmp_path)
    timer = RuntimeTimer(1.25)
    def night(day, package):
        return _with_runtime(_night(tmp_path, day, QUIET, b"int8", int8_ms=0.5, float_ms=1.0), package)
    assert _nightly(tmp_path, night(1, old), timer, 1, "--litert-runtime", str(old.parent))[0] == 0
    assert not timer.calls
    kept = tmp_path / "nightly" / night_facts.RUNTIMES_FOLDER / folder_digest(old)
    assert (kept / "ai_edge_litert" / "__init__.py").read_text() == (old / "__init__.py").read_text()
    assert not (kept / "ai_edge_litert" / "__pycache__").exists()

    # same version, new build; the medians did not move, so only the runtime re-time can tell
    code, text = _nightly(tmp_path, night(2, new), timer, 2, "--litert-runtime", str(new.parent))
    assert code == 1, text
    assert "REGRESSION (the runtime/library version)" in text and "loaded by tonight's runtime vs last night's" in text
    assert f"(sha256 {folder_digest(old)[:12]}) -> ai_edge_litert 2.3.0 (sha256 {folder_digest(new)[:12]})" in text
    labels = {label: s for _, called in timer.calls for label, s in called.items()}
    assert {s.runtime for label, s in labels.items() if label.startswith("previous")} == {kept}
    assert {s.runtime for label, s in labels.items() if label.startswith("tonight")} == {None}
    assert len(timer.calls) == 2                  # one schedule per timed file: float, int8

    # the runtime did not change again: nothing re-timed, and only the runtime in use stays kept
    assert _nightly(tmp_path, night(3, new), timer, 3, "--litert-runtime", str(new.parent))[0] == 0
    assert len(timer.calls) == 2
    assert [p.name for p in kept.parent.iterdir()] == [folder_digest(new)]


def test_a_new_runtime_build_as_fast_as_the_old_one_passes_and_a_changed_copy_is_not_loaded(tmp_path):
    old, new = _packages(tmp_path)
    def night(day, package):
        return _with_runtime(_night(tmp_path, day, QUIET, b"int8", int8_ms=0.5, float_ms=1.0), package)
    timer = RuntimeTimer(1.0)
    assert _nightly(tmp_path, night(1, old), timer, 1, "--litert-runtime", str(old.parent))[0] == 0
    code, text = _nightly(tmp_path, night(2, new), timer, 2, "--litert-runtime", str(new.parent))
    assert code == 0 and len(timer.calls) == 2, text
    assert "no latency looked regressed" in text          # re-timed, not slower: no finding at all

    # a kept copy whose files changed since it was kept is never imported
    kept = tmp_path / "nightly" / night_facts.RUNTIMES_FOLDER / folder_digest(new)
    (kept / "ai_edge_litert" / "__init__.py").write_text("import os  # changed behind the harness's back\n")
    slower = _with_runtime(_night(tmp_path, 3, QUIET, b"int8", int8_ms=0.65, float_ms=1.0), old)
    code, text = _nightly(tmp_path, slower, timer, 3, "--litert-runtime", str(old.parent))
    assert code == 0 and len(timer.calls) == 2, text
    assert "WARN (the runtime/library version, not confirmed)" in text
    assert "last night's runtime could not be re-timed" in text and "is not kept" in text


def test_a_runtime_folder_only_a_report_names_is_never_kept_nor_loaded(tmp_path):
    """A report is data: a folder it names as its runtime (a crafted report.json, or one from
    another machine) is not copied for a later night to import; only the installed runtime and
    one this command line names are."""
    old, new = _packages(tmp_path)
    timer = RuntimeTimer(1.25)
    assert _nightly(tmp_path, _with_runtime(_night(tmp_path, 1, QUIET, b"int8", int8_ms=0.5, float_ms=1.0), old),
                    timer, 1)[0] == 0
    assert not (tmp_path / "nightly" / night_facts.RUNTIMES_FOLDER).exists()
    code, text = _nightly(tmp_path, _with_runtime(_night(tmp_path, 2, QUIET, b"int8", int8_ms=0.65, float_ms=1.0),
                                                  new), timer, 2)
    assert code == 0 and not timer.calls, text
    assert "last night's runtime could not be re-timed" in text and "is not kept" in text


def test_a_reports_runtime_digest_or_module_that_could_name_another_folder_is_no_runtime():
    """The digest and the module name folders under runtimes/: a report's values that are not a
    sha256 and an identifier are no runtime at all (nothing looked up, kept or loaded)."""
    from qat_harness.compare.machine import DeviceRuntime

    good = {"runtime": "ai_edge_litert", "runtime_version": "2.3.0", "runtime_digest": "a" * 64}
    assert DeviceRuntime.of(DeviceDescription("cpu", None, False, good)) is not None
    for bad in ({"runtime_digest": "../../etc"}, {"runtime_digest": "A" * 64}, {"runtime_digest": "a" * 63},
                {"runtime": "../ai_edge_litert"}, {"runtime": "ai_edge_litert/.."}, {"runtime_digest": 7}):
        assert DeviceRuntime.of(DeviceDescription("cpu", None, False, {**good, **bad})) is None, bad
