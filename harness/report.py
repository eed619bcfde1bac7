"""The run report: a typed tree (``RunReport`` > ``ModelSection`` > ``DeviceSection``) that the
stages fill with the values they return, written as ``report.json`` (machine-readable,
versioned) and ``report.md`` (for people).

``to_json`` is the one place the tree becomes JSON. The JSON is rewritten after every step of
a run, atomically, so a run that dies half way leaves a valid report of everything measured
until then (``status: running``, or ``interrupted`` when the harness saw it stop)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from qat_harness.claims import CLAIMS
from qat_harness.core.errors import UsageError
from qat_harness.devices.base import Delegation
from qat_harness.results import ClaimResult, Verdict, plain
from qat_harness.stats import LatencySummary, OutputDifference, RatioCI, StepDifference

SCHEMA_VERSION = 1


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _present(**fields: Any) -> dict:
    """Optional report keys appear only once they hold something (as they always have)."""
    return {k: plain(v) for k, v in fields.items() if v is not None}


@dataclasses.dataclass
class DeviceSection:
    """What one model did on one device."""
    simulated: bool
    delegation: dict[str, Delegation] = dataclasses.field(default_factory=dict)  # variant ->
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # 'run:qat_int8' -> reason
    vs_reference_kernels: OutputDifference | StepDifference | None = None  # the first output
    vs_reference_kernels_outputs: list[OutputDifference] | None = None   # every output, if several
    top1: dict[str, float] | None = None
    latency: dict[str, LatencySummary] | None = None
    latency_raw_ms: dict[str, list[float]] | None = None
    first_invoke_ms: dict[str, float] | None = None
    bench_details: dict | None = None
    speedup_qat_vs_float: RatioCI | None = None
    speedup_ptq_vs_float: RatioCI | None = None

    def to_json(self) -> dict:
        return {"simulated": self.simulated, "delegation": plain(self.delegation),
                **_present(errors=self.errors or None,
                           vs_reference_kernels=self.vs_reference_kernels,
                           vs_reference_kernels_outputs=self.vs_reference_kernels_outputs, top1=self.top1,
                           latency=self.latency, latency_raw_ms=self.latency_raw_ms,
                           first_invoke_ms=self.first_invoke_ms, bench_details=self.bench_details,
                           speedup_qat_vs_float=self.speedup_qat_vs_float,
                           speedup_ptq_vs_float=self.speedup_ptq_vs_float)}


@dataclasses.dataclass
class DatasetInfo:
    name: str
    eval_examples: int
    labels_meaningful: bool
    description: str | None = None      # what the data is and how it was preprocessed

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class ArtifactsInfo:
    folder: Path | None             # the cache entry; None for a user's own .tflite files
    from_cache: bool | None
    files: dict[str, Path]


@dataclasses.dataclass
class ModelSection:
    """What happened to one model: where its artifacts came from, what the flatbuffers hold,
    and a ``DeviceSection`` per device."""
    description: str | None = None
    config: dict | None = None
    dataset: DatasetInfo | None = None
    artifacts: ArtifactsInfo | None = None
    keras: dict | None = None                # training/conversion metrics of the build
    tflite: dict[str, Any] | None = None     # variant -> core.tflite.ModelInfo
    quantization: dict[str, list] | None = None
    ptq_checks: dict[str, Any] | None = None
    devices: dict[str, DeviceSection] = dataclasses.field(default_factory=dict)
    oracle_error: str | None = None
    error: str | None = None

    def to_json(self) -> dict:
        d = _present(description=self.description, config=self.config, dataset=self.dataset,
                     artifacts=self.artifacts, keras=self.keras, tflite=self.tflite,
                     quantization=self.quantization, ptq_checks=self.ptq_checks)
        if self.devices:
            d["devices"] = {name: section.to_json() for name, section in self.devices.items()}
        d.update(_present(oracle_error=self.oracle_error, error=self.error))
        return d


@dataclasses.dataclass
class Note:
    model: str
    text: str


@dataclasses.dataclass
class ModelError:
    model: str
    error: str
    usage: bool


@dataclasses.dataclass
class RunReport:
    environment: Any  # environment.Environment
    options: dict
    started: str = dataclasses.field(default_factory=_now)
    finished: str | None = None
    status: str = "running"
    devices: dict[str, dict] = dataclasses.field(default_factory=dict)  # name -> describe()
    models: dict[str, ModelSection] = dataclasses.field(default_factory=dict)
    claims: list[ClaimResult] = dataclasses.field(default_factory=list)
    notes: list[Note] = dataclasses.field(default_factory=list)
    errors: list[ModelError] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        d = {"schema_version": SCHEMA_VERSION, "tool": "qat-harness", "started": self.started,
             "finished": self.finished, "status": self.status,
             "environment": plain(self.environment), "options": plain(self.options),
             "devices": plain(self.devices),
             "models": {name: m.to_json() for name, m in self.models.items()},
             "claims": [c.to_dict() for c in self.claims], "notes": plain(self.notes)}
        if self.errors:
            d["errors"] = plain(self.errors)
        return d


class Report:
    """A ``RunReport`` bound to its output folder: recording helpers and the writer."""

    def __init__(self, out_dir: Path, environment, options: dict):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None
        self.run = RunReport(environment, options)
        self.save()

    @property
    def json_path(self) -> Path:
        return self.out_dir / "report.json"

    @property
    def md_path(self) -> Path:
        return self.out_dir / "report.md"

    # -- recording --------------------------------------------------------------------------
    def device(self, name: str, description: dict) -> None:
        self.run.devices[name] = description

    def model(self, name: str, section: ModelSection) -> ModelSection:
        return self.run.models.setdefault(name, section)

    def add_claim(self, result: ClaimResult) -> None:
        self.run.claims.append(result)

    def note(self, model: str, text: str) -> None:
        self.run.notes.append(Note(model, text))

    def model_error(self, model: str, text: str, usage: bool = False) -> None:
        self.run.models.setdefault(model, ModelSection()).error = text
        self.run.errors.append(ModelError(model, text, usage))

    @property
    def claims(self) -> list[ClaimResult]:
        return self.run.claims

    @property
    def usage_errors(self) -> list[str]:
        return [e.error for e in self.run.errors if e.usage]

    @property
    def data(self) -> dict:
        """The report as it is written to report.json."""
        return self.run.to_json()

    # -- writing ----------------------------------------------------------------------------
    def save(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".json", dir=self.out_dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=2)
            os.replace(tmp, self.json_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def finish(self, status: str = "complete") -> None:
        self.run.finished = _now()
        self.run.status = status
        self.save()
        self.md_path.write_text(render_markdown(self.data))

    def verdict_counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for c in self.claims:
            counts[c.verdict.value] += 1
        return counts


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


def md_escape(text) -> str:
    """User-controlled text (file and folder names, model names) as inert Markdown: no
    headings, links, tables or HTML can be injected through a name."""
    import html
    import re

    text = re.sub(r"([\\`*_{}\[\]()#+!~])", r"\\\1", str(text))
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


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
    env.filters["md"] = md_escape
    env.filters["device_label"] = device_label
    counts = {v.value: sum(1 for c in data["claims"] if c["verdict"] == v.value) for v in Verdict}
    return env.get_template("report.md.j2").render(data=data, claims_text=CLAIMS, counts=counts)
