"""Run history, so nightly runs can be compared with earlier nights and trends drawn
(``qat-harness history DIR``) or queried (``sqlite3 reports/nightly/history.sqlite``). It lives
in a SQLite file (the default, ``history.sqlite`` beside the nights) or in a PostgreSQL
database a lab's hosts share (``--history postgresql://...``): ``history_store`` opens either,
and every query here is SQLAlchemy Core over the one schema of ``history_db``.

The schema only grows (``history_db``): columns and tables added since the first version
are added to an older history when a night is recorded in it, and rows recorded before them
read back with those fields empty. A SQLite file is opened as untrusted input: read-only where
reading, checked to be a history this harness stamped, nothing stored in it runs. Each night
keeps its machine and library versions (``runs.environment``), its raw latency samples with
the median's interval, its speed-ups and accuracies, so the trends need no report.json. A
history that cannot be read is a one-line ``UsageError``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from qat_harness import history_store
from qat_harness.compare.intervals import median_interval
from qat_harness.compare.machine import NightEnvironment
from qat_harness.history_store import HistoryLocation
from qat_harness.record.tree import RunReport

Where = HistoryLocation | Path | str   # a location, or what ``history_store.locate`` reads as one


def record(where: Where, run: RunReport, report_path: Path) -> int:
    """Record ``run`` as one night, in one transaction; its run id, given by the database."""
    with history_store.writing(where) as conn:
        return _insert_run(conn, run, report_path)


def _insert_run(conn: sa.Connection, run: RunReport, report_path: Path) -> int:
    t = history_store.tables()
    env = NightEnvironment.from_report(run)
    inserted = conn.execute(sa.insert(t["runs"]).values(
        started=run.started, report_path=str(report_path), cpu=env.cpu, harness_version=env.harness_version,
        finished=run.finished, status=run.status.value, environment=json.dumps(env.to_dict()),
    )).inserted_primary_key
    run_id = int(cast(sa.Row, inserted)[0])   # the id the database gave (SERIAL, SQLite's rowid)
    claims = [dict(run_id=run_id, claim=c.id, model=c.model, device=c.device, verdict=c.verdict.value,
                   measured=json.dumps(c.to_dict()["measured"]), simulated=int(c.simulated), reason=c.reason)
              for c in run.claims]
    latency: list[dict[str, Any]] = []
    speedups: list[dict[str, Any]] = []
    accuracy: list[dict[str, Any]] = []
    for model, m in run.models.items():
        n_eval = m.dataset.eval_examples if m.dataset else None
        for dev, d in m.devices.items():
            raw = d.latency_raw_ms or {}
            for variant, summary in (d.latency or {}).items():
                interval = median_interval(raw[variant]) if raw.get(variant) else None
                latency.append(dict(run_id=run_id, model=model, device=dev, variant=variant,
                                    median_ms=summary.median_ms, p90_ms=summary.p90_ms, n=summary.n,
                                    median_ci_low=interval.low if interval else None,
                                    median_ci_high=interval.high if interval else None,
                                    raw_ms=json.dumps(raw[variant]) if raw.get(variant) else None))
            for kind, ratio in (("qat_vs_float", d.speedup_qat_vs_float), ("ptq_vs_float", d.speedup_ptq_vs_float)):
                if ratio is not None:
                    speedups.append(dict(run_id=run_id, model=model, device=dev, kind=kind, ratio=ratio.ratio,
                                         ci_low=ratio.ci_low, ci_high=ratio.ci_high))
            for variant, top1 in (d.top1 or {}).items():
                accuracy.append(dict(run_id=run_id, model=model, device=dev, variant=variant, top1=top1, n=n_eval))
    for table, rows in (("claims", claims), ("latency", latency), ("speedups", speedups), ("accuracy", accuracy)):
        if rows:
            conn.execute(sa.insert(t[table]), rows)
    return run_id


def previous_report(where: Where, run_id: int) -> Path | None:
    """The report of the latest run recorded before ``run_id`` whose file still exists."""
    at = history_store.locate(where)
    if at.path is not None and not at.path.exists():
        return None
    runs = history_store.tables()["runs"]
    with history_store.reading(at) as conn:
        for path in conn.scalars(sa.select(runs.c.report_path).where(runs.c.id < run_id)
                                 .order_by(runs.c.id.desc())):
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


def load(where: Where) -> History:
    t = history_store.tables()
    runs, claims, latency, speedups, accuracy = (t[name] for name in ("runs", "claims", "latency",
                                                                      "speedups", "accuracy"))
    with history_store.reading(where) as conn:
        nights = [Night(run_id, started, path, status, _night_environment(env, cpu, version))
                  for run_id, started, path, status, env, cpu, version in conn.execute(
                      sa.select(runs.c.id, runs.c.started, runs.c.report_path, runs.c.status,
                                runs.c.environment, runs.c.cpu, runs.c.harness_version).order_by(runs.c.id))]
        claim_rows = [ClaimRow(run_id, claim, model, device, verdict, measured, bool(simulated), reason)
                      for run_id, claim, model, device, verdict, measured, simulated, reason in conn.execute(
                          sa.select(claims.c.run_id, claims.c.claim, claims.c.model, claims.c.device,
                                    claims.c.verdict, claims.c.measured, claims.c.simulated, claims.c.reason)
                          .order_by(claims.c.run_id, claims.c.claim, claims.c.model, claims.c.device))]
        latency_rows = [LatencyRow(*row) for row in conn.execute(
            sa.select(latency.c.run_id, latency.c.model, latency.c.device, latency.c.variant, latency.c.median_ms,
                      latency.c.p90_ms, latency.c.n, latency.c.median_ci_low, latency.c.median_ci_high)
            .order_by(latency.c.run_id, latency.c.model, latency.c.device, latency.c.variant))]
        speedup_rows = [SpeedupRow(*row) for row in conn.execute(
            sa.select(speedups.c.run_id, speedups.c.model, speedups.c.device, speedups.c.kind, speedups.c.ratio,
                      speedups.c.ci_low, speedups.c.ci_high)
            .order_by(speedups.c.run_id, speedups.c.model, speedups.c.device, speedups.c.kind))]
        accuracy_rows = [AccuracyRow(*row) for row in conn.execute(
            sa.select(accuracy.c.run_id, accuracy.c.model, accuracy.c.device, accuracy.c.variant, accuracy.c.top1,
                      accuracy.c.n)
            .order_by(accuracy.c.run_id, accuracy.c.model, accuracy.c.device, accuracy.c.variant))]
    return History(nights, claim_rows, latency_rows, speedup_rows, accuracy_rows)


def _night_environment(env_json: str | None, cpu: str | None, version: str | None) -> NightEnvironment:
    if env_json:
        try:
            return NightEnvironment.from_dict(json.loads(env_json))
        except (json.JSONDecodeError, TypeError):
            pass
    return NightEnvironment(cpu=cpu, harness_version=version)   # recorded before environments were kept


def raw_samples(where: Where, run_id: int, model: str, device: str, variant: str) -> list[float] | None:
    """The raw latency samples of one variant on one night, if that night kept them."""
    latency = history_store.tables()["latency"]
    with history_store.reading(where) as conn:
        raw = conn.scalars(sa.select(latency.c.raw_ms).where(
            latency.c.run_id == run_id, latency.c.model == model, latency.c.device == device,
            latency.c.variant == variant)).first()
    return json.loads(raw) if raw else None


def earlier_medians(where: Where, before_run_id: int | None = None) -> dict[tuple[str, str, str], list[float]]:
    """(model, device, variant) -> the median latency of each recorded night before
    ``before_run_id`` (all nights when None), oldest first: what the latency gate learns the
    night-to-night noise from."""
    latency = history_store.tables()["latency"]
    query = (sa.select(latency.c.model, latency.c.device, latency.c.variant, latency.c.median_ms)
             .where(latency.c.median_ms > 0).order_by(latency.c.run_id))
    if before_run_id is not None:
        query = query.where(latency.c.run_id < before_run_id)
    with history_store.reading(where) as conn:
        rows = conn.execute(query).all()
    medians: dict[tuple[str, str, str], list[float]] = {}
    for model, device, variant, median in rows:
        medians.setdefault((model, device, variant), []).append(median)
    return medians
