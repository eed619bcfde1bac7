"""Compare two conformance reports (e.g. last night's and tonight's): verdicts that got worse,
latencies that moved beyond a tolerance, agreement that dropped."""
from __future__ import annotations

import json
from pathlib import Path

from qat_harness.results import SEVERITY as VERDICT_RANK
from qat_harness.core.errors import UsageError


def load(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"report not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a report.json: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data or "claims" not in data:
        raise UsageError(f"{path} is not a qat-harness report (no schema_version / claims)")
    return data


def _claims_by_key(data: dict) -> dict:
    return {(c["id"], c["model"], c["device"]): c for c in data["claims"]}


def compare(baseline: dict, current: dict, latency_tolerance: float = 0.10) -> dict:
    old, new = _claims_by_key(baseline), _claims_by_key(current)
    verdicts, regressions, improvements = [], [], []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        va, vb = (a or {}).get("verdict", "absent"), (b or {}).get("verdict", "absent")
        row = {"claim": key[0], "model": key[1], "device": key[2], "baseline": va, "current": vb,
               "baseline_measured": (a or {}).get("measured"), "current_measured": (b or {}).get("measured")}
        verdicts.append(row)
        if va in VERDICT_RANK and vb in VERDICT_RANK:
            if VERDICT_RANK[vb] > VERDICT_RANK[va] and vb != "SKIP":
                regressions.append({**row, "what": f"verdict {va} -> {vb}"})
            elif VERDICT_RANK[vb] < VERDICT_RANK[va]:
                improvements.append({**row, "what": f"verdict {va} -> {vb}"})
        elif va != "absent" and vb == "absent":
            regressions.append({**row, "what": "claim no longer reported"})
    latency = []
    for model, m in current.get("models", {}).items():
        for dev, d in (m.get("devices") or {}).items():
            base_dev = ((baseline.get("models", {}).get(model) or {}).get("devices") or {}).get(dev) or {}
            for variant, s in (d.get("latency") or {}).items():
                b = (base_dev.get("latency") or {}).get(variant)
                if not b or not b.get("median_ms") or not s.get("median_ms"):
                    continue
                change = s["median_ms"] / b["median_ms"] - 1
                row = {"model": model, "device": dev, "variant": variant,
                       "baseline_ms": b["median_ms"], "current_ms": s["median_ms"], "change": change}
                latency.append(row)
                if change > latency_tolerance:
                    regressions.append({"claim": "latency", "model": model, "device": dev,
                                        "what": f"{variant} median {b['median_ms']:.3f} -> "
                                                f"{s['median_ms']:.3f} ms (+{change:.0%})"})
    same_machine = (baseline.get("environment", {}).get("cpu") == current.get("environment", {}).get("cpu"))
    return {"verdicts": verdicts, "latency": latency, "regressions": regressions,
            "improvements": improvements, "same_machine": same_machine,
            "baseline_started": baseline.get("started"), "current_started": current.get("started")}


def compare_files(baseline: Path, current: Path, latency_tolerance: float = 0.10) -> dict:
    return compare(load(baseline), load(current), latency_tolerance)


def render_text(result: dict) -> str:
    from tabulate import tabulate

    lines = [f"baseline {result['baseline_started']}  vs  current {result['current_started']}"]
    if not result["same_machine"]:
        lines.append("note: the two reports come from different CPUs; latency changes may be the machine's")
    rows = [[r["claim"], r["model"], r["device"], r["baseline"], r["current"]] for r in result["verdicts"]]
    lines.append(tabulate(rows, headers=["claim", "model", "device", "baseline", "current"]))
    if result["latency"]:
        lrows = [[r["model"], r["device"], r["variant"], f"{r['baseline_ms']:.3f}", f"{r['current_ms']:.3f}",
                  f"{r['change']:+.1%}"] for r in result["latency"]]
        lines.append(tabulate(lrows, headers=["model", "device", "variant", "baseline ms", "current ms", "change"]))
    lines.append(f"{len(result['regressions'])} regression(s), {len(result['improvements'])} improvement(s)")
    lines += [f"  REGRESSION {r['model']} {r['device']} {r['claim']}: {r['what']}" for r in result["regressions"]]
    return "\n".join(lines)
