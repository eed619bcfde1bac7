"""``report.md``: the run report for people who read text, from the typed report tree."""
from __future__ import annotations

from qat_harness.record.tree import BuildRecord, RunReport
from qat_harness.writers.labels import speedup_label, under_test_label
from qat_harness.writers.templating import render as render_template
from qat_harness.writers.text import format_measured, markdown


def render(run: RunReport) -> str:
    from qat_harness.claims import TEXTS, Accuracy

    counts = {v.value: n for v, n in run.verdict_counts().items()}
    return render_template("report.md.j2", run=run, claims_text=TEXTS, counts=counts, accuracy=Accuracy,
                           under_test_label=under_test_label, speedup_label=speedup_label,
                           build_facts=build_facts)


def build_facts(build: BuildRecord | None) -> str:
    """What the Keras build measured, as Markdown: only the values it has ('' when none)."""
    if build is None:
        return ""
    top1 = [f"{arm} {format_measured(value)}" for arm, value in
            (("float", build.float_keras_accuracy), ("QAT", build.qat_keras_accuracy)) if value is not None]
    facts = [f"Keras top-1: {', '.join(top1)}"] if top1 else []
    if build.qat_calibration:
        facts.append(f"QAT calibration: {markdown(build.qat_calibration)}")
    return "; ".join(facts)
