"""Issue 20 item 1, in report.md: how the user's data reached each input (dtype and range fed,
scheme, fraction clipped) is a table under the model's data line, and survives report.json."""
from __future__ import annotations

import recorded_reports

from qat_harness.core.tflite import FeedScheme, InputFeed
from qat_harness.writers import markdown


def test_report_md_shows_how_each_input_was_fed():
    run = recorded_reports.tiny()
    section = run.models[recorded_reports.TINY_MODEL]
    assert section.dataset is not None
    section.dataset.feeds = [
        InputFeed("image", "uint8", 0.0, 255.0, FeedScheme.NATIVE, "uint8", 1 / 128, 128),
        InputFeed("extra", "float32", -3.0, 2.5, FeedScheme.QUANTIZED, "int8", 0.0078125, 0, 0.0312),
    ]
    text = markdown.render(recorded_reports.through_json(run))
    assert "| input | dtype fed | range fed | scheme | clipped |" in text
    assert "| image | uint8 | 0..255 | native uint8, fed as given | - |" in text
    assert r"| extra | float32 | -3..2.5 | quantized to int8 \(scale 0.0078125, zero point 0\) | 3.12% |" in text


def test_report_md_has_no_feed_table_when_none_was_recorded():
    assert "| input | dtype fed |" not in markdown.render(recorded_reports.tiny())
