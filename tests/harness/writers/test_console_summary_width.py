"""Issue 20 item 16: the console's summary table fits the terminal. A reason is wrapped, never
cut (it was cut at 90 characters), and a long measured cell (C4 listing every float op of a
float file: 4,776 characters) is capped instead of pushing the reason off the screen."""
import dataclasses

import recorded_reports

from qat_harness.writers import console

REASON_WORDS = [f"w{i:03d}" for i in range(80)]     # 399 characters
MEASURED = {"float_ops": ["FULLY_CONNECTED:float32"] * 200}


def _run():
    run = recorded_reports.tiny()
    run.claims[0] = dataclasses.replace(run.claims[0], measured=MEASURED, reason=" ".join(REASON_WORDS))
    return run


def test_every_line_fits_the_terminal_width():
    for width in (80, 120, 200):
        lines = console.summary(_run(), width=width).splitlines()
        assert max(len(line) for line in lines) <= width, width


def test_a_long_reason_is_wrapped_not_cut():
    text = console.summary(_run(), width=100)
    missing = [w for w in REASON_WORDS if w not in text]
    assert not missing, missing


def test_a_long_measured_cell_is_capped():
    text = console.summary(_run(), width=100)
    assert "float_ops=" in text and "…" in text
    assert text.count("FULLY") <= 2, text.count("FULLY")
