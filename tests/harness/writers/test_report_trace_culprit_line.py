"""Issue 21: report.md and report.html show a traced device culprit with its own (local) error
beside the error it carries to where it shows, in the tensor's own units."""
from __future__ import annotations

import recorded_reports

from qat_harness.record.tree import TraceCulprit, TraceSummary
from qat_harness.writers import html, markdown


def _traced_run():
    run = recorded_reports.tiny()
    section = run.models[recorded_reports.TINY_MODEL].devices["cpu"]
    section.trace = TraceSummary("trace.md", TraceCulprit(3, "CONV_2D", "conv_coarse", "device", device="cpu",
                                                          local=1.0, carried=43.0, carried_at=4, domain="int8 steps"))
    return recorded_reports.through_json(run)


def test_both_pages_show_local_and_carried_error():
    run = _traced_run()
    line = "op 3 CONV_2D (layer conv_coarse), stage device; local error 1 int8 steps, carried 43 at op 4"
    assert line in markdown.render(run).replace("\\", "")
    assert "Per-layer trace: " + line in html.render(run)


def test_a_culprit_without_local_error_reads_as_before():
    culprit = TraceCulprit(1, "FULLY_CONNECTED", "dense", "quantization")
    assert culprit.describe() == "op 1 FULLY_CONNECTED (layer dense), stage quantization"


def test_a_trace_without_culprit_reads_the_same_on_both_pages():
    run = recorded_reports.tiny()
    run.models[recorded_reports.TINY_MODEL].devices["cpu"].trace = TraceSummary("trace.md", None)
    run = recorded_reports.through_json(run)
    assert "Per-layer trace (int8 and float do not agree on every input): no layer departs beyond the thresholds" \
        in markdown.render(run).replace("\\", "")
    assert "Per-layer trace: no layer departs beyond the thresholds" in html.render(run)
