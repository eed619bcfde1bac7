"""A user's string (a file or folder name, a model or device name, a tool's stderr in a reason)
made safe for each medium it reaches, in one place:

- everywhere: every C0 and C1 control character and U+2028 / U+2029 is shown as its escape
  (``\\x1b``, ``\\r``, ``\\u2028``), the way git and pytest print names, so no terminal
  sequence, carriage return or line break from a name reaches a reader raw (``visible``);
- the console: that, on a console that never reads markup (``writers.console``);
- Markdown: that, and every character Markdown or HTML would read as syntax (``markdown``);
- HTML: that (the templates' ``finalize``), then jinja2's autoescaping;
- XML: JUnit's ``visible`` text is well-formed XML 1.0;
- plots: matplotlib draws every text as text, never as mathtext (``writers.plots``)."""
from __future__ import annotations

import html
import re

from qat_harness.measure.difference import OutputDifference

#: C0, DEL and C1 controls, the Unicode line and paragraph separators, and lone surrogates
#: (what a file name that is not UTF-8 decodes to: no page could be written with one)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def visible(text: object) -> str:
    """``text`` with every control character shown as its escape."""
    return _CONTROL.sub(_escape, "" if text is None else str(text))


def markdown(text: object, underscores: bool = True) -> str:
    """User text as inert Markdown: no headings, links, tables or HTML can be injected through
    a name. ``underscores=False`` leaves '_' alone (snake_case names read better, and '_' can
    at worst emphasise)."""
    specials = r"([\\`*_{}\[\]()#+!~])" if underscores else r"([\\`*{}\[\]()#+!~])"
    escaped = re.sub(specials, r"\\\1", visible(text))
    return html.escape(escaped, quote=False).replace("|", "\\|")


def format_measured(value: object) -> str:
    """A claim's measured or expected value as short text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_measured(v)}" for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def difference_line(diff: OutputDifference) -> str:
    """One output's difference in its own domain; a float error relative to the output's range
    (``OutputDifference.headline``), or, in a report recorded before the range was, absolute
    and said to be."""
    if diff.max_abs is not None and diff.max_rel is None:
        return (f"max abs {diff.max_abs:.3g} (float; the output's range was not recorded), "
                f"{diff.fraction_exact:.1%} identical")
    return diff.headline
