"""``compare`` and ``history``: reading recorded reports (two nights side by side, and the
trends of every night)."""
from __future__ import annotations

import argparse
from pathlib import Path

from qat_harness.commands.errors import EXIT_GATE, EXIT_OK
from qat_harness.core.errors import UsageError
from qat_harness.option_definitions import at_least


def add_parsers(sub) -> None:
    cmp_ = sub.add_parser("compare", help="compare two reports (regressions between nights)")
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("--latency-tolerance", type=at_least(0.0, float), default=0.10,
                      help="relative latency change that counts as a regression (default 0.10)")
    cmp_.add_argument("--history", type=Path, default=None, metavar="DB",
                      help="a nightly history.sqlite: the night-to-night noise it records widens "
                           "the latency gate's interval")

    hist = sub.add_parser("history", help="trends across nights: history.html and a text summary")
    hist.add_argument("folder", type=Path, help="the nightly folder (holding history.sqlite)")
    hist.add_argument("--out", type=Path, default=None, help="the page (default: FOLDER/history.html)")


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

    db = args.folder / "history.sqlite"
    if not db.is_file():
        raise UsageError(f"no nightly history at {db}")
    summary = render_history(db, args.out or args.folder / "history.html")
    print(render_trends_text(summary.trends))
    print(visible(summary.text()))
    return EXIT_OK
