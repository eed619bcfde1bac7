"""What the nightly gate keeps of a night beside the history (``history_db``'s ``night_*``
tables): the machine during each device's timing, the digest of each timed file, and what the
gate concluded (a busy machine, a confirmed regression and its cause). The timed files
themselves go into ``files/`` next to history.sqlite, named by their sha256 (content-addressed:
a file unchanged for a month is kept once), so that a later night can re-time last night's
files beside its own; the runtime package each device loaded goes into ``runtimes/``, by the
digest of its files, so that a night with a new runtime can time last night's beside it."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import sqlalchemy as sa

from qat_harness import history_store
from qat_harness.compare import load
from qat_harness.compare.machine import DeviceRuntime
from qat_harness.core.files import BYTECODE_FOLDER, file_digest, folder_digest
from qat_harness.history_store import HistoryLocation
from qat_harness.record.tree import RunReport

Where = HistoryLocation | Path | str     # a history, as ``history_store.locate`` reads it

FILES_FOLDER = "files"
#: nights whose files stay in ``files/`` (older files nobody re-times are removed)
KEEP_NIGHTS = 3

Digests = dict[tuple[str, str], str]    # (model, variant) -> sha256


@dataclasses.dataclass(frozen=True)
class FileStore:
    folder: Path

    @classmethod
    def beside(cls, folder: Path) -> "FileStore":
        """The store of a nightly folder (next to its history.sqlite)."""
        return cls(Path(folder) / FILES_FOLDER)

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.tflite"

    def keep(self, path: Path) -> str:
        """Copy ``path`` into the store (once per content); its digest."""
        digest = file_digest(path)
        target = self.path(digest)
        if not target.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".incoming-")
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return digest

    def prune(self, keep: set[str]) -> None:
        for f in self.folder.glob("*.tflite") if self.folder.is_dir() else ():
            if f.stem not in keep:
                f.unlink(missing_ok=True)


RUNTIMES_FOLDER = "runtimes"


@dataclasses.dataclass(frozen=True)
class RuntimeStore:
    """Runtime packages kept by the digest of their files: ``runtimes/<digest>/<module>/``,
    a folder a child process imports the runtime from (``devices.litert.runtime.activate``).
    A copy is used only while its files still have its digest: what is imported is what was
    timed that night."""
    folder: Path

    @classmethod
    def beside(cls, folder: Path) -> "RuntimeStore":
        return cls(Path(folder) / RUNTIMES_FOLDER)

    def root(self, runtime: DeviceRuntime) -> Path:
        return self.folder / runtime.digest

    def keep(self, runtime: DeviceRuntime) -> bool:
        """Copy the package the device loaded (once per digest); False when it is not where the
        report says or no longer what it was (a report from another machine, an upgrade since)."""
        if self.kept(runtime) is not None:
            return True
        if runtime.path is None or not runtime.path.is_dir() or folder_digest(runtime.path) != runtime.digest:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(dir=self.folder, prefix=".incoming-"))
        try:
            shutil.copytree(runtime.path, incoming / runtime.module, ignore=shutil.ignore_patterns(BYTECODE_FOLDER))
            shutil.rmtree(self.root(runtime), ignore_errors=True)
            os.replace(incoming, self.root(runtime))
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return True

    def kept(self, runtime: DeviceRuntime) -> Path | None:
        """The root to import the kept copy from, while it still has its digest; else None."""
        package = self.root(runtime) / runtime.module
        return self.root(runtime) if package.is_dir() and folder_digest(package) == runtime.digest else None

    def prune(self, keep: set[str]) -> None:
        for kept in self.folder.iterdir() if self.folder.is_dir() else ():
            if kept.is_dir() and kept.name not in keep:
                shutil.rmtree(kept, ignore_errors=True)


def device_runtimes(run: RunReport) -> dict[str, DeviceRuntime]:
    return {name: r for name, d in run.devices.items() if (r := DeviceRuntime.of(d)) is not None}


@dataclasses.dataclass(frozen=True)
class GateFinding:
    """What the gate concluded on one model and device, as the history keeps it."""
    model: str
    device: str
    kind: str                 # 'busy', 'regression' (confirmed) or 'not confirmed'
    cause: str | None         # a ``blame.Cause`` value, for a regression
    text: str


@dataclasses.dataclass(frozen=True)
class NightMarks:
    """Per recorded night (run id): the busy machines and the gate's findings."""
    busy: dict[int, list[str]]
    findings: dict[int, list[GateFinding]]


def timed_files(run: RunReport) -> dict[tuple[str, str], Path]:
    """Each model's files that some device timed tonight (the ones a later night re-times)."""
    out = {}
    for model, m in run.models.items():
        timed = {variant for d in m.devices.values() for variant in d.latency or {}}
        for variant, path in (m.artifacts.files.items() if m.artifacts else ()):
            if variant in timed and Path(path).is_file():
                out[(model, variant)] = Path(path)
    return out


def record_night(where: Where, run_id: int, run: RunReport, store: FileStore) -> Digests:
    """Keep tonight's timed files and record their digests and each device's machine state."""
    digests = {key: store.keep(path) for key, path in timed_files(run).items()}
    machine = []
    for model, m in run.models.items():
        for device, d in m.devices.items():
            state = load.state_of(d)
            if state is None:
                continue
            judged = load.judge_window(state)
            machine.append({"run_id": run_id, "model": model, "device": device, "busy": int(judged.busy),
                            "reason": judged.text(), "state": json.dumps(load.state_details(state))})
    t = history_store.tables()
    with history_store.writing(where) as conn:
        if digests:
            conn.execute(sa.insert(t["night_files"]), [
                {"run_id": run_id, "model": model, "variant": variant, "digest": digest}
                for (model, variant), digest in digests.items()])
        if machine:
            conn.execute(sa.insert(t["night_machine"]), machine)
        runs, files = t["runs"], t["night_files"]
        recent = sa.select(runs.c.id).order_by(runs.c.id.desc()).limit(KEEP_NIGHTS).scalar_subquery()
        kept = set(conn.execute(sa.select(files.c.digest).where(files.c.run_id.in_(recent))).scalars())
    store.prune(kept)
    return digests


def digests_of(where: Where, run_id: int) -> Digests:
    files = history_store.tables()["night_files"]
    with history_store.reading(where) as conn:
        rows = conn.execute(sa.select(files.c.model, files.c.variant, files.c.digest)
                            .where(files.c.run_id == run_id)).all()
    return {(model, variant): digest for model, variant, digest in rows}


def run_id_of(where: Where, report_path: Path) -> int | None:
    runs = history_store.tables()["runs"]
    with history_store.reading(where) as conn:
        found = conn.execute(sa.select(sa.func.max(runs.c.id)).where(runs.c.report_path == str(report_path)))
        run_id = found.scalar()
    return int(run_id) if run_id is not None else None


def record_findings(where: Where, run_id: int, findings: list[GateFinding]) -> None:
    if not findings:
        return
    with history_store.writing(where) as conn:
        conn.execute(sa.insert(history_store.tables()["night_findings"]),
                     [{"run_id": run_id, **dataclasses.asdict(f)} for f in findings])


def earlier_speedups(where: Where, before_run_id: int) -> dict[tuple[str, str, str], list[float]]:
    """(model, device, kind) -> the speed-ups of the nights before, oldest first."""
    s = history_store.tables()["speedups"]
    with history_store.reading(where) as conn:
        rows = conn.execute(sa.select(s.c.model, s.c.device, s.c.kind, s.c.ratio)
                            .where(s.c.run_id < before_run_id, s.c.ratio > 0).order_by(s.c.run_id)).all()
    out: dict[tuple[str, str, str], list[float]] = {}
    for model, device, kind, ratio in rows:
        out.setdefault((model, device, kind), []).append(ratio)
    return out


def marks(where: Where) -> NightMarks:
    busy: dict[int, list[str]] = {}
    findings: dict[int, list[GateFinding]] = {}
    t = history_store.tables()
    m, f = t["night_machine"], t["night_findings"]
    with history_store.reading(where) as conn:
        machine_rows = conn.execute(sa.select(m.c.run_id, m.c.model, m.c.device, m.c.reason)
                                    .where(m.c.busy == 1).order_by(m.c.run_id)).all()
        finding_rows = conn.execute(sa.select(f.c.run_id, f.c.model, f.c.device, f.c.kind, f.c.cause, f.c.text)
                                    .order_by(f.c.run_id)).all()
    for run_id, model, device, reason in machine_rows:
        busy.setdefault(run_id, []).append(f"{model} on {device}: {reason}")
    for run_id, *rest in finding_rows:
        findings.setdefault(run_id, []).append(GateFinding(*rest))
    return NightMarks(busy, findings)
