"""Issue 20 item 16: a float output's error is shown relative to the output's range, not only
in absolute terms: "max abs 2.73" said nothing on an output spanning ±1.7e3."""
import numpy as np
import recorded_reports

from qat_harness.measure.difference import OutputDifference, OutputTensor, output_difference
from qat_harness.writers import html, markdown
from qat_harness.writers.text import difference_line


def _wide_float_difference():
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1.7e3, 1.7e3, (16, 4))
    measured = reference + rng.uniform(-2.73, 2.73, reference.shape)
    return output_difference(measured, reference, OutputTensor("box"))


def _run_with(diff):
    run = recorded_reports.tiny()
    section = run.models[recorded_reports.TINY_MODEL].devices["cpu"]
    section.vs_reference_kernels, section.vs_reference_kernels_outputs = diff, None
    section.vs_float = [diff]
    return recorded_reports.through_json(run)


def test_report_md_and_html_give_the_error_relative_to_the_range():
    diff = _wide_float_difference()
    run = _run_with(diff)
    rel = f"rel {diff.max_rel:.3g} of the output's range"
    assert diff.max_rel < 0.01
    md, page = markdown.render(run), html.render(run)
    reference = [line for line in md.splitlines() if "reference kernels, output box" in line]
    assert len(reference) == 1 and rel in reference[0].replace("\\", ""), reference
    assert "max abs difference" not in md
    assert rel.replace("'", "&#39;") in page and "box against float" in page


def test_a_difference_recorded_without_the_range_says_so():
    old = OutputDifference("box", "float", 0.0, max_abs=2.73)
    assert difference_line(old).startswith("max abs 2.73 (float; the output's range was not recorded)")
    assert "range was not recorded" in markdown.render(_run_with(old))
