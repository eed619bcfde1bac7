"""Run history in SQLite, so nightly runs can be compared with earlier nights and trends
queried (``sqlite3 reports/nightly/history.sqlite``)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

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
"""


def connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    conn.executescript(SCHEMA)
    return conn


def record(db_path: Path, data: dict, report_path: Path) -> int:
    with connect(db_path) as conn:
        cur = conn.execute("INSERT INTO runs (started, report_path, cpu, harness_version) VALUES (?,?,?,?)",
                           (data["started"], str(report_path), data["environment"]["cpu"]["model"],
                            data["environment"].get("harness_version")))
        run_id = cur.lastrowid
        conn.executemany("INSERT INTO claims VALUES (?,?,?,?,?,?,?)",
                         [(run_id, c["id"], c["model"], c["device"], c["verdict"],
                           json.dumps(c["measured"], default=str), int(bool(c.get("simulated"))))
                          for c in data["claims"]])
        rows = []
        for model, m in data["models"].items():
            for dev, d in (m.get("devices") or {}).items():
                for variant, s in (d.get("latency") or {}).items():
                    rows.append((run_id, model, dev, variant, s.get("median_ms"), s.get("p90_ms"), s.get("n")))
        conn.executemany("INSERT INTO latency VALUES (?,?,?,?,?,?,?)", rows)
    conn.close()
    return run_id


def previous_report(db_path: Path, run_id: int) -> Path | None:
    """The report of the latest run recorded before ``run_id`` whose file still exists."""
    if not db_path.exists():
        return None
    conn = connect(db_path)
    try:
        for (path,) in conn.execute("SELECT report_path FROM runs WHERE id < ? ORDER BY id DESC", (run_id,)):
            if Path(path).exists():
                return Path(path)
    finally:
        conn.close()
    return None
