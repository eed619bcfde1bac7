"""Issue 20 item 16: report.md prints the Keras build's accuracies only when it has them
("Keras top-1: float , QAT ;" with empty values on a run without data)."""
import dataclasses

import recorded_reports

from qat_harness.writers import markdown


def _with_build(**values):
    run = recorded_reports.digits()
    section = run.models["digits_cnn"]
    section.keras = dataclasses.replace(section.keras, **values)
    return markdown.render(run)


def test_no_keras_accuracy_prints_no_keras_line():
    md = _with_build(float_keras_accuracy=None, qat_keras_accuracy=None, qat_calibration=None)
    assert "Keras top-1" not in md and "QAT calibration" not in md


def test_only_the_values_there_are_are_printed():
    md = _with_build(float_keras_accuracy=None, qat_keras_accuracy=None,
                     qat_calibration="none: no training data")
    assert "- QAT calibration: none: no training data" in md and "Keras top-1" not in md
    md = _with_build(float_keras_accuracy=0.5, qat_keras_accuracy=None)
    assert "- Keras top-1: float 0.5; QAT calibration: fine-tuned 3 epoch\\(s\\)" in md


def test_both_accuracies_as_before():
    assert "- Keras top-1: float 0.992, QAT 0.994; QAT calibration:" in markdown.render(recorded_reports.digits())
