"""An emulated device (the arm-cpu levels under QEMU) is judged on numerics and never on
latency: K2 compares it with the reference kernels, C2/C3 skip it saying why."""
from qat_harness import claims, judge
from qat_harness.claims.kernels import ReferenceAgreement, VersusReference
from qat_harness.devices.base import Role
from qat_harness.measure.difference import OutputDifference
from qat_harness.results import Verdict


def test_no_latency_claim_judges_an_emulator():
    assert claims.latency_claim(Role.EMULATED) is None
    result, ceiling = judge.latency(judge.Subject("digits_cnn", "arm-cpu-dotprod", Role.EMULATED, False,
                                                  "qat_int8", "int8", False), None, None, {}, None, True)
    assert result.verdict is Verdict.SKIP and ceiling is None
    assert result.reason == "emulated: an emulator's timing says nothing of the hardware's, numerics only"


def test_reference_agreement_judges_an_emulator():
    assert Role.EMULATED in ReferenceAgreement.roles and Role.EMULATED not in ReferenceAgreement.skipped_roles
    far = OutputDifference("scores", "int8 steps", 0.0, max_steps=218, mean_steps=90.0)
    result = ReferenceAgreement.judge("digits_cnn", "arm-cpu-sme", VersusReference(Role.EMULATED, (far,)))
    assert result.verdict is Verdict.FAIL and "computes something else" in result.reason
