"""A ``RunReport`` bound to its run folder: what the stages call to record what they measured,
and the finishing stage that writes the pages.

report.json is rewritten after every step of a run, atomically, so a run that dies half way
leaves a valid report of everything measured until then (``status: running``, or
``interrupted`` when the harness saw it stop).

The pages (report.md, report.html and the JUnit file) never say more than report.json: stale
pages are removed before report.json changes, the new ones are rendered from the very tree that
is saved and staged beside their place, report.json is written, and only then are the pages
put in place. A run stopped at any point of this (SIGTERM included) leaves each page either
absent or in agreement with report.json. A page that cannot be drawn becomes a note of the
report; it never costs the report."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from qat_harness.environment import Environment
from qat_harness.options import RunOptions
from qat_harness.record import codec
from qat_harness.record.folder import DISK_FULL, RunFolder, StagedFile
from qat_harness.record.tree import (
    DeviceDescription,
    JsonObject,
    ModelError,
    ModelSection,
    Note,
    Resumption,
    RunReport,
    RunStatus,
    now,
)
from qat_harness.results import ClaimResult

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"

#: A page of the report: where it goes, and its writer (a listener on the typed tree).
Pages = dict[Path, Callable[[RunReport], str | bytes]]


class Report:
    """The report of one run in ``out_dir`` (locked while the run writes it)."""

    #: The files a run writes in its folder (nothing else may be written over them).
    FILES = (codec.REPORT_FILE, MARKDOWN_FILE, HTML_FILE, RunFolder.RESERVE, "compare.txt")

    def __init__(self, out_dir: Path, environment: Environment | None = None,
                 options: RunOptions | None = None, run: RunReport | None = None, pages: Pages | None = None):
        """``pages``: the files written from the report when the run finishes (``writers.pages``)."""
        self.folder = RunFolder(out_dir)
        self.pages: Pages = dict(pages or {})
        if run is None:
            if environment is None or options is None:
                raise TypeError("a new report needs the environment and the options")
            run = RunReport(environment, options)
        self.run = run
        self._kept: set[tuple[str, str, str]] = {(c.id, c.model, c.device) for c in self.run.claims}
        self._remove_pages()    # a resumed folder's pages spoke of the run as it was
        self.save()

    @classmethod
    def resume(cls, out_dir: Path, recorded: RunReport, pending: dict[str, list[str]],
               environment: Environment, pages: Pages | None = None) -> "Report":
        """A report carrying on from ``recorded`` (the report of ``out_dir``): every claim and
        section recorded there is kept, except those of the (model, device) pairs in
        ``pending``, which the run redoes. ``environment``: this machine's, now."""
        done = {m: list(d) for m, d in recorded.done.items()}
        restart = {m for m in pending if not done.get(m)}  # nothing of it finished: from scratch
        run = RunReport(environment, recorded.options, started=recorded.started,
                        devices=dict(recorded.devices),
                        notes=[n for n in recorded.notes if n.model not in restart],
                        errors=[e for e in recorded.errors if e.model not in restart],
                        done=done, resumed=list(recorded.resumed))
        run.claims = [c for c in recorded.claims
                      if c.model not in restart and c.device not in pending.get(c.model, ())]
        for name, section in recorded.models.items():
            if name in restart:
                continue
            if name not in pending:
                run.models[name] = section
                continue
            run.models[name] = ModelSection(devices={d: s for d, s in section.devices.items()
                                                     if d not in pending[name]})
        kept = [f"{m} on {d}" for m, devs in run.done.items() for d in devs]
        run.resumed.append(Resumption(now(), recorded.status.value, kept))
        return cls(out_dir, run=run, pages=pages)

    # -- where ------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return self.folder.path

    @property
    def json_path(self) -> Path:
        return self.folder / codec.REPORT_FILE

    @property
    def md_path(self) -> Path:
        return self.folder / MARKDOWN_FILE

    @property
    def html_path(self) -> Path:
        return self.folder / HTML_FILE

    @property
    def junit_path(self) -> Path | None:
        return Path(self.run.options.junit_xml) if self.run.options.junit_xml else None

    # -- recording --------------------------------------------------------------------------
    def device(self, name: str, description: JsonObject) -> None:
        self.run.devices[name] = DeviceDescription.of(description)

    def model(self, name: str, section: ModelSection) -> ModelSection:
        return self.run.models.setdefault(name, section)

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
        self.model(model, ModelSection()).error = text
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
        return [e.error for e in self.run.refused]

    # -- writing ----------------------------------------------------------------------------
    def save(self) -> None:
        """Rewrite report.json atomically. On a full disk the reserve is given back and the
        write tried once more, then the error goes on (the run stops): report.json is then
        the last report that could be written, never a partial one."""
        self.folder.write_with_reserve(codec.REPORT_FILE, codec.dump(self.run))

    @contextlib.contextmanager
    def finishing(self) -> Iterator["Report"]:
        """Finish the report when the block ends: ``complete``, or ``interrupted`` with the
        reason of whatever ends the block early (which then goes on up)."""
        try:
            yield self
            self.finish()
        except BaseException as exc:
            self.finish_stopped(exc)
            raise

    def finish_stopped(self, exc: BaseException) -> None:
        """Finish the report of a run that stops on ``exc``. If even that cannot be written (the
        disk is full), report.json stays the last report that could be saved."""
        try:
            self.finish(RunStatus.INTERRUPTED, stop_reason(exc))
        except OSError:
            pass  # ``exc`` is what the user is told about; a second error would hide it

    def finish(self, status: RunStatus = RunStatus.COMPLETE, stop_reason: str | None = None) -> None:
        """The final report.json and its pages, in the order that keeps them in agreement."""
        self.run.finished = now()
        self.run.status = status
        self.run.stop_reason = stop_reason
        self._remove_pages()
        self.folder.release_reserve()   # the run is over: its reserve is the room these files need
        staged = self._stage_pages()
        try:
            self.folder.write(codec.REPORT_FILE, codec.dump(self.run))
            for page in staged:
                page.commit()
        finally:
            for page in staged:
                page.discard()
        self.folder.close()

    def _remove_pages(self) -> None:
        for path in self.pages:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _stage_pages(self) -> list[StagedFile]:
        """Every page rendered and staged; a page that fails is left out and said in a note,
        and the others are drawn again so that they carry that note as report.json will."""
        pages = dict(self.pages)
        staged: list[StagedFile] = []
        try:
            for _ in range(2):
                notes = len(self.run.notes)
                for page in staged:
                    page.discard()
                staged = []
                for path, render in list(pages.items()):
                    try:
                        staged.append(StagedFile(path, render(self.run)))
                    except Exception as exc:  # noqa: BLE001 - a page never costs the report
                        del pages[path]
                        self.note("report", f"{path.name} was not written: {_why(exc)}")
                if len(self.run.notes) == notes:
                    return staged
            return staged
        except BaseException:
            for page in staged:
                page.discard()
            raise


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"disk full ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"


def stop_reason(exc: BaseException) -> str:
    from qat_harness.core.child import Terminated

    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C / SIGINT)"
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"disk full: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return f"internal error: {type(exc).__name__}: {exc}"

