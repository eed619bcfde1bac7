"""K2-reference-agreement: the int8 model under test on a device against LiteRT's reference
kernels (the numeric oracle), each output judged in its own domain."""
import numpy as np
import pytest

from qat_harness import claims
from qat_harness.claims import ReferenceAgreement, VersusReference
from qat_harness.core.tflite import TensorInfo
from qat_harness.devices.base import Role
from qat_harness.measure.difference import OutputDifference, output_difference
from qat_harness.results import Verdict


def _tensor(dtype="int8", name="out"):
    quantized = dtype in ("int8", "uint8", "int16")
    return TensorInfo(index=0, name=name, dtype=dtype, shape=[1, 10], is_constant=False,
                      scales=[0.05] if quantized else None, zero_points=[0] if quantized else None,
                      quantized_dimension=0)


def _steps(max_steps, mean_steps, fraction_exact, name="out", dtype="int8"):
    return OutputDifference(name, f"{dtype} steps", fraction_exact, max_steps=max_steps, mean_steps=mean_steps)


def _judge(*diffs, role=Role.HOST_CPU, **kw):
    return ReferenceAgreement.judge("m", "cpu", VersusReference(role, tuple(diffs), **kw))


def test_digits_on_xnnpack_passes():
    """As recorded on digits_cnn, XNNPACK vs the reference kernels: max 3 steps, 99.06% identical."""
    c = _judge(_steps(3, 0.0140625, 0.990625))
    assert c.verdict is Verdict.PASS, c.reason
    assert c.id == "K2-reference-agreement" and c.expected == ReferenceAgreement.expected
    assert ">= 99.5% within 1 step" in c.reason and c.measured == {"out": "max 3 int8 steps, 99.1% identical"}


@pytest.mark.parametrize("diff,verdict", [
    (_steps(1, 0.4, 0.6), Verdict.PASS),        # 40% one step apart: rounding, every value within 1 step
    (_steps(6, 0.02, 0.99), Verdict.WARN),      # a value 6 steps apart
    (_steps(3, 0.30, 0.90), Verdict.WARN),      # up to 20% of values beyond one step
    (_steps(20, 0.05, 0.97), Verdict.FAIL),     # a value 1/13 of the range apart
    (_steps(4, 1.5, 0.1), Verdict.FAIL),        # the typical value is more than a step apart
])
def test_quantized_outputs_in_steps(diff, verdict):
    assert _judge(diff).verdict is verdict


def test_a_16_bit_output_counts_its_own_finer_steps_as_such():
    """As measured on a 16x8 model, OpenVINO against the reference kernels: 24 int16 steps at
    most is a tenth of one 8-bit step. The same numbers in int8 steps compute something else."""
    c = _judge(_steps(24, 3.185, 0.088, dtype="int16"))
    assert c.verdict is Verdict.PASS and "within 256 steps (one 8-bit step)" in c.reason, c.reason
    assert _judge(_steps(24, 3.185, 0.088)).verdict is Verdict.FAIL
    assert _judge(_steps(20 * 256, 300.0, 0.1, dtype="int16")).verdict is Verdict.FAIL


def test_the_within_one_step_share_is_never_below_the_identical_share():
    far = _steps(51, 16.1, 0.02)  # identical values are within one step whatever the mean says
    assert ReferenceAgreement.within_one_step(far) == 0.02 and _judge(far).verdict is Verdict.FAIL


@pytest.mark.parametrize("max_rel,verdict", [(0.001, Verdict.PASS), (0.05, Verdict.WARN), (0.3, Verdict.FAIL)])
def test_float_outputs_on_their_relative_error(max_rel, verdict):
    d = OutputDifference("logits", "float", 0.5, max_abs=max_rel * 4, max_rel=max_rel)
    assert _judge(d).verdict is verdict


@pytest.mark.parametrize("equal,verdict", [(1.0, Verdict.PASS), (0.97, Verdict.WARN), (0.5, Verdict.FAIL)])
def test_class_id_outputs_on_the_share_of_equal_ids(equal, verdict):
    assert _judge(OutputDifference("ids", "ids", equal)).verdict is verdict


def test_the_worst_output_decides_and_every_output_is_named():
    c = _judge(_steps(0, 0.0, 1.0, "boxes"), _steps(30, 0.2, 0.9, "scores"))
    assert c.verdict is Verdict.FAIL and "boxes: max 0" in c.reason and "scores: max 30" in c.reason
    assert set(c.measured) == {"boxes", "scores"} and len(c.details["outputs"]) == 2


def test_what_cannot_be_judged():
    oracle = _judge(role=Role.ORACLE)
    assert oracle.verdict is Verdict.SKIP and "oracle" in oracle.reason
    assert _judge(role=Role.OVERHEAD).verdict is Verdict.SKIP
    not_run = _judge(not_run="int8 did not run: failed: no kernel")
    assert not_run.verdict is Verdict.ERROR and "no kernel" in not_run.reason
    no_oracle = _judge(oracle_error="crash: SIGSEGV")
    assert no_oracle.verdict is Verdict.SKIP and "SIGSEGV" in no_oracle.reason
    simulated = _judge(_steps(0, 0.0, 1.0), role=Role.ACCELERATOR, simulated=True)
    assert simulated.simulated and simulated.reason.startswith("[simulated]")


def test_the_within_one_step_share_is_a_lower_bound_of_the_real_one():
    """Derived from max/mean/identical alone, it must never claim more than the arrays show."""
    rng = np.random.default_rng(0)
    for dtype, lo, hi, per_step in (("int8", -128, 127, 1), ("int16", -32768, 32767, 256)):
        for _ in range(200):
            ref = rng.integers(lo, hi + 1, (8, 10))
            noise = rng.choice([0, 0, 1, -1, 2, -3, 7, 300, -900], size=ref.shape, p=rng.dirichlet(np.ones(9)))
            dev = np.clip(ref + noise * (per_step if rng.random() < 0.5 else 1), lo, hi).astype(dtype)
            d = output_difference(dev, ref.astype(dtype), _tensor(dtype))
            real = float(np.mean(np.abs(dev.astype(int) - ref) <= per_step))
            assert ReferenceAgreement.within_one_step(d) <= real + 1e-12


def test_k2_is_judged_on_tested_devices_and_told_to_the_others():
    assert claims.Scope.DEVICE in ReferenceAgreement.scopes
    assert ReferenceAgreement.roles == {Role.HOST_CPU, Role.ACCELERATOR, Role.EMULATED}
    assert all(ReferenceAgreement.recorded_on(role) for role in Role)
