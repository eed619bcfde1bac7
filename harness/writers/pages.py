"""The pages written from a run's report when it finishes: report.md, report.html and, when
asked for, the JUnit file. ``record.report.Report`` calls each with the typed report it saves."""
from __future__ import annotations

from pathlib import Path

from qat_harness.record.report import HTML_FILE, MARKDOWN_FILE, Pages


def run_pages(out_dir: Path, junit_xml: Path | None = None) -> Pages:
    from qat_harness.writers import html, junit, markdown

    pages: Pages = {Path(out_dir) / MARKDOWN_FILE: markdown.render, Path(out_dir) / HTML_FILE: html.render}
    if junit_xml is not None:
        pages[Path(junit_xml)] = junit.render
    return pages
