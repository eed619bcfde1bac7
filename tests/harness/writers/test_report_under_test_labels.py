"""Issue 20 item 16: the reports name the file actually under test. "Speed-up float/QAT-int8"
was printed for a user's own file that no QAT made (and for a uint8 or float file): its
speed-up is float over that file, named as the claims name it (``claims.structure.file_label``)."""
import recorded_reports

from qat_harness.measure.scheme import QuantScheme
from qat_harness.writers import html, markdown


def _lines(text, word):
    return [line for line in text.splitlines() if word in line]


def test_a_users_int8_file_is_not_called_qat():
    run = recorded_reports.through_json(recorded_reports.tiny())   # int8.tflite=float.tflite
    md, page = markdown.render(run), html.render(run)
    assert _lines(md, "Speed-up") == [line for line in _lines(md, "Speed-up") if "Speed-up float / int8:" in line]
    assert _lines(md, "Speed-up") and "QAT" not in "".join(_lines(md, "Speed-up"))
    assert "Speed-up float / int8:" in page and "QAT" not in "".join(_lines(page, "Speed-up"))


def test_a_users_uint8_file_is_named_by_its_scheme():
    run = recorded_reports.tiny()
    run.models[recorded_reports.TINY_MODEL].schemes = {"int8": QuantScheme.UINT8, "float": QuantScheme.FLOAT32}
    run = recorded_reports.through_json(run)
    md, page = markdown.render(run), html.render(run)
    assert "Speed-up float / uint8:" in md and "Speed-up float / uint8:" in page
    assert "- uint8 model vs LiteRT reference kernels" in md
    assert "uint8 vs LiteRT reference kernels" in page


def test_a_built_model_keeps_qat_and_ptq():
    md = markdown.render(recorded_reports.digits())
    assert "Speed-up float / QAT int8: 0.88x" in md and "; float / PTQ int8: 0.88x" in md
