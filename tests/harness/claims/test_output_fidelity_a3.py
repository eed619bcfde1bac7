"""A3 (output fidelity) and A2's degenerate case, judged on typed measurements."""
import numpy as np

from qat_harness import claims, stats
from qat_harness.measure.agreement import Fidelity
from qat_harness.measure.difference import output_difference
from qat_harness.measure.output_kinds import OutputKind, OutputRole, degenerate
from qat_harness.results import Verdict

BOX = OutputRole(1, "box", OutputKind.REGRESSION, "3 values per input")


def _fidelity(noise: float, reference=None) -> Fidelity:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (50, 3)) if reference is None else reference
    got = ref + rng.normal(0, noise, ref.shape)
    return Fidelity(BOX, output_difference(got, ref), degenerate(ref, BOX.kind))


def _judge(*outputs: Fidelity):
    return claims.Fidelity.judge("m", "cpu", claims.OutputFidelity(outputs))


def test_sqnr_decides_pass_warn_fail():
    assert _judge(_fidelity(0.01)).verdict is Verdict.PASS          # ~40 dB
    assert _judge(_fidelity(0.2)).verdict is Verdict.WARN            # ~14 dB
    assert _judge(_fidelity(0.6)).verdict is Verdict.FAIL            # ~4 dB
    worst = _judge(_fidelity(0.01), _fidelity(0.6))
    assert worst.verdict is Verdict.FAIL and worst.measured < 10 and "'box'" in worst.reason


def test_an_output_that_is_zero_for_every_input_is_degenerate_not_a_pass():
    result = _judge(_fidelity(0.0, reference=np.zeros((20, 3))))
    assert result.verdict is Verdict.WARN and "degenerate" in result.reason and "zero for every input" in result.reason


def test_no_regression_output_skips():
    assert _judge().verdict is Verdict.SKIP


def test_agreement_on_one_answer_for_every_input_warns_degenerate():
    all_agree = stats.wilson_interval(500, 500)
    plain = claims.Agreement.judge("m", "cpu", claims.TopOneAgreement(all_agree))
    dull = claims.Agreement.judge("m", "cpu", claims.TopOneAgreement(
        all_agree, degenerate="output 'scores': float answers class 0 for all 500 inputs"))
    assert plain.verdict is Verdict.PASS
    assert dull.verdict is Verdict.WARN and "degenerate: the inputs do not exercise the model" in dull.reason


def test_degenerate_class_scores():
    scores = np.tile([0.9, 0.05, 0.05], (10, 1))
    assert degenerate(scores, OutputKind.CLASS_SCORES) == "class 0 for all 10 inputs"
    scores[3] = [0.1, 0.8, 0.1]
    assert degenerate(scores, OutputKind.CLASS_SCORES) is None
