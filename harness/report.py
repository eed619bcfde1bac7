"""The run report: a typed tree (``RunReport`` > ``ModelSection`` > ``DeviceSection``) that the
stages fill with the values they return, written as ``report.json`` (machine-readable,
versioned) and ``report.md`` (for people).

``to_json`` is the one place the tree becomes JSON. The JSON is rewritten after every step of
a run, atomically, so a run that dies half way leaves a valid report of everything measured
until then (``status: running``, or ``interrupted`` when the harness saw it stop)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import fcntl
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
    trace: dict | None = None             # where int8 parts ways with float, when A2 is not a PASS

    def to_json(self) -> dict:
        return {"simulated": self.simulated, "delegation": plain(self.delegation),
                **_present(errors=self.errors or None,
                           vs_reference_kernels=self.vs_reference_kernels,
                           vs_reference_kernels_outputs=self.vs_reference_kernels_outputs, top1=self.top1,
                           latency=self.latency, latency_raw_ms=self.latency_raw_ms,
                           first_invoke_ms=self.first_invoke_ms, bench_details=self.bench_details,
                           speedup_qat_vs_float=self.speedup_qat_vs_float,
                           speedup_ptq_vs_float=self.speedup_ptq_vs_float, trace=self.trace)}


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
    recipes: Any = None                     # recipes.stage.RecipeResults, with --recipes

    def to_json(self) -> dict:
        d = _present(description=self.description, config=self.config, dataset=self.dataset,
                     artifacts=self.artifacts, keras=self.keras, tflite=self.tflite,
                     quantization=self.quantization, ptq_checks=self.ptq_checks)
        if self.devices:
            d["devices"] = {name: section.to_json() for name, section in self.devices.items()}
        d.update(_present(oracle_error=self.oracle_error, error=self.error, recipes=self.recipes))
        return d


@dataclasses.dataclass
class RecordedSection:
    """A section read back from the report.json of a resumed run: kept as it was written
    (its measurements are not redone, so they are not rebuilt into typed values)."""
    data: dict

    @property
    def errors(self) -> dict[str, str]:
        """As ``DeviceSection.errors``: a resumed run judges kept devices' load failures too."""
        return self.data.get("errors") or {}

    def to_json(self) -> dict:
        return self.data


@dataclasses.dataclass
class Resumption:
    at: str
    previous_status: str
    kept: list[str]          # 'model on device' that were already done


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
    #: model -> devices whose every step is recorded (what a resumed run need not redo)
    done: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    stop_reason: str | None = None          # why an interrupted run stopped
    resumed: list[Resumption] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        d = {"schema_version": SCHEMA_VERSION, "tool": "qat-harness", "started": self.started,
             "finished": self.finished, "status": self.status,
             "environment": plain(self.environment), "options": plain(self.options),
             "devices": plain(self.devices),
             "models": {name: m.to_json() for name, m in self.models.items()},
             "claims": [c.to_dict() for c in self.claims], "notes": plain(self.notes)}
        if self.errors:
            d["errors"] = plain(self.errors)
        d["done"] = plain(self.done)
        d.update(_present(stop_reason=self.stop_reason, resumed=self.resumed or None))
        return d


class RunFolderBusy(UsageError):
    """Another run is writing this folder."""


class Report:
    """A ``RunReport`` bound to its output folder: recording helpers and the writer.

    The folder is locked (``flock`` on the folder itself, released by ``finish``) so that two
    runs can never write one report. Saving keeps a small reserve file beside the report: when
    the disk fills up, the reserve is given back so that the report of everything measured can
    still be written once, and the run then stops."""

    RESERVE = ".report-reserve"

    def __init__(self, out_dir: Path, environment, options: dict, run: RunReport | None = None):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None
        self._lock_fd: int | None = None
        self._lock()
        self.run = run or RunReport(environment, options)
        self._kept: set[tuple[str, str, str]] = {(c.id, c.model, c.device) for c in self.run.claims}
        self.save()

    @classmethod
    def resume(cls, out_dir: Path, data: dict, pending: dict[str, list[str]], environment) -> "Report":
        """A report carrying on from ``data`` (a report.json of ``out_dir``): every claim and
        section recorded there is kept, except those of the (model, device) pairs in
        ``pending``, which the run redoes. ``environment``: this machine's, now (the stages
        read it, typed)."""
        done = {m: list(d) for m, d in data.get("done", {}).items()}
        restart = {m for m in pending if not done.get(m)}  # nothing of it finished: from scratch
        run = RunReport(environment, data["options"], started=data["started"],
                        devices=dict(data.get("devices", {})),
                        notes=[Note(**n) for n in data.get("notes", []) if n["model"] not in restart],
                        errors=[ModelError(**e) for e in data.get("errors", []) if e["model"] not in restart],
                        done=done, resumed=[Resumption(**r) for r in data.get("resumed", [])])
        run.claims = [ClaimResult.from_dict(c) for c in data.get("claims", [])
                      if c["model"] not in restart and c["device"] not in pending.get(c["model"], ())]
        for name, section in data.get("models", {}).items():
            if name in restart:
                continue
            if name not in pending:
                run.models[name] = RecordedSection(section)
                continue
            devices = {d: RecordedSection(s) for d, s in section.get("devices", {}).items()
                       if d not in pending[name]}
            run.models[name] = ModelSection(devices=devices)
        kept = [f"{m} on {d}" for m, devs in run.done.items() for d in devs]
        run.resumed.append(Resumption(_now(), data.get("status", "?"), kept))
        return cls(out_dir, None, {}, run=run)

    def _lock(self) -> None:
        fd = os.open(self.out_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(f"{self.out_dir} is in use by another run; give another --out") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __del__(self):
        self._unlock()

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
        current = self.run.models.get(name)
        if isinstance(current, ModelSection):
            return current
        self.run.models[name] = section
        return section

    def add_claim(self, result: ClaimResult) -> None:
        """Record a claim; one already recorded by the run this one resumes is kept as it
        was (a resumed run redoes inspection, but its verdicts are the recorded ones)."""
        if (result.id, result.model, result.device) in self._kept:
            return
        self.run.claims.append(result)

    def has_claim(self, claim_id: str) -> bool:
        return any(c.id == claim_id for c in self.run.claims)

    def note(self, model: str, text: str) -> None:
        if any(n.model == model and n.text == text for n in self.run.notes):
            return  # a resumed run says the same things again
        self.run.notes.append(Note(model, text))

    def model_error(self, model: str, text: str, usage: bool = False) -> None:
        section = self.run.models.get(model)
        if not isinstance(section, ModelSection):
            section = self.run.models[model] = ModelSection()
        section.error = text
        self.run.errors.append(ModelError(model, text, usage))

    def mark_done(self, model: str, device: str) -> None:
        """Every step of ``model`` on ``device`` is recorded: a resumed run skips it."""
        done = self.run.done.setdefault(model, [])
        if device not in done:
            done.append(device)

    def is_done(self, model: str, device: str) -> bool:
        return device in self.run.done.get(model, ())

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
        """Rewrite report.json atomically. On a full disk the reserve is given back and the
        write tried once more, then the error goes on (the run stops): report.json is then
        the last report that could be written, never a partial one, and no temporary file
        is left behind."""
        text = json.dumps(self.data, indent=2)
        try:
            write_atomically(self.json_path, text)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._release_reserve():
                raise
            write_atomically(self.json_path, text)
            raise
        self._keep_reserve(len(text))

    def _keep_reserve(self, report_bytes: int) -> None:
        """Room for the next report (twice this one, at least 1 MiB), taken now, while there
        is space."""
        want = max(1 << 20, 2 * report_bytes)
        path = self.out_dir / self.RESERVE
        try:
            if path.exists() and path.stat().st_size >= want:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.posix_fallocate(fd, 0, want)
            finally:
                os.close(fd)
        except OSError:
            pass  # no room for a reserve: the report itself still fits, and that is what counts

    def _release_reserve(self) -> bool:
        try:
            (self.out_dir / self.RESERVE).unlink()
            return True
        except OSError:
            return False

    def finish(self, status: str = "complete", stop_reason: str | None = None) -> None:
        """The final report.json and report.md. Both are attempted even if the other cannot
        be written; the first error is raised after both attempts."""
        self.run.finished = _now()
        self.run.status = status
        self.run.stop_reason = stop_reason
        errors: list[OSError] = []
        for write in (self.save, self._write_markdown, self._write_html):
            try:
                write()
            except OSError as exc:
                errors.append(exc)
        self._release_reserve()
        self._unlock()
        if errors:
            raise errors[0]

    @property
    def html_path(self) -> Path:
        return self.out_dir / "report.html"

    def _write_html(self) -> None:
        from qat_harness.reporting.html import write_html

        write_html(self.data, self.html_path)

    def _write_markdown(self) -> None:
        self._release_reserve()  # the run is over: its reserve is the room report.md needs
        write_atomically(self.md_path, render_markdown(self.data))

    def verdict_counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for c in self.claims:
            counts[c.verdict.value] += 1
        return counts


def write_atomically(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file in its folder and rename it into place: the
    file is either the old one or the new one, and the temporary never outlives a failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def md_escape(text, underscores: bool = True) -> str:
    """User-controlled text (file and folder names, model names) as inert Markdown: no
    headings, links, tables or HTML can be injected through a name. ``underscores=False``
    leaves '_' alone (snake_case names read better, and '_' can at worst emphasise)."""
    import html
    import re

    specials = r"([\\`*_{}\[\]()#+!~])" if underscores else r"([\\`*{}\[\]()#+!~])"
    text = re.sub(specials, r"\\\1", str(text if text is not None else ""))
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def safe_name(name: str) -> str:
    """A model, device or probe name as one file-name component."""
    import re

    return re.sub(r"[^\w.-]+", "_", name)


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
