"""The run report: ``report.json`` (machine-readable, versioned) and ``report.md`` (for people).

The JSON is rewritten after every step of a run, atomically, so a run that dies half way
leaves a valid report of everything measured until then (``status: running``)."""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

from qat_harness.claims import CLAIMS, ClaimResult, Verdict
from qat_harness.errors import UsageError

SCHEMA_VERSION = 1


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Report:
    def __init__(self, out_dir: Path, environment: dict, options: dict):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None
        self.data: dict = {"schema_version": SCHEMA_VERSION, "tool": "qat-harness",
                           "started": _now(), "finished": None, "status": "running",
                           "environment": environment, "options": options, "devices": {},
                           "models": {}, "claims": [], "notes": []}
        self.save()

    @property
    def json_path(self) -> Path:
        return self.out_dir / "report.json"

    @property
    def md_path(self) -> Path:
        return self.out_dir / "report.md"

    # -- recording --------------------------------------------------------------------------
    def device(self, name: str, description: dict) -> None:
        self.data["devices"][name] = description

    def model(self, name: str, info: dict) -> dict:
        return self.data["models"].setdefault(name, dict(info))

    def add_claim(self, result: ClaimResult) -> None:
        self.data["claims"].append(result.to_dict())

    def note(self, model: str, text: str) -> None:
        self.data["notes"].append({"model": model, "text": text})

    def model_error(self, model: str, text: str, usage: bool = False) -> None:
        self.data["models"].setdefault(model, {})["error"] = text
        self.data.setdefault("errors", []).append({"model": model, "error": text, "usage": usage})

    @property
    def claims(self) -> list[dict]:
        return self.data["claims"]

    @property
    def usage_errors(self) -> list[str]:
        return [e["error"] for e in self.data.get("errors", []) if e.get("usage")]

    # -- writing ----------------------------------------------------------------------------
    def save(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".json", dir=self.out_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=2, default=_jsonable)
        os.replace(tmp, self.json_path)

    def finish(self, status: str = "complete") -> None:
        self.data["finished"] = _now()
        self.data["status"] = status
        self.save()
        self.md_path.write_text(render_markdown(self.data))

    def verdict_counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for c in self.claims:
            counts[c["verdict"]] += 1
        return counts


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value"):
        return obj.value
    return str(obj)


def format_measured(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_measured(v)}" for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def device_label(claim: dict) -> str:
    return claim["device"] + (" (simulated)" if claim.get("simulated") else "")


def summary_rows(data: dict) -> list[list[str]]:
    return [[c["id"], c["model"], device_label(c), c["verdict"], format_measured(c["measured"]),
             c["reason"]] for c in data["claims"]]


def render_markdown(data: dict) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("qat_harness", "templates"),
                      autoescape=select_autoescape([]), trim_blocks=True, lstrip_blocks=True)
    env.filters["measured"] = format_measured
    env.filters["device_label"] = device_label
    counts = {v.value: sum(1 for c in data["claims"] if c["verdict"] == v.value) for v in Verdict}
    return env.get_template("report.md.j2").render(data=data, claims_text=CLAIMS, counts=counts)
