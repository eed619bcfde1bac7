"""``nightly``: a run recorded in history.sqlite and compared with the previous recorded run."""
from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qat_harness.commands.errors import EXIT_GATE, EXIT_OK, EXIT_USAGE
from qat_harness.commands.folders import new_run_folder
from qat_harness.commands.run import add_run_arguments, execute_run
from qat_harness.option_definitions import at_least

if TYPE_CHECKING:
    from qat_harness.record.report import Report

DEFAULT_FOLDER = Path("reports/nightly")


def add_parser(sub) -> None:
    nightly = sub.add_parser("nightly", help="a run recorded in history and compared with the last one")
    add_run_arguments(nightly, "nightly folder: one sub-folder per run, plus history.sqlite "
                               "(default: reports/nightly)")
    nightly.add_argument("--latency-tolerance", type=at_least(0.0, float), default=0.10,
                         help="relative latency change that counts as a regression (default 0.10)")


def cmd_nightly(args: argparse.Namespace,
                run: Callable[..., tuple[int, Report]] = execute_run,
                clock: Callable[[], dt.datetime] = dt.datetime.now) -> int:
    """Run, record in history.sqlite, compare with the previous recorded run; exit 1 on a
    regression (a verdict that got worse, a latency beyond the tolerance). ``run`` makes the
    run (``execute_run``) and ``clock`` names its folder: tests give their own."""
    from qat_harness import compare, history
    from qat_harness.record.folder import write_atomically
    from qat_harness.writers import compare_text
    from qat_harness.writers.history_html import render_history
    from qat_harness.writers.text import visible

    folder = args.out or DEFAULT_FOLDER
    run_dir = new_run_folder(folder, clock().strftime("%Y-%m-%d-%H%M%S"))
    args.fail_on = "never"
    code, report = run(args, out=run_dir)
    if code == EXIT_USAGE:
        return code
    db = folder / "history.sqlite"
    run_id = history.record(db, report.run, report.json_path)
    print(visible(render_history(db, folder / "history.html").text()))
    previous = history.previous_report(db, run_id)
    if previous is None:
        print("nightly: first recorded run, nothing to compare with yet")
        return EXIT_OK
    result = compare.compare_files(previous, report.run, args.latency_tolerance,
                                   earlier_medians=history.earlier_medians(db, run_id))
    text = compare_text.render(result)
    write_atomically(run_dir / "compare.txt", text + "\n")
    print(text)
    return EXIT_GATE if result.regressions else EXIT_OK
