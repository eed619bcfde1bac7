"""``report.md``: the run report for people who read text, from the typed report tree."""
from __future__ import annotations

from qat_harness.record.tree import RunReport
from qat_harness.writers.templating import render as render_template


def render(run: RunReport) -> str:
    from qat_harness.claims import TEXTS, Accuracy

    counts = {v.value: n for v, n in run.verdict_counts().items()}
    return render_template("report.md.j2", run=run, claims_text=TEXTS, counts=counts, accuracy=Accuracy)
