"""``nightly``: a run recorded in history.sqlite and compared with the previous recorded run."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qat_harness.commands.device_options import device_option_values
from qat_harness.commands.errors import EXIT_GATE, EXIT_OK, EXIT_USAGE
from qat_harness.commands.folders import new_run_folder
from qat_harness.commands.run import add_run_arguments, execute_run
from qat_harness.option_definitions import add_history_option, at_least

if TYPE_CHECKING:
    from qat_harness.compare.blame import Timer
    from qat_harness.compare.night_facts import RuntimeStore
    from qat_harness.options import RunOptions
    from qat_harness.record.report import Report
    from qat_harness.record.tree import RunReport

DEFAULT_FOLDER = Path("reports/nightly")


def add_parser(sub) -> None:
    nightly = sub.add_parser("nightly", help="a run recorded in history and compared with the last one")
    add_run_arguments(nightly, "nightly folder: one sub-folder per run, plus history.sqlite "
                               "(default: reports/nightly)")
    nightly.add_argument("--latency-tolerance", type=at_least(0.0, float), default=0.10,
                         help="relative latency change that counts as a regression (default 0.10)")
    add_history_option(nightly, "where to record the night: a SQLite file (default: "
                                "FOLDER/history.sqlite) or a PostgreSQL database a lab's hosts share")
    nightly.add_argument("--from-report", type=Path, metavar="REPORT",
                         help="record and compare this finished report instead of running: a report.json "
                              "(or its folder), e.g. the merge of a sharded night's pieces")


def cmd_nightly(args: argparse.Namespace,
                run: Callable[..., tuple[int, Report]] = execute_run,
                clock: Callable[[], dt.datetime] = dt.datetime.now,
                timer: Timer | None = None) -> int:
    """Run, record in history.sqlite, compare with the previous recorded run; exit 1 on a
    regression (a verdict that got worse, a latency beyond the tolerance confirmed by re-timing
    last night's files beside tonight's, ``compare.nightly_gate``). ``run`` makes the run
    (``execute_run``), ``clock`` names its folder and ``timer`` re-times files (default: on the
    run's own devices): tests give their own."""
    from qat_harness import compare, history
    from qat_harness.compare import night_facts, nightly_gate
    from qat_harness.record import codec
    from qat_harness.record.folder import write_atomically
    from qat_harness.writers import compare_text
    from qat_harness.writers.history_html import render_history
    from qat_harness.writers.text import visible

    folder = args.out or DEFAULT_FOLDER
    given = device_option_values(args)
    if args.from_report is not None:
        run = finished_report(args.from_report)
    run_dir = new_run_folder(folder, clock().strftime("%Y-%m-%d-%H%M%S"))
    args.fail_on = "never"
    code, report = run(args, out=run_dir)
    if code == EXIT_USAGE:
        return code
    if report.run.options.shard is not None:  # a piece of the night: its history is the merged report's
        print(f"nightly: shard {report.run.options.shard} written to {run_dir}; merge the pieces "
              "(qat-harness merge PIECES --out MERGED) and record and compare the night with "
              "qat-harness nightly --from-report MERGED")
        return EXIT_OK
    db = args.history or folder / "history.sqlite"
    run_id = history.record(db, report.run, report.json_path)
    store = night_facts.FileStore.beside(folder)
    tonight = night_facts.record_night(db, run_id, report.run, store)
    runtimes = night_facts.RuntimeStore.beside(folder)
    keep_runtimes(report.run, runtimes, given)
    previous = history.previous_report(db, run_id)
    if previous is None:
        runtimes.prune({r.digest for r in night_facts.device_runtimes(report.run).values()})
        print(visible(render_history(db, folder / "history.html").text()))
        print("nightly: first recorded run, nothing to compare with yet")
        return EXIT_OK
    baseline = codec.load(previous)
    previous_id = night_facts.run_id_of(db, previous)
    result = compare.compare(baseline, report.run, args.latency_tolerance,
                             earlier_medians=history.earlier_medians(db, run_id),
                             earlier_speedups=night_facts.earlier_speedups(db, run_id))
    verdict = nightly_gate.judge_night(result, baseline, report.run,
                                       night_facts.digests_of(db, previous_id) if previous_id else {},
                                       tonight, store, timer or nightly_gate.device_timer(
                                           retime_options(report.run, given, args.from_report is not None)),
                                       runtimes)
    runtimes.prune({r.digest for run in (baseline, report.run) for r in night_facts.device_runtimes(run).values()})
    night_facts.record_findings(db, run_id, verdict.findings())
    print(visible(render_history(db, folder / "history.html").text()))
    text = compare_text.render(verdict.comparison) + "\n" + verdict.text()
    write_atomically(run_dir / "compare.txt", text + "\n")
    print(text)
    return EXIT_GATE if verdict.regressions else EXIT_OK


def retime_options(run: RunReport, given: dict, from_report: bool) -> RunOptions:
    """The options the confirming re-time opens devices with: the run's own, or for a finished
    report this command line's (a report's own could name any program or runtime folder, and a
    report is data, never a reason to run something)."""
    from qat_harness.devices import registry

    if not from_report:
        return run.options
    known = [name for name in run.devices if name in registry.entries()]
    return dataclasses.replace(run.options, device_options=registry.split_options(known, given))


def keep_runtimes(run: RunReport, store: RuntimeStore, given: dict) -> None:
    """Keep, by digest, the runtime packages tonight's devices loaded, for a later night to load
    beside its own: only the installed one and one this command line named (``--litert-runtime``).
    A report names its runtime's folder, and a folder a report names is never imported."""
    from qat_harness.compare.night_facts import device_runtimes
    from qat_harness.devices.litert import runtime

    named = given.get("litert_runtime")
    trusted = {p.folder for p in (runtime.installed(), _in_folder(named) if named else None) if p is not None}
    # once per package, however many devices loaded it: keeping reads and digests its files
    for kept in {(r.digest, r.path): r for r in device_runtimes(run).values()}.values():
        if kept.path is not None and kept.path.resolve() in trusted:
            store.keep(kept)


def _in_folder(root):
    from qat_harness.devices.litert import runtime

    try:
        return runtime.in_folder(root)
    except ValueError:
        return None


def finished_report(path: Path) -> Callable[..., tuple[int, "Report"]]:
    """The ``run`` of ``--from-report``: the finished report (read safely, migrated), written
    into the night's folder as a run's is. A piece of a sharded night is refused in one line:
    a piece alone would record half a night as a whole one."""
    from qat_harness.core.errors import UsageError
    from qat_harness.record import codec

    finished = codec.load(path)
    if finished.options.shard is not None:
        raise UsageError(f"{path} is one piece (shard {finished.options.shard}) of a sharded night: merge "
                         "the pieces first (qat-harness merge PIECES --out MERGED), then --from-report MERGED")

    def run(args: argparse.Namespace, out: Path | None = None) -> tuple[int, "Report"]:
        from qat_harness.record.report import Report
        from qat_harness.writers.pages import run_pages

        assert out is not None  # cmd_nightly always names the night's folder
        report = Report(out, run=finished, pages=run_pages(out))
        report.finish()
        return EXIT_OK, report
    return run
