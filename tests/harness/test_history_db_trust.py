"""history.sqlite comes from a folder anyone may have written to: a file that is not a
qat-harness history is refused in one line and left as it was, nothing stored in the file
(triggers, views, generated columns) runs inside the harness, readers never write, and a
long query stops at SIGTERM / Ctrl-C. A history written before the files were stamped still
opens, and the next recorded night stamps it."""
from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from qat_harness import cli, history, history_db
from qat_harness.core.child import Terminated, sigterm_as_interrupt
from qat_harness.core.errors import UsageError
from qat_harness.record import codec

FIXTURES = Path(__file__).parents[1] / "fixtures"
# Written by qat-harness 0.2.0 (before application_id): two nights, C2 PASS then WARN.
BEFORE_STAMPING = FIXTURES / "history" / "history-before-stamping.sqlite"
A_REPORT = FIXTURES / "report_before_architecture_digits_cnn.json"

# A query that never ends and never holds more than one row: what a hostile view would run.
ENDLESS_ROWS = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1e15)"
                " SELECT i FROM n WHERE i < 0")


def _history(tmp_path: Path) -> Path:
    """A history as this harness writes it now: two nights, stamped."""
    db = tmp_path / "nightly" / "history.sqlite"
    db.parent.mkdir()
    shutil.copy(BEFORE_STAMPING, db)
    with history_db.writing(db):
        pass
    return db


def _tamper(db: Path, *statements: str) -> bytes:
    conn = sqlite3.connect(db)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return db.read_bytes()


def _foreign_app(path: Path) -> Path:
    """Another application's database: its own tables, no application_id."""
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
                       "INSERT INTO notes (body) VALUES ('groceries');")
    conn.close()
    return path


def _stamped_by_someone_else(path: Path) -> Path:
    """Our tables, but the file says it belongs to another application."""
    shutil.copy(BEFORE_STAMPING, path)
    _tamper(path, f"PRAGMA application_id = {0x0F055112}")   # a Fossil repository's
    return path


def _written_by_a_newer_harness(path: Path) -> Path:
    shutil.copy(BEFORE_STAMPING, path)
    _tamper(path, f"PRAGMA application_id = {history_db.APPLICATION_ID}", "PRAGMA user_version = 2147483647")
    return path


def _one_line_error(capsys, db: Path) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("qat-harness: error: ") and "\n" not in err, err
    assert str(db) in err
    return err


@pytest.mark.parametrize("make", [_foreign_app, _stamped_by_someone_else, _written_by_a_newer_harness])
def test_a_database_that_is_not_ours_is_refused_by_compare_and_history_and_left_as_it_was(tmp_path, capsys, make):
    db = make(tmp_path / "history.sqlite")
    before = db.read_bytes()
    assert cli.main(["compare", str(A_REPORT), str(A_REPORT), "--history", str(db)]) == cli.EXIT_USAGE
    _one_line_error(capsys, db)
    assert cli.main(["history", str(tmp_path), "--out", str(tmp_path / "h.html")]) == cli.EXIT_USAGE
    err = _one_line_error(capsys, db)
    assert ("newer" in err) if make is _written_by_a_newer_harness else ("not a qat-harness history" in err)
    with pytest.raises(UsageError):
        history.record(db, codec.load(A_REPORT), tmp_path / "report.json")
    assert db.read_bytes() == before


def test_a_trigger_in_the_file_never_runs_inside_the_harness(tmp_path, capsys):
    db = _history(tmp_path)
    before = _tamper(db, "CREATE TRIGGER all_pass AFTER INSERT ON claims BEGIN "
                         "UPDATE claims SET verdict = 'PASS'; END")
    with pytest.raises(UsageError, match="trigger") as exc:
        history.record(db, codec.load(A_REPORT), tmp_path / "report.json")
    assert str(db) in str(exc.value) and "\n" not in str(exc.value)
    assert db.read_bytes() == before
    assert cli.main(["history", str(db.parent), "--out", str(tmp_path / "h.html")]) == cli.EXIT_USAGE
    assert "all_pass" in _one_line_error(capsys, db)


@pytest.mark.parametrize("tamper", [
    # the verdicts read back as PASS whatever was recorded
    "ALTER TABLE claims ADD COLUMN verdict_shown TEXT GENERATED ALWAYS AS ('PASS')",
    "CREATE VIRTUAL TABLE notes USING fts5(body)",
    "CREATE TABLE extra (a)",
])
def test_code_or_tables_a_history_never_has_are_refused(tmp_path, tamper):
    db = _history(tmp_path)
    before = _tamper(db, tamper)
    for action in (lambda: history.load(db), lambda: history.earlier_medians(db),
                   lambda: history.record(db, codec.load(A_REPORT), tmp_path / "report.json")):
        with pytest.raises(UsageError) as exc:
            action()
        assert str(db) in str(exc.value) and "\n" not in str(exc.value)
    assert db.read_bytes() == before


def test_a_history_whose_table_is_a_recursive_view_is_refused_at_once(tmp_path):
    """The view kept ``history`` in one SQLite query, deaf to SIGTERM, for as long as it ran."""
    db = _history(tmp_path)
    _tamper(db, "DROP TABLE claims",
            "CREATE VIEW claims AS SELECT i AS run_id, 'C2' AS claim, 'm' AS model, 'cpu' AS device,"
            " 'PASS' AS verdict, NULL AS measured, 0 AS simulated, NULL AS reason"
            f" FROM ({ENDLESS_ROWS})")
    proc = subprocess.Popen([sys.executable, "-P", "-m", "qat_harness.cli", "history", str(db.parent),
                             "--out", str(tmp_path / "h.html")], stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        pytest.fail(f"history still running after 120 s (SIGTERM: exit {proc.wait()})")
    err = proc.stderr.read().strip()
    assert proc.returncode == cli.EXIT_USAGE, err
    assert "view" in err and str(db) in err and "\n" not in err


def _signal_soon(signum: int) -> threading.Timer:
    timer = threading.Timer(0.5, lambda: signal.pthread_kill(threading.main_thread().ident, signum))
    timer.start()
    return timer


@pytest.mark.timeout(120, method="thread")   # without an interruptible query this would hang
@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_sigterm_and_ctrl_c_stop_a_query_that_would_not_end(tmp_path, signum, raised):
    db = _history(tmp_path)
    timer = None
    with sigterm_as_interrupt(), pytest.raises(raised):
        with history_db.reading(db) as conn:
            timer = _signal_soon(signum)
            conn.execute(ENDLESS_ROWS).fetchall()
    timer.cancel()
    assert history.load(db).nights   # the file is fine, and opens again


def test_a_reading_connection_cannot_write_and_trusts_nothing_in_the_schema(tmp_path):
    db = _history(tmp_path)
    with history_db.reading(db) as conn:
        assert conn.execute("PRAGMA trusted_schema").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE added (a)")


def test_a_history_written_before_stamping_is_read_as_it_is_and_stamped_by_the_next_night(tmp_path):
    db = tmp_path / "history.sqlite"
    shutil.copy(BEFORE_STAMPING, db)
    before = db.read_bytes()
    loaded = history.load(db)
    assert [c.verdict for c in loaded.claims if c.claim == "C2-cpu-latency"] == ["PASS", "WARN"]
    assert history.earlier_medians(db) and history.raw_samples(db, 1, "digits_cnn", "cpu", "qat_int8")
    assert db.read_bytes() == before
    run_id = history.record(db, codec.load(A_REPORT), tmp_path / "report.json")
    assert [n.run_id for n in history.load(db).nights] == [1, 2, run_id]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone() == (history_db.APPLICATION_ID,)
    assert conn.execute("PRAGMA user_version").fetchone() == (history_db.SCHEMA_VERSION,)
    conn.close()


FIRST_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT NOT NULL, report_path TEXT NOT NULL,
    cpu TEXT, harness_version TEXT);
CREATE TABLE claims (run_id INTEGER REFERENCES runs(id), claim TEXT, model TEXT, device TEXT,
    verdict TEXT, measured TEXT, simulated INTEGER);
INSERT INTO runs VALUES (1, '2025-12-30T02:00:00+00:00', '/gone/report.json', 'Old CPU', '0.1.0');
INSERT INTO claims VALUES (1, 'C2-cpu-latency', 'digits_cnn', 'cpu', 'FAIL', '1.0', 0);
"""


@pytest.mark.parametrize("content", ["", FIRST_SCHEMA])
def test_reading_an_empty_or_first_version_history_writes_nothing(tmp_path, content):
    db = tmp_path / "history.sqlite"
    db.touch()
    if content:
        conn = sqlite3.connect(db)
        conn.executescript(content)
        conn.close()
    before = db.read_bytes()
    loaded = history.load(db)
    assert len(loaded.nights) == (1 if content else 0) and not loaded.latency
    assert history.earlier_medians(db) == {}
    assert db.read_bytes() == before
