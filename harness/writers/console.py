"""What the command line prints: the summary table of a run, and a console for progress lines.

The console never reads markup (a ``[/b]`` or ``[word]`` in a file name is text, not a rich
tag) and every line from the harness is passed through ``text.visible`` (no terminal sequence
from a name reaches the terminal)."""
from __future__ import annotations

import functools
import io
import shutil
from collections.abc import Callable, Sequence

from qat_harness.record.tree import RunReport
from qat_harness.writers.text import format_measured, visible

#: a measured cell longer than this is cut (report.md and report.json hold it whole)
MEASURED_WIDTH = 40
#: the width of a table printed where the terminal's is unknown (a pipe, a CI log)
DEFAULT_WIDTH = 160


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


def summary(run: RunReport, width: int | None = None) -> str:
    """Every claim, every refused model (as an ERROR), the counts and the simulated devices, in
    a table as wide as the terminal (``width``: as wide as that): measured cells are cut at
    ``MEASURED_WIDTH``, reasons and names wrap, never cut."""
    rows = [(c.id, c.model, c.device + (" (simulated)" if c.simulated else ""), c.verdict.value,
             _capped(format_measured(c.measured)), c.reason) for c in run.claims]
    rows += [("-", e.model, "any", "ERROR", "-", f"refused: {e.error}") for e in run.refused]
    lines = [_table(rows, width or shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns),
             "  ".join(f"{v.value} {n}" for v, n in run.verdict_counts().items())]
    simulated = sorted({c.device for c in run.claims if c.simulated})
    if simulated:
        lines.append(f"simulated devices (not hardware results): {visible(', '.join(simulated))}")
    emulated = run.emulated_devices()
    if emulated:
        lines.append(f"emulated devices (real kernels under an emulator: numerics only, no latency): "
                     f"{visible(', '.join(emulated))}")
    return "\n".join(lines)


def _capped(text: str) -> str:
    return text if len(text) <= MEASURED_WIDTH else text[:MEASURED_WIDTH - 1] + "…"


def _table(rows: Sequence[Sequence[str]], width: int) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    # names and measured cells wrap within a bound, so that the reason (the widest column, the
    # first rich narrows to fit) keeps the room they leave
    for header, max_width in (("claim", None), ("model", 24), ("device", 16), ("verdict", None),
                              ("measured", MEASURED_WIDTH // 2), ("reason", None)):
        table.add_column(header, no_wrap=header in ("claim", "verdict"), overflow="fold", max_width=max_width)
    for row in rows:
        table.add_row(*(Text(visible(cell)) for cell in row))  # Text: never read as markup
    out = io.StringIO()
    Console(file=out, width=max(width, 60), color_system=None, highlight=False, markup=False, emoji=False,
            soft_wrap=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
