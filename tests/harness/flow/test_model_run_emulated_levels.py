"""Issue 22: after its devices, a model's run compares the emulated feature levels' outputs of
the file under test with each other; levels far apart leave the note "emulator or kernel,
unconfirmed" on the model (the SME fault), levels that agree leave nothing."""
from __future__ import annotations

import types

import numpy as np

from qat_harness.flow.model import ModelRun
from qat_harness.measure.difference import OutputTensor
from qat_harness.measure.level_agreement import UNCONFIRMED


class _Info:
    outputs = [7]

    def tensor(self, index):
        assert index == 7
        return OutputTensor("scores", "int8", [0.00390625])


def _stage(outputs):
    notes: list[tuple[str, str]] = []
    stage = types.SimpleNamespace(name="digits_cnn", ut="qat_int8", emulated_outputs=outputs,
                                  info=lambda variant: _Info(),
                                  report=types.SimpleNamespace(note=lambda model, text: notes.append((model, text))))
    return stage, notes


def test_levels_far_apart_leave_a_note_naming_the_emulator():
    good = np.random.default_rng(0).integers(-100, 100, (20, 10)).astype(np.int8)
    stage, notes = _stage({"arm-cpu-i8mm": [good], "arm-cpu-sme": [(good // 4).astype(np.int8)]})
    ModelRun.judge_emulated_levels(stage)
    assert len(notes) == 1 and notes[0][0] == "digits_cnn" and notes[0][1].startswith(UNCONFIRMED)
    assert "arm-cpu-sme" in notes[0][1]


def test_levels_that_agree_or_a_single_level_leave_nothing():
    good = np.random.default_rng(0).integers(-100, 100, (20, 10)).astype(np.int8)
    for outputs in ({"arm-cpu-neon": [good], "arm-cpu-dotprod": [good.copy()]}, {"arm-cpu-neon": [good]}):
        stage, notes = _stage(outputs)
        ModelRun.judge_emulated_levels(stage)
        assert notes == []
