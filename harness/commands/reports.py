"""``compare`` and ``history``: reading recorded reports (two nights side by side, and the
trends of every night)."""
from __future__ import annotations

import argparse
from pathlib import Path

from qat_harness.commands.errors import EXIT_GATE, EXIT_OK
from qat_harness.core.errors import UsageError
from qat_harness.option_definitions import add_history_option, at_least

HISTORY_FILE = "history.sqlite"   # the SQLite history a nightly folder holds
HISTORY_PAGE = "history.html"


def add_parsers(sub) -> None:
    cmp_ = sub.add_parser("compare", help="compare two reports (regressions between nights)")
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("--latency-tolerance", type=at_least(0.0, float), default=0.10,
                      help="relative latency change that counts as a regression (default 0.10)")
    add_history_option(cmp_, "a nightly history: the night-to-night noise it records widens the "
                             "latency gate's interval")

    hist = sub.add_parser("history", help="trends across nights: history.html and a text summary")
    hist.add_argument("folder", type=Path, nargs="?", default=None,
                      help=f"the nightly folder (holding {HISTORY_FILE}); not needed with --history")
    add_history_option(hist, f"the history to read (default: FOLDER/{HISTORY_FILE})")
    hist.add_argument("--out", type=Path, default=None,
                      help=f"the page (default: FOLDER/{HISTORY_PAGE}, or {HISTORY_PAGE} here with "
                           f"--history alone)")


def cmd_compare(args: argparse.Namespace) -> int:
    from qat_harness import compare, history
    from qat_harness.writers import compare_text

    earlier = history.earlier_medians(args.history) if args.history else None
    result = compare.compare_files(args.baseline, args.current, args.latency_tolerance,
                                   earlier_medians=earlier)
    print(compare_text.render(result))
    return EXIT_GATE if result.regressions else EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from qat_harness.writers.history_html import render_history
    from qat_harness.writers.history_text import render_trends_text
    from qat_harness.writers.text import visible

    if args.history is None and args.folder is None:
        raise UsageError("history needs the nightly folder, or --history URL")
    where = args.history
    if where is None:
        where = args.folder / HISTORY_FILE
        if not where.is_file():
            raise UsageError(f"no nightly history at {where}")
    page = args.out or (args.folder / HISTORY_PAGE if args.folder is not None else Path(HISTORY_PAGE))
    summary = render_history(where, page)
    print(render_trends_text(summary.trends, summary.marks))
    print(visible(summary.text()))
    return EXIT_OK
