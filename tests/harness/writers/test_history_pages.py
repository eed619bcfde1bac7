"""history.sqlite: the schema grows without losing old files, a corrupt file is one line,
and the trends page and text show every night with its machine and library versions."""
import html.parser
import sqlite3
from pathlib import Path

import pytest
import recorded_reports

from qat_harness import history
from qat_harness.core.errors import UsageError
from qat_harness.results import Verdict
from qat_harness.writers.history_html import render_history
from qat_harness.writers.history_text import history_text

# The schema as it was before environments, raw samples, speed-ups and accuracy were kept.
FIRST_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT NOT NULL, report_path TEXT NOT NULL,
    cpu TEXT, harness_version TEXT);
CREATE TABLE claims (run_id INTEGER REFERENCES runs(id), claim TEXT, model TEXT, device TEXT,
    verdict TEXT, measured TEXT, simulated INTEGER);
CREATE TABLE latency (run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT, variant TEXT,
    median_ms REAL, p90_ms REAL, n INTEGER);
INSERT INTO runs VALUES (1, '2025-12-30T02:00:00+00:00', '/gone/report.json', 'Old CPU', '0.1.0');
INSERT INTO claims VALUES (1, 'C2-cpu-latency', 'digits_cnn', 'cpu', 'FAIL', '1.0', 0);
INSERT INTO latency VALUES (1, 'digits_cnn', 'cpu', 'qat_int8', 0.55, 0.6, 100);
"""


def _nights(db: Path, count: int = 4) -> None:
    for i in range(count):
        base = recorded_reports.with_model_copies(recorded_reports.tiny(), ["<b>m</b>"])
        base = recorded_reports.with_simulated_accelerator(base, "nnapi")
        run = recorded_reports.night(f"2026-01-0{i + 1}T02:00:00+00:00", seed=i, base=base, cpu="Test CPU",
                                     tensorflow="2.20.0" if i < 2 else "2.21.0")
        run = recorded_reports.set_verdict(run, "C2-cpu-latency", Verdict.PASS if i < 3 else Verdict.WARN)
        history.record(db, run, db.parent / f"night{i}" / "report.json")


def test_an_old_history_is_read_and_extended(tmp_path):
    db = tmp_path / "history.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(FIRST_SCHEMA)
    conn.close()
    _nights(db, 2)
    loaded = history.load(db)
    assert [n.run_id for n in loaded.nights] == [1, 2, 3]
    assert loaded.nights[0].environment.cpu == "Old CPU"
    assert loaded.nights[1].environment.libraries["tensorflow"] == "2.20.0"
    old = [r for r in loaded.latency if r.run_id == 1]
    assert old[0].median_ms == 0.55 and old[0].median_ci_low is None
    new = [r for r in loaded.latency if r.run_id == 2 and r.variant == "int8" and r.device == "cpu"]
    assert new[0].median_ci_low < new[0].median_ms < new[0].median_ci_high
    assert {r.kind for r in loaded.speedups} == {"qat_vs_float"}
    summary = render_history(db, tmp_path / "history.html")
    assert summary.nights == 3


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 2000])
def test_a_corrupt_history_is_one_line_naming_the_file(tmp_path, content):
    db = tmp_path / "history.sqlite"
    db.write_bytes(content)
    for action in (lambda: history.load(db), lambda: history.record(db, recorded_reports.tiny(), tmp_path / "r.json"),
                   lambda: history.previous_report(db, 5), lambda: render_history(db, tmp_path / "h.html")):
        with pytest.raises(UsageError) as exc:
            action()
        assert str(db) in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_history_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no history"):
        history_text(tmp_path / "history.sqlite")


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]


def test_history_page_has_one_trend_per_model_and_device_and_marks_library_changes(tmp_path):
    db = tmp_path / "history.sqlite"
    _nights(db)
    out = tmp_path / "history.html"
    summary = render_history(db, out)
    assert summary.nights == 4 and summary.series == 6
    assert [(c.claim, c.before, c.after) for c in summary.verdict_changes][:1] == [("C2-cpu-latency", "PASS", "WARN")]
    assert summary.environment_changes == {2: ["tensorflow 2.20.0 -> 2.21.0"]}
    text = out.read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(text)
    assert len([i for i in parser.images if "trend-plot" in i.get("class", "")]) == 6
    assert all(u.startswith("data:image/png;base64,") for u in parser.urls)
    assert "<b>m</b>" not in text and "&lt;b&gt;m&lt;/b&gt;" in text
    assert "tensorflow 2.20.0 -&gt; 2.21.0" in text and "SIMULATED" in text


def test_history_text_lists_nights_machines_and_changes(tmp_path):
    db = tmp_path / "history.sqlite"
    _nights(db)
    text = history_text(db)
    assert text.startswith("4 night(s)")
    assert "Test CPU; tensorflow 2.21.0" in text and "nnapi (simulated)" in text
    assert "C2-cpu-latency int8.tflite cpu: PASS -> WARN" in text
    assert "changed on 2026-01-03 02:00: tensorflow 2.20.0 -> 2.21.0" in text
