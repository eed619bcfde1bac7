"""Compare two conformance reports (e.g. last night's and tonight's): verdicts that got worse,
latencies that are significantly slower (the rules are in ``reporting.gates``), and what changed
on the machine in between. Every regression says which rule fired."""
from __future__ import annotations

import json
from pathlib import Path

from qat_harness.core.errors import UsageError
from qat_harness.reporting.gates import DEFAULT_TOLERANCE, LatencyGate, NightNoise, Outcome, judge_verdicts
from qat_harness.reporting.machine import NightEnvironment, environment_changes
from qat_harness.report import SCHEMA_VERSION

_CLAIM_TEXT_KEYS = ("id", "model", "device", "verdict")


def load(path: Path) -> dict:
    """A report.json (or the folder holding one), checked enough that comparing it cannot
    crash: any problem is a one-line ``UsageError`` naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"report not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not a report.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a report.json: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read report {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data or "claims" not in data:
        raise UsageError(f"{path} is not a qat-harness report (no schema_version / claims)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise UsageError(f"{path} has report schema_version {data['schema_version']!r}; this "
                         f"qat-harness reads version {SCHEMA_VERSION} only")
    problem = shape_problem(data)
    if problem:
        raise UsageError(f"{path} is a malformed report: {problem}")
    return data


def shape_problem(data: dict) -> str | None:
    """What in a report's claims and latency blocks the comparison could not read, or None."""
    if not isinstance(data["claims"], list):
        return "'claims' is not a list"
    for i, claim in enumerate(data["claims"]):
        if not isinstance(claim, dict):
            return f"claim #{i} is not an object"
        bad = [k for k in _CLAIM_TEXT_KEYS if not isinstance(claim.get(k), str)]
        if bad:
            return f"claim #{i} has no text {', '.join(bad)}"
    models = data.get("models", {})
    if not isinstance(models, dict):
        return "'models' is not an object"
    for model, m in models.items():
        devices = (m or {}).get("devices") if isinstance(m, dict) else None
        if m is not None and not isinstance(m, dict) or devices is not None and not isinstance(devices, dict):
            return f"model {model!r} is not an object with a 'devices' object"
        for dev, d in (devices or {}).items():
            if not isinstance(d, dict):
                return f"model {model!r} device {dev!r} is not an object"
            for block in ("latency", "latency_raw_ms"):
                if d.get(block) is not None and not isinstance(d[block], dict):
                    return f"model {model!r} device {dev!r}: '{block}' is not an object"
            for variant, samples in (d.get("latency_raw_ms") or {}).items():
                if not isinstance(samples, list) or not all(
                        isinstance(t, (int, float)) and not isinstance(t, bool) for t in samples):
                    return f"model {model!r} device {dev!r}: latency_raw_ms[{variant!r}] is not a list of numbers"
            for variant, summary in (d.get("latency") or {}).items():
                if not isinstance(summary, dict):
                    return f"model {model!r} device {dev!r}: latency[{variant!r}] is not an object"
    return None


def _claims_by_key(data: dict) -> dict:
    return {(c["id"], c["model"], c["device"]): c for c in data["claims"]}


def _device_block(data: dict, model: str, device: str) -> dict:
    return (((data.get("models") or {}).get(model) or {}).get("devices") or {}).get(device) or {}


def compare(baseline: dict, current: dict, latency_tolerance: float = DEFAULT_TOLERANCE,
            confidence: float = 0.95,
            earlier_medians: dict[tuple[str, str, str], list[float]] | None = None) -> dict:
    """The comparison as plain data (``render_text`` prints it). ``regressions`` and
    ``improvements`` rows carry ``what`` (the finding) and ``rule`` (which rule fired).
    ``earlier_medians`` ((model, device, variant) -> medians of the nights before, oldest
    first; ``history.earlier_medians``) lets the latency gate allow for night-to-night noise."""
    old, new = _claims_by_key(baseline), _claims_by_key(current)
    verdicts, regressions, improvements = [], [], []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        finding = judge_verdicts((a or {}).get("verdict", "absent"), (b or {}).get("verdict", "absent"))
        row = {"claim": key[0], "model": key[1], "device": key[2], "baseline": finding.baseline,
               "current": finding.current, "baseline_measured": (a or {}).get("measured"),
               "current_measured": (b or {}).get("measured"),
               "simulated": bool((b or a or {}).get("simulated"))}
        verdicts.append(row)
        if finding.outcome is Outcome.REGRESSION:
            regressions.append({**row, "what": finding.explain(), "rule": "verdict"})
        elif finding.outcome is Outcome.IMPROVEMENT:
            improvements.append({**row, "what": finding.explain(), "rule": "verdict"})

    gate = LatencyGate(tolerance=latency_tolerance, confidence=confidence)
    latency, within_noise = [], []
    for model, m in (current.get("models") or {}).items():
        for dev, d in ((m or {}).get("devices") or {}).items():
            base_dev = _device_block(baseline, model, dev)
            for variant, summary in (d.get("latency") or {}).items():
                noise = NightNoise.from_medians((earlier_medians or {}).get((model, dev, variant), []))
                row = _latency_row(gate, model, dev, variant, base_dev, d, noise)
                if row is None:
                    continue
                latency.append(row)
                entry = {"claim": "latency", "model": model, "device": dev, "variant": variant,
                         "what": f"{variant}: {row['explanation']}", "rule": f"latency {row['rule']}",
                         "simulated": bool(d.get("simulated"))}
                {Outcome.REGRESSION: regressions, Outcome.IMPROVEMENT: improvements,
                 Outcome.WITHIN_NOISE: within_noise}.get(Outcome(row["outcome"]), []).append(entry)

    env_before, env_after = NightEnvironment.from_report(baseline), NightEnvironment.from_report(current)
    return {"verdicts": verdicts, "latency": latency, "regressions": regressions,
            "improvements": improvements, "within_noise": within_noise,
            "same_machine": env_before.cpu == env_after.cpu,
            "environment_changes": environment_changes(env_before, env_after),
            "latency_tolerance": latency_tolerance, "confidence": confidence,
            "baseline_started": baseline.get("started"), "current_started": current.get("started")}


def _latency_row(gate: LatencyGate, model: str, device: str, variant: str, base_dev: dict,
                 cur_dev: dict, noise: NightNoise | None) -> dict | None:
    b = (base_dev.get("latency") or {}).get(variant) or {}
    s = (cur_dev.get("latency") or {}).get(variant) or {}
    b_raw = (base_dev.get("latency_raw_ms") or {}).get(variant)
    s_raw = (cur_dev.get("latency_raw_ms") or {}).get(variant)
    if b_raw and s_raw and min(b_raw) > 0 and min(s_raw) > 0:
        finding = gate.judge_samples(b_raw, s_raw, noise)
    elif _positive(b.get("median_ms")) and _positive(s.get("median_ms")):
        finding = gate.judge_medians(b["median_ms"], s["median_ms"])
    else:
        return None
    return {"model": model, "device": device, "variant": variant,
            "baseline_ms": b.get("median_ms"), "current_ms": s.get("median_ms"),
            "change": finding.change, "ratio": finding.ratio, "ci_low": finding.ci_low,
            "ci_high": finding.ci_high, "rule": finding.rule.value, "outcome": finding.outcome.value,
            "explanation": finding.explain()}


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def compare_files(baseline: Path, current: Path, latency_tolerance: float = DEFAULT_TOLERANCE,
                  confidence: float = 0.95, history_db: Path | None = None,
                  before_run_id: int | None = None) -> dict:
    """``history_db``: the nightly history whose nights before ``before_run_id`` (the current
    run's id; all nights when None) give the night-to-night noise."""
    from qat_harness import history

    earlier = history.earlier_medians(history_db, before_run_id) if history_db else None
    return compare(load(baseline), load(current), latency_tolerance, confidence, earlier)


def render_text(result: dict) -> str:
    from tabulate import tabulate

    lines = [f"baseline {result['baseline_started']}  vs  current {result['current_started']}"]
    if not result["same_machine"]:
        lines.append("note: the two reports come from different CPUs; latency changes may be the machine's")
    if result.get("environment_changes"):
        lines.append("changed since the baseline: " + "; ".join(result["environment_changes"]))
    rows = [[r["claim"], r["model"], r["device"] + (" (simulated)" if r.get("simulated") else ""),
             r["baseline"], r["current"]] for r in result["verdicts"]]
    lines.append(tabulate(rows, headers=["claim", "model", "device", "baseline", "current"]))
    if result["latency"]:
        lrows = [[r["model"], r["device"], r["variant"], _ms(r["baseline_ms"]), _ms(r["current_ms"]),
                  f"{r['change']:+.1%}", _interval(r), r["outcome"]] for r in result["latency"]]
        lines.append(tabulate(lrows, headers=["model", "device", "variant", "baseline ms",
                                              "current ms", "change", "95% CI", "gate"]))
    tolerance = result.get("latency_tolerance", DEFAULT_TOLERANCE)
    lines.append(f"{len(result['regressions'])} regression(s), {len(result['improvements'])} "
                 f"improvement(s); latency gate: slower only when the whole {result.get('confidence', 0.95):.0%} "
                 f"interval of the ratio of medians lies above +{tolerance:.0%}")
    lines += [f"  REGRESSION {r['model']} {r['device']} {r['claim']} [{r['rule']}]: {r['what']}"
              for r in result["regressions"]]
    lines += [f"  within noise (not a regression) {r['model']} {r['device']}: {r['what']}"
              for r in result.get("within_noise", [])]
    return "\n".join(lines)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(row: dict) -> str:
    if row.get("ci_low") is None:
        return "(no raw samples)"
    return f"[{row['ci_low'] - 1:+.1%}, {row['ci_high'] - 1:+.1%}]"
