"""Run history in SQLite, so nightly runs can be compared with earlier nights and trends
drawn (``qat-harness history DIR``) or queried (``sqlite3 reports/nightly/history.sqlite``).

The schema only grows (``history_db``): columns and tables added since the first version
are added to an older file when a night is recorded in it, and rows recorded before them read
back with those fields empty. The file is opened as untrusted input: read-only where reading,
checked to be a history this harness stamped, nothing stored in it runs. Each night keeps
its machine and library versions (``runs.environment``), its raw latency samples with the
median's interval, its speed-ups and accuracies, so the trends need no report.json. A file
that is not a readable history is a one-line ``UsageError``."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import cast

from qat_harness import history_db
from qat_harness.compare.intervals import median_interval
from qat_harness.compare.machine import NightEnvironment
from qat_harness.record.tree import RunReport


def record(db_path: Path, run: RunReport, report_path: Path) -> int:
    with history_db.writing(db_path) as conn:
        return _insert_run(conn, run, report_path)


def _insert_run(conn: sqlite3.Connection, run: RunReport, report_path: Path) -> int:
    env = NightEnvironment.from_report(run)
    cur = conn.execute(
        "INSERT INTO runs (started, report_path, cpu, harness_version, finished, status, environment)"
        " VALUES (?,?,?,?,?,?,?)",
        (run.started, str(report_path), env.cpu, env.harness_version, run.finished,
         run.status.value, json.dumps(env.to_dict())))
    run_id = cast(int, cur.lastrowid)  # set by the INSERT just run
    conn.executemany(
        "INSERT INTO claims (run_id, claim, model, device, verdict, measured, simulated, reason)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [(run_id, c.id, c.model, c.device, c.verdict.value, json.dumps(c.to_dict()["measured"]),
          int(c.simulated), c.reason) for c in run.claims])
    latency, speedups, accuracy = [], [], []
    for model, m in run.models.items():
        n_eval = m.dataset.eval_examples if m.dataset else None
        for dev, d in m.devices.items():
            raw = d.latency_raw_ms or {}
            for variant, summary in (d.latency or {}).items():
                interval = median_interval(raw[variant]) if raw.get(variant) else None
                latency.append((run_id, model, dev, variant, summary.median_ms, summary.p90_ms, summary.n,
                                interval.low if interval else None, interval.high if interval else None,
                                json.dumps(raw[variant]) if raw.get(variant) else None))
            for kind, ratio in (("qat_vs_float", d.speedup_qat_vs_float), ("ptq_vs_float", d.speedup_ptq_vs_float)):
                if ratio is not None:
                    speedups.append((run_id, model, dev, kind, ratio.ratio, ratio.ci_low, ratio.ci_high))
            for variant, top1 in (d.top1 or {}).items():
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
    with history_db.reading(db_path) as conn:
        for (path,) in conn.execute("SELECT report_path FROM runs WHERE id < ? ORDER BY id DESC",
                                    (run_id,)):
            if Path(path).exists():
                return Path(path)
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
    with history_db.reading(db_path) as conn:
        nights = [Night(run_id, started, path, status, _night_environment(env, cpu, version))
                  for run_id, started, path, status, env, cpu, version in conn.execute(
                      "SELECT id, started, report_path, status, environment, cpu, harness_version"
                      " FROM runs ORDER BY id")]
        claims = [ClaimRow(run_id, claim, model, device, verdict, measured, bool(simulated), reason)
                  for run_id, claim, model, device, verdict, measured, simulated, reason in conn.execute(
                      "SELECT run_id, claim, model, device, verdict, measured, simulated, reason FROM claims"
                      " ORDER BY run_id")]
        latency = [LatencyRow(*row) for row in conn.execute(
            "SELECT run_id, model, device, variant, median_ms, p90_ms, n, median_ci_low,"
            " median_ci_high FROM latency ORDER BY run_id")]
        speedups = [SpeedupRow(*row) for row in conn.execute(
            "SELECT run_id, model, device, kind, ratio, ci_low, ci_high FROM speedups ORDER BY run_id")]
        accuracy = [AccuracyRow(*row) for row in conn.execute(
            "SELECT run_id, model, device, variant, top1, n FROM accuracy ORDER BY run_id")]
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
    with history_db.reading(db_path) as conn:
        row = conn.execute("SELECT raw_ms FROM latency WHERE run_id=? AND model=? AND device=? "
                           "AND variant=?", (run_id, model, device, variant)).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def earlier_medians(db_path: Path, before_run_id: int | None = None) -> dict[tuple[str, str, str], list[float]]:
    """(model, device, variant) -> the median latency of each recorded night before
    ``before_run_id`` (all nights when None), oldest first: what the latency gate learns the
    night-to-night noise from."""
    with history_db.reading(db_path) as conn:
        rows = conn.execute("SELECT model, device, variant, median_ms FROM latency WHERE run_id < ?"
                            " AND median_ms > 0 ORDER BY run_id",
                            (before_run_id if before_run_id is not None else 2**62,)).fetchall()
    medians: dict[tuple[str, str, str], list[float]] = {}
    for model, device, variant, median in rows:
        medians.setdefault((model, device, variant), []).append(median)
    return medians
