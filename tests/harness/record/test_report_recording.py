"""The recorder a run fills (``record.report.Report``): report.json after every step, the pages
at the end, a run that stops keeps what it measured and says why; compare and the history read
what it wrote through the codec."""
import json

import pytest

from qat_harness import claims, compare, history, stats
from qat_harness.environment import CpuInfo, Environment
from qat_harness.options import RunOptions
from qat_harness.record import codec
from qat_harness.record.report import Report
from qat_harness.record.tree import DeviceSection, ModelSection, RunStatus
from qat_harness.writers.pages import run_pages

ENV = Environment(harness_version="0", python="3.11", platform="test",
                  cpu=CpuInfo("test cpu", "x86_64", 2, ["avx2"]), num_threads=2,
                  libraries={"tensorflow": "2.21.0"})


def _options(tmp_path) -> RunOptions:
    return RunOptions(models=["m"], devices=["cpu"], out=tmp_path)


def _report(tmp_path, float_bytes=4000, median=1.0) -> Report:
    r = Report(tmp_path, ENV, _options(tmp_path), pages=run_pages(tmp_path))
    r.add_claim(claims.Size.judge("m", claims.FileSizes(float_bytes, 1000)))
    section = r.model("m", ModelSection(description="test"))
    section.devices["cpu"] = DeviceSection(simulated=False,
                                           latency={"qat_int8": stats.latency_summary([median] * 10)})
    r.finish()
    return r


def test_report_json_and_markdown(tmp_path):
    r = _report(tmp_path)
    data = json.loads(r.json_path.read_text())
    assert data["status"] == "complete" and data["claims"][0]["id"] == "C1-size"
    assert data["schema_version"] == codec.SCHEMA_VERSION
    assert "| C1-size | m | any | **PASS** |" in r.md_path.read_text()
    assert codec.load(r.json_path).models["m"].devices["cpu"].latency["qat_int8"].median_ms == 1.0


def test_partial_report_is_valid_json_while_running(tmp_path):
    r = Report(tmp_path, ENV, _options(tmp_path))
    r.add_claim(claims.Size.judge("m", claims.FileSizes(4000, 1000)))
    r.save()
    data = json.loads(r.json_path.read_text())
    assert data["status"] == "running" and len(data["claims"]) == 1
    assert not r.md_path.exists() and not r.html_path.exists()


def test_compare_finds_verdict_and_latency_regressions(tmp_path):
    base = _report(tmp_path / "a").run
    cur = _report(tmp_path / "b", float_bytes=2000, median=1.5).run
    result = compare.compare(base, cur, latency_tolerance=0.1)
    whats = [r.what for r in result.regressions]
    assert "verdict PASS -> FAIL" in whats
    assert any("+50%" in w for w in whats)
    assert not compare.compare(base, base).regressions


def test_history_records_runs_and_finds_the_previous_one(tmp_path):
    db = tmp_path / "history.sqlite"
    r1, r2 = _report(tmp_path / "a"), _report(tmp_path / "b")
    id1 = history.record(db, r1.run, r1.json_path)
    id2 = history.record(db, r2.run, r2.json_path)
    assert history.previous_report(db, id2) == r1.json_path
    assert history.previous_report(db, id1) is None
    loaded = history.load(db)
    assert len(loaded.claims) == 2
    assert [row.median_ms for row in loaded.latency if row.run_id == id2] == [1.0]


def test_a_run_that_stops_early_keeps_its_measurements_and_says_so(tmp_path):
    report = Report(tmp_path, ENV, _options(tmp_path), pages=run_pages(tmp_path))
    with pytest.raises(RuntimeError):
        with report.finishing():
            report.add_claim(claims.Size.judge("m", claims.FileSizes(4000, 1000)))
            raise RuntimeError("simulated internal failure")
    recorded = codec.load(tmp_path / "report.json")
    assert recorded.status is RunStatus.INTERRUPTED and recorded.finished
    assert recorded.stop_reason == "internal error: RuntimeError: simulated internal failure"
    assert [c.id for c in recorded.claims] == ["C1-size"]
    assert "status **interrupted**" in (tmp_path / "report.md").read_text()


def test_a_resumed_report_keeps_the_typed_sections_of_what_was_done(tmp_path):
    first = Report(tmp_path, ENV, RunOptions(models=["m"], devices=["cpu", "cpu-ref"], out=tmp_path),
                   pages=run_pages(tmp_path))
    first.add_claim(claims.Size.judge("m", claims.FileSizes(4000, 1000)))
    first.model("m", ModelSection()).devices["cpu"] = DeviceSection(
        simulated=False, errors={"run:float": "failed: no"}, latency={"int8": stats.latency_summary([2.0] * 5)})
    first.mark_done("m", "cpu")
    first.finish(RunStatus.INTERRUPTED, "terminated (SIGTERM)")
    resumed = Report.resume(tmp_path, codec.load(tmp_path), {"m": ["cpu-ref"]}, ENV, run_pages(tmp_path))
    kept = resumed.run.models["m"].devices["cpu"]
    assert isinstance(kept, DeviceSection) and kept.errors == {"run:float": "failed: no"}
    assert kept.latency["int8"].median_ms == 2.0
    assert resumed.run.resumed[-1].previous_status == "interrupted"
    assert not (tmp_path / "report.md").exists()       # the pages of the stopped run are gone
    resumed.finish()
    assert codec.load(tmp_path).status is RunStatus.COMPLETE
