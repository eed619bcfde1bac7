"""What the command line prints: the summary table of a run, and a console for progress lines.

The console never reads markup (a ``[/b]`` or ``[word]`` in a file name is text, not a rich
tag) and every line from the harness is passed through ``text.visible`` (no terminal sequence
from a name reaches the terminal)."""
from __future__ import annotations

import functools
from collections.abc import Callable

from qat_harness.record.tree import RunReport
from qat_harness.writers.text import format_measured, visible

REASON_WIDTH = 90


@functools.cache
def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, markup=False, emoji=False, log_path=False)


def progress() -> Callable[[str], None]:
    """A progress callback: each message as one timestamped line on stderr."""
    return lambda message: _console().log(visible(message))


def say(message: str) -> None:
    """One line on stderr."""
    _console().print(visible(message), soft_wrap=True)


def summary(run: RunReport) -> str:
    """Every claim, every refused model (as an ERROR), the counts and the simulated devices."""
    from tabulate import tabulate

    rows = [[c.id, visible(c.model), visible(c.device) + (" (simulated)" if c.simulated else ""),
             c.verdict.value, visible(format_measured(c.measured)), visible(c.reason)[:REASON_WIDTH]]
            for c in run.claims]
    rows += [["-", visible(e.model), "any", "ERROR", "-", visible(f"refused: {e.error}")[:REASON_WIDTH]]
             for e in run.refused]
    lines = [tabulate(rows, headers=["claim", "model", "device", "verdict", "measured", "reason"],
                      tablefmt="simple"),
             "  ".join(f"{v.value} {n}" for v, n in run.verdict_counts().items())]
    simulated = sorted({c.device for c in run.claims if c.simulated})
    if simulated:
        lines.append(f"simulated devices (not hardware results): {visible(', '.join(simulated))}")
    return "\n".join(lines)
