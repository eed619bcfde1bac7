"""Issue 19 item 5: a user's string reaches the console, report.md, report.html and JUnit as
text: no rich markup (``[/b]`` stopped a run with exit 3, ``[word]`` vanished from the printed
path), no terminal sequence (ESC / OSC from a file name), no line break (``\\r`` injected a
heading into report.md). Every C0 / C1 control and U+2028 / U+2029 is shown as its escape."""
import re
import subprocess
import sys

import pytest
import recorded_reports

from qat_harness import cli
from qat_harness.record.tree import Note
from qat_harness.writers import console, html, junit, markdown
from qat_harness.writers.text import visible

HOSTILE = "m[/b][word]\x1b]8;;http://evil\x07\x1b[31mred\r# Injected heading\u2028\x9b2J\x00"


def test_every_control_character_is_shown_as_its_escape():
    assert visible("a\x1b[31mb\rc\nd\te\x7f\x85\x9bf\u2028\u2029\udc80") == \
        "a\\x1b[31mb\\rc\\nd\\te\\x7f\\x85\\x9bf\\u2028\\u2029\\udc80"
    assert visible("plain näme [ok]") == "plain näme [ok]"


def _hostile_run():
    run = recorded_reports.with_model_copies(recorded_reports.tiny(), [HOSTILE])
    run.models[HOSTILE].dataset.name = HOSTILE
    run.notes.append(Note(HOSTILE, HOSTILE))
    return recorded_reports.through_json(run)


def _no_raw_controls(text: str) -> None:
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", text), \
        [c for c in text if ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f]


def test_report_md_holds_no_control_character_and_no_injected_heading():
    text = markdown.render(_hostile_run())
    _no_raw_controls(text)
    assert not re.search(r"^#+ Injected", text, re.M)
    assert "\\x1b" in text and "http://evil" in text and "Injected heading" in text


def test_report_html_holds_no_control_character_and_shows_the_name():
    text = html.render(_hostile_run())
    _no_raw_controls(text)
    assert "\\x1b]8;;http://evil\\x07" in text and "m[/b][word]" in text


def test_junit_and_the_summary_hold_no_control_character():
    run = _hostile_run()
    _no_raw_controls(junit.render(run).decode("utf-8"))
    summary = console.summary(run)
    _no_raw_controls(summary)
    assert "m[/b][word]" in summary


def test_the_console_prints_markup_and_escapes_as_text(capsys):
    console.progress()(f"preparing {HOSTILE}")
    console.say(f"report: /tmp/{HOSTILE}/report.json")
    err = capsys.readouterr().err
    _no_raw_controls(err.replace("\n", ""))
    assert "m[/b][word]" in err and "report: /tmp/m[/b][word]" in err


@pytest.mark.slow
def test_a_run_whose_folder_name_holds_markup_and_escapes_finishes_and_prints_it(tmp_path, tiny_models):
    """The real command line: ``--out`` with rich markup and a terminal sequence in its name."""
    out = tmp_path / "a[/b][word]\x1b]0;title\x07"
    proc = subprocess.run(
        [sys.executable, "-m", "qat_harness.cli", "run", "--models", f"{tiny_models['int8']}={tiny_models['float']}",
         "--devices", "cpu", "--out", str(out), "--skip-bitwidth", "--no-trace", "--min-runs", "5",
         "--min-seconds", "0", "--warmup", "1", "--fail-on", "never"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == cli.EXIT_OK, proc.stderr[-2000:]
    _no_raw_controls(proc.stderr.replace("\n", "") + proc.stdout.replace("\n", ""))
    assert f"report: {visible(out)}/report.json" in proc.stderr
    assert (out / "report.html").exists()
