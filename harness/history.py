"""Run history in SQLite, so nightly runs can be compared with earlier nights and trends
drawn (``qat-harness history DIR``) or queried (``sqlite3 reports/nightly/history.sqlite``).

The schema only grows: columns and tables added since the first version are added to an
older file when it is opened, and rows recorded before them read back with those fields
empty. Each night keeps its machine and library versions (``runs.environment``), its raw
latency samples with the median's interval, its speed-ups and accuracies, so the trends need
no report.json. A file that is not a readable history is a one-line ``UsageError``."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from qat_harness.core.errors import UsageError
from qat_harness.reporting.intervals import median_interval
from qat_harness.reporting.machine import NightEnvironment

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started TEXT NOT NULL, report_path TEXT NOT NULL,
    cpu TEXT, harness_version TEXT);
CREATE TABLE IF NOT EXISTS claims (
    run_id INTEGER REFERENCES runs(id), claim TEXT, model TEXT, device TEXT, verdict TEXT,
    measured TEXT, simulated INTEGER);
CREATE TABLE IF NOT EXISTS latency (
    run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT, variant TEXT, median_ms REAL,
    p90_ms REAL, n INTEGER);
CREATE TABLE IF NOT EXISTS speedups (
    run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT, kind TEXT, ratio REAL,
    ci_low REAL, ci_high REAL);
CREATE TABLE IF NOT EXISTS accuracy (
    run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT, variant TEXT, top1 REAL,
    n INTEGER);
"""

# Columns added after the first schema: (table, column, type). Old files get them on open.
ADDED_COLUMNS = (
    ("runs", "finished", "TEXT"), ("runs", "status", "TEXT"), ("runs", "environment", "TEXT"),
    ("claims", "reason", "TEXT"),
    ("latency", "median_ci_low", "REAL"), ("latency", "median_ci_high", "REAL"),
    ("latency", "raw_ms", "TEXT"),
)

SPEEDUP_KINDS = {"speedup_qat_vs_float": "qat_vs_float", "speedup_ptq_vs_float": "ptq_vs_float"}


@contextlib.contextmanager
def _readable(db_path: Path) -> Iterator[None]:
    """sqlite's errors about the file itself, as one line naming it."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{db_path} is not a readable qat-harness history ({exc}); move it "
                         f"aside to start a new history") from None


def connect(db_path: Path) -> sqlite3.Connection:
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _readable(db_path):
        conn = sqlite3.connect(db_path, timeout=30)
        try:
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")  # one process at a time looks and migrates: no double ALTER
    for table, column, sql_type in ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    conn.commit()


def record(db_path: Path, data: dict, report_path: Path) -> int:
    db_path = Path(db_path)
    conn = connect(db_path)
    try:
        with _readable(db_path), conn:
            return _insert_run(conn, data, report_path)
    finally:
        conn.close()


def _insert_run(conn: sqlite3.Connection, data: dict, report_path: Path) -> int:
    env = NightEnvironment.from_report(data)
    cur = conn.execute(
        "INSERT INTO runs (started, report_path, cpu, harness_version, finished, status, environment)"
        " VALUES (?,?,?,?,?,?,?)",
        (data["started"], str(report_path), env.cpu, env.harness_version, data.get("finished"),
         data.get("status"), json.dumps(env.to_dict())))
    run_id = cur.lastrowid
    conn.executemany(
        "INSERT INTO claims (run_id, claim, model, device, verdict, measured, simulated, reason)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [(run_id, c["id"], c["model"], c["device"], c["verdict"], json.dumps(c.get("measured"), default=str),
          int(bool(c.get("simulated"))), c.get("reason")) for c in data["claims"]])
    latency, speedups, accuracy = [], [], []
    for model, m in (data.get("models") or {}).items():
        n_eval = ((m or {}).get("dataset") or {}).get("eval_examples")
        for dev, d in ((m or {}).get("devices") or {}).items():
            raw = d.get("latency_raw_ms") or {}
            for variant, s in (d.get("latency") or {}).items():
                interval = median_interval(raw[variant]) if raw.get(variant) else None
                latency.append((run_id, model, dev, variant, s.get("median_ms"), s.get("p90_ms"), s.get("n"),
                                interval.low if interval else None, interval.high if interval else None,
                                json.dumps(raw[variant]) if raw.get(variant) else None))
            for key, kind in SPEEDUP_KINDS.items():
                ratio = d.get(key)
                if ratio and ratio.get("ratio") is not None:
                    speedups.append((run_id, model, dev, kind, ratio["ratio"], ratio.get("ci_low"),
                                     ratio.get("ci_high")))
            for variant, top1 in (d.get("top1") or {}).items():
                if top1 is not None:
                    accuracy.append((run_id, model, dev, variant, top1, n_eval))
    conn.executemany(
        "INSERT INTO latency (run_id, model, device, variant, median_ms, p90_ms, n, median_ci_low,"
        " median_ci_high, raw_ms) VALUES (?,?,?,?,?,?,?,?,?,?)", latency)
    conn.executemany("INSERT INTO speedups VALUES (?,?,?,?,?,?,?)", speedups)
    conn.executemany("INSERT INTO accuracy VALUES (?,?,?,?,?,?)", accuracy)
    return run_id


def previous_report(db_path: Path, run_id: int) -> Path | None:
    """The report of the latest run recorded before ``run_id`` whose file still exists."""
    if not Path(db_path).exists():
        return None
    conn = connect(db_path)
    try:
        with _readable(db_path):
            for (path,) in conn.execute("SELECT report_path FROM runs WHERE id < ? ORDER BY id DESC",
                                        (run_id,)):
                if Path(path).exists():
                    return Path(path)
    finally:
        conn.close()
    return None


# -- reading the whole history back, typed ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Night:
    run_id: int
    started: str
    report_path: str
    status: str | None
    environment: NightEnvironment


@dataclasses.dataclass(frozen=True)
class ClaimRow:
    run_id: int
    claim: str
    model: str
    device: str
    verdict: str
    measured: str | None
    simulated: bool
    reason: str | None


@dataclasses.dataclass(frozen=True)
class LatencyRow:
    run_id: int
    model: str
    device: str
    variant: str
    median_ms: float | None
    p90_ms: float | None
    n: int | None
    median_ci_low: float | None
    median_ci_high: float | None


@dataclasses.dataclass(frozen=True)
class SpeedupRow:
    run_id: int
    model: str
    device: str
    kind: str
    ratio: float
    ci_low: float | None
    ci_high: float | None


@dataclasses.dataclass(frozen=True)
class AccuracyRow:
    run_id: int
    model: str
    device: str
    variant: str
    top1: float
    n: int | None


@dataclasses.dataclass(frozen=True)
class History:
    nights: list[Night]
    claims: list[ClaimRow]
    latency: list[LatencyRow]
    speedups: list[SpeedupRow]
    accuracy: list[AccuracyRow]


def load(db_path: Path) -> History:
    db_path = Path(db_path)
    if not db_path.is_file():
        raise UsageError(f"no history at {db_path} (a nightly run writes it)")
    conn = connect(db_path)
    try:
        with _readable(db_path):
            nights = [Night(run_id, started, path, status, _night_environment(env, cpu, version))
                      for run_id, started, path, status, env, cpu, version in conn.execute(
                          "SELECT id, started, report_path, status, environment, cpu, harness_version"
                          " FROM runs ORDER BY id")]
            claims = [ClaimRow(*row[:6], bool(row[6]), row[7]) for row in conn.execute(
                "SELECT run_id, claim, model, device, verdict, measured, simulated, reason FROM claims"
                " ORDER BY run_id")]
            latency = [LatencyRow(*row) for row in conn.execute(
                "SELECT run_id, model, device, variant, median_ms, p90_ms, n, median_ci_low,"
                " median_ci_high FROM latency ORDER BY run_id")]
            speedups = [SpeedupRow(*row) for row in conn.execute(
                "SELECT run_id, model, device, kind, ratio, ci_low, ci_high FROM speedups ORDER BY run_id")]
            accuracy = [AccuracyRow(*row) for row in conn.execute(
                "SELECT run_id, model, device, variant, top1, n FROM accuracy ORDER BY run_id")]
    finally:
        conn.close()
    return History(nights, claims, latency, speedups, accuracy)


def _night_environment(env_json: str | None, cpu: str | None, version: str | None) -> NightEnvironment:
    if env_json:
        try:
            return NightEnvironment.from_dict(json.loads(env_json))
        except (json.JSONDecodeError, TypeError):
            pass
    return NightEnvironment(cpu=cpu, harness_version=version)   # recorded before environments were kept


def raw_samples(db_path: Path, run_id: int, model: str, device: str, variant: str) -> list[float] | None:
    """The raw latency samples of one variant on one night, if that night kept them."""
    conn = connect(db_path)
    try:
        with _readable(db_path):
            row = conn.execute("SELECT raw_ms FROM latency WHERE run_id=? AND model=? AND device=? "
                               "AND variant=?", (run_id, model, device, variant)).fetchone()
    finally:
        conn.close()
    return json.loads(row[0]) if row and row[0] else None


def earlier_medians(db_path: Path, before_run_id: int | None = None) -> dict[tuple[str, str, str], list[float]]:
    """(model, device, variant) -> the median latency of each recorded night before
    ``before_run_id`` (all nights when None), oldest first: what the latency gate learns the
    night-to-night noise from."""
    db_path = Path(db_path)
    if not db_path.is_file():
        return {}
    conn = connect(db_path)
    try:
        with _readable(db_path):
            rows = conn.execute("SELECT model, device, variant, median_ms FROM latency WHERE run_id < ?"
                                " AND median_ms > 0 ORDER BY run_id",
                                (before_run_id if before_run_id is not None else 2**62,)).fetchall()
    finally:
        conn.close()
    medians: dict[tuple[str, str, str], list[float]] = {}
    for model, device, variant, median in rows:
        medians.setdefault((model, device, variant), []).append(median)
    return medians
