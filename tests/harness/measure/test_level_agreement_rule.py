"""Two emulated feature levels of one CPU on the same file and inputs: rounding apart is
agreement; more is "emulator or kernel, unconfirmed", naming the pair, never a phone's fault."""
import numpy as np

from qat_harness.measure.difference import OutputTensor
from qat_harness.measure.level_agreement import UNCONFIRMED, level_agreement

INT8 = OutputTensor("scores", "int8", [0.00390625])


def _scores(seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (50, 10)).astype(np.int8)


def test_identical_levels_agree():
    out = _scores()
    check = level_agreement({"arm-cpu-neon": [out], "arm-cpu-dotprod": [out.copy()], "arm-cpu-i8mm": [out.copy()]},
                            [INT8])
    assert len(check.pairs) == 3 and check.finding is None


def test_a_rounding_step_on_a_few_values_is_agreement():
    out = _scores()
    rounded = out.copy()
    rounded[0, 0] = np.int8(min(int(rounded[0, 0]) + 1, 127))
    check = level_agreement({"arm-cpu-neon": [out], "arm-cpu-dotprod": [rounded]}, [INT8])
    assert check.finding is None


def test_levels_far_apart_are_emulator_or_kernel_unconfirmed():
    """The SME fault's shape: one level's scores hundreds of steps off, the others identical."""
    out = _scores()
    wrong = _scores(seed=1)
    check = level_agreement({"arm-cpu-dotprod": [out], "arm-cpu-i8mm": [out.copy()], "arm-cpu-sme": [wrong]},
                            [INT8])
    assert [(p.a, p.b) for p in check.disagreeing] == [("arm-cpu-dotprod", "arm-cpu-sme"),
                                                       ("arm-cpu-i8mm", "arm-cpu-sme")]
    assert check.finding.startswith(UNCONFIRMED + ": ")
    assert "arm-cpu-dotprod vs arm-cpu-sme: max " in check.finding and "not a phone's result" in check.finding


def test_every_output_of_a_file_is_compared():
    first, second = _scores(), _scores(2)
    changed = second.copy()
    changed[:, 3] = -changed[:, 3] - 1
    check = level_agreement({"a": [first, second], "b": [first, changed]},
                            [INT8, OutputTensor("boxes", "int8", [0.1])])
    scores, boxes = check.pairs[0].differences
    assert scores.max_steps == 0 and boxes.max_steps > 4
