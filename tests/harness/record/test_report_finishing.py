"""The finishing stage (issue 19 items 7 and 8, and its done-when): report.json, report.md,
report.html and the JUnit file never disagree about a run's status or claims, whatever stops the
finishing stage (a page that cannot be drawn, a full disk, SIGTERM at any point). A page that
exists says what report.json says; a page that cannot be written is a note of report.json."""
from __future__ import annotations

import dataclasses
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import recorded_reports

from qat_harness.record import codec
from qat_harness.record.report import Report
from qat_harness.record.tree import RunStatus
from qat_harness.writers.pages import run_pages

JUNIT = "junit.xml"


def _running_tiny(out: Path) -> Report:
    """The report of the recorded tiny run in ``out``, as it is just before its finishing stage."""
    run = recorded_reports.tiny()
    run.status, run.finished = RunStatus.RUNNING, None
    run.options = dataclasses.replace(run.options, out=out, junit_xml=out / JUNIT)
    return Report(out, run=run, pages=run_pages(out, out / JUNIT))


def _claims_of_report(out: Path) -> tuple[str, set[tuple[str, str, str, str]]]:
    run = codec.load(out / "report.json")
    return run.status.value, {(c.id, c.model, c.device, c.verdict.value) for c in run.claims}


def _pages(out: Path) -> dict[str, tuple[str, set[tuple[str, str, str, str]]]]:
    """Each page that exists: the status it states and the claims it lists."""
    pages = {}
    md = out / "report.md"
    if md.exists():
        text = md.read_text(encoding="utf-8")
        status = re.search(r"status \*\*(\w+)\*\*", text).group(1)
        rows = re.findall(r"^\| ([A-Z]\d-[\w-]+) \| (.+?) \| (\S+?)(?: \(simulated\))? \| \*\*(\w+)\*\* \|", text, re.M)
        pages["report.md"] = (status, {(i, m.replace("\\", ""), d, v) for i, m, d, v in rows})
    html = out / "report.html"
    if html.exists():
        text = html.read_text(encoding="utf-8")
        status = re.search(r'<strong id="status">(\w+)</strong>', text).group(1)
        rows = re.findall(r'<tr class="claim-row[^"]*">\s*<td title="[^"]*">([^<]+)</td><td>([^<]*)</td>\s*'
                          r'<td>([^<]+?)(?:<span[^>]*>SIMULATED</span>)?</td>\s*<td class="[^"]*">(\w+)</td>', text)
        pages["report.html"] = (status, set(rows))
    junit = out / JUNIT
    if junit.exists():
        root = ET.parse(junit).getroot()
        status = root.find("./testsuite/properties/property[@name='status']").get("value")
        claims = set()
        for case in root.iter("testcase"):
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            model, _, device = case.get("classname").removeprefix("qat_harness.").rpartition(".")
            claims.add((case.get("name").removesuffix(" [simulated]"), model, device, props["verdict"]))
        pages[JUNIT] = (status, claims)
    return pages


def _assert_agreement(out: Path) -> None:
    status, claims = _claims_of_report(out)
    for name, (page_status, page_claims) in _pages(out).items():
        assert page_status == status, f"{name} says {page_status}, report.json {status}"
        assert page_claims == claims, f"{name} lists other claims than report.json"


def test_a_complete_run_writes_every_page_in_agreement(tmp_path):
    report = _running_tiny(tmp_path)
    report.finish()
    assert set(_pages(tmp_path)) == {"report.md", "report.html", JUNIT}
    _assert_agreement(tmp_path)
    assert codec.load(tmp_path).status is RunStatus.COMPLETE
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries, no reserve


def test_a_page_that_cannot_be_drawn_is_a_note_and_never_costs_the_report(tmp_path, monkeypatch):
    """Issue 19 item 7: a page writer's failure left report.json 'complete' with no pages and
    no JUnit file (and the run exited 3). Now the other pages are written, carrying the note."""
    from qat_harness.writers import html

    def broken(run):
        raise ValueError("'yerr' must not contain negative values")
    monkeypatch.setattr(html, "render", broken)
    report = _running_tiny(tmp_path)
    report.finish()
    run = codec.load(tmp_path)
    assert run.status is RunStatus.COMPLETE
    note = "report.html was not written: ValueError: 'yerr' must not contain negative values"
    assert [n.text for n in run.notes] == [note]
    assert not (tmp_path / "report.html").exists()
    assert "report.html was not written" in (tmp_path / "report.md").read_text()
    _assert_agreement(tmp_path)


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _fill(disk: Path, leave_bytes: int) -> None:
    """Fill ``disk`` up to ``leave_bytes`` of free space."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


@pytest.mark.parametrize("free_kib", [12, 28, 44, 60, 76, 92, 120])
def test_a_disk_almost_full_at_the_start_never_gets_pages_that_claim_more(tiny_disk, free_kib):
    """Issue 19 item 8: with no room even for the reserve, report.json stayed 'running' without
    C2 while report.md claimed C2 PASS and report.html was cut off. Every page here either is
    absent or says exactly what report.json says."""
    out = tiny_disk / "out"
    out.mkdir()
    _fill(tiny_disk, free_kib * 1024)
    run = recorded_reports.tiny()
    run.status, run.finished, claims, run.claims = RunStatus.RUNNING, None, run.claims, []
    try:
        report = Report(out, run=run, pages=run_pages(out, out / JUNIT))
        with report.finishing():
            for claim in claims:
                report.add_claim(dataclasses.replace(claim, reason=claim.reason + " " + "x" * 3000))
                report.save()
    except OSError as exc:
        assert exc.errno in (28, 122)           # ENOSPC / EDQUOT: the run stops there
    if (out / "report.json").exists():
        _assert_agreement(out)
    else:
        assert not _pages(out)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".report-reserve"]
    assert not leftovers


CHILD = """
import dataclasses, os, signal, sys, threading, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import recorded_reports
from qat_harness.core.child import sigterm_as_interrupt
from qat_harness.record.report import Report
from qat_harness.record.tree import RunStatus
from qat_harness.writers.pages import run_pages

out = Path(sys.argv[1])
run = recorded_reports.tiny()
run.status, run.finished = RunStatus.RUNNING, None
run.options = dataclasses.replace(run.options, out=out, junit_xml=out / "junit.xml")
with sigterm_as_interrupt():
    report = Report(out, run=run, pages=run_pages(out, out / "junit.xml"))
    for delay in map(float, sys.argv[2:]):
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
    started = time.monotonic()
    try:
        with report.finishing():
            pass
    except KeyboardInterrupt:
        sys.exit(143)
    print(time.monotonic() - started)
"""


def test_sigterm_at_random_points_of_the_finishing_stage_never_makes_the_files_disagree(tmp_path):
    """The done-when of issue 19: the harness killed (SIGTERM, once or twice) at random points
    of its finishing stage; report.json and every page left behind agree each time."""
    rng = random.Random(19)
    script = tmp_path / "finish.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parents[2])))

    def finish(out: Path, delays: list[float]) -> int:
        proc = subprocess.run([sys.executable, str(script), str(out), *map(str, delays)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode in (0, 143), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        _assert_agreement(out)
        return proc.returncode, proc.stdout

    code, seconds = finish(tmp_path / "undisturbed", [])
    assert code == 0 and codec.load(tmp_path / "undisturbed").status is RunStatus.COMPLETE
    stage = float(seconds)                     # how long this machine takes to finish a report
    killed = []
    for attempt in range(6):
        delays = sorted(rng.uniform(0.0, 1.2 * stage) for _ in range(1 if attempt < 4 else 2))
        code, _ = finish(tmp_path / f"run{attempt}", delays)
        killed.append(code == 143)
    assert any(killed)
