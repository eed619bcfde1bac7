"""Report rendering, comparison between runs and the nightly history."""
import copy
import json

from qat_harness import claims, compare, history, stats
from qat_harness.environment import CpuInfo, Environment
from qat_harness.report import DeviceSection, ModelSection, Report

ENV = Environment(harness_version="0", python="3.11", platform="test",
                  cpu=CpuInfo("test cpu", "x86_64", 2, ["avx2"]), num_threads=2,
                  libraries={"tensorflow": "2.21.0"})


def _report(tmp_path, verdict_c1=4000, median=1.0):
    r = Report(tmp_path, ENV, {})
    r.add_claim(claims.size_claim("m", verdict_c1, 1000))
    section = r.model("m", ModelSection(description="test"))
    section.devices["cpu"] = DeviceSection(simulated=False,
                                           latency={"qat_int8": stats.latency_summary([median] * 10)})
    r.finish()
    return r


def test_report_json_and_markdown(tmp_path):
    r = _report(tmp_path)
    data = json.loads(r.json_path.read_text())
    assert data["status"] == "complete" and data["claims"][0]["id"] == "C1-size"
    md = r.md_path.read_text()
    assert "| C1-size | m | any | **PASS** |" in md


def test_partial_report_is_valid_json_while_running(tmp_path):
    r = Report(tmp_path, ENV, {})
    r.add_claim(claims.size_claim("m", 4000, 1000))
    r.save()
    data = json.loads(r.json_path.read_text())
    assert data["status"] == "running" and len(data["claims"]) == 1


def test_compare_finds_verdict_and_latency_regressions(tmp_path):
    base = _report(tmp_path / "a").data
    cur = copy.deepcopy(_report(tmp_path / "b", verdict_c1=2000, median=1.5).data)
    result = compare.compare(base, cur, latency_tolerance=0.1)
    whats = [r["what"] for r in result["regressions"]]
    assert "verdict PASS -> FAIL" in whats
    assert any("+50%" in w for w in whats)
    assert not compare.compare(base, base)["regressions"]


def test_history_records_runs_and_finds_the_previous_one(tmp_path):
    db = tmp_path / "history.sqlite"
    r1, r2 = _report(tmp_path / "a"), _report(tmp_path / "b")
    id1 = history.record(db, r1.data, r1.json_path)
    id2 = history.record(db, r2.data, r2.json_path)
    assert history.previous_report(db, id2) == r1.json_path
    assert history.previous_report(db, id1) is None
    conn = history.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 2
    assert conn.execute("SELECT median_ms FROM latency WHERE run_id=?", (id2,)).fetchone()[0] == 1.0


def test_a_run_that_stops_early_keeps_its_measurements_and_says_so(tmp_path, monkeypatch):
    from qat_harness import pipeline

    def boom(self):
        raise RuntimeError("simulated internal failure")

    monkeypatch.setattr(pipeline.ModelRun, "execute", boom)
    opts = pipeline.RunOptions(models=["digits_cnn"], devices=["cpu"], out=tmp_path,
                               check_bit_widths=False)
    try:
        pipeline.run(opts)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the internal error must reach the CLI's last line of defence")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["status"] == "interrupted" and data["finished"]
    assert (tmp_path / "report.md").exists()
