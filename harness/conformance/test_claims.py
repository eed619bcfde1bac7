"""The conformance tests: the ``--conformance-models`` (default digits_cnn) on each ``--device``
(default cpu). ``pytest --pyargs qat_harness.conformance --device=edgetpu`` runs the same
claims on an Edge TPU; a claim that does not hold fails the test with its measurement
(latency claims xfail unless --strict-perf: they measure the hardware, not the harness)."""
import pytest

from qat_harness.pytest_plugin import assert_verdict

DEVICE_CLAIMS = ["A1-accuracy", "A2-agreement", "C2-cpu-latency", "C3-accel"]
MODEL_CLAIMS = ["C1-size", "C4-full-int", "C5-per-axis", "M3-bn-fold"]


def report_claims(report, claim_id, device):
    return [c for c in report["claims"] if c["id"] == claim_id and c["device"] == device]


@pytest.mark.parametrize("claim_id", MODEL_CLAIMS)
def test_model_claim(conformance_report, conformance_models, claim_id):
    found = report_claims(conformance_report, claim_id, "any")
    assert {c["model"] for c in found} == set(conformance_models)
    for c in found:
        assert_verdict(c)


def test_other_bit_widths_have_no_deployment_path(conformance_report):
    found = report_claims(conformance_report, "C6-8bit-only", "any")
    assert len(found) == 1
    assert_verdict(found[0])


def _applies(claim_id: str, role) -> bool:
    """Which latency claim a device is judged on follows from its role; an oracle still gets
    a C2 verdict (SKIP, saying why)."""
    from qat_harness.devices.base import Role

    if claim_id == "C2-cpu-latency":
        return role in (Role.HOST_CPU, Role.ORACLE, Role.OVERHEAD)
    if claim_id == "C3-accel":
        return role is Role.ACCELERATOR
    return True


@pytest.mark.parametrize("claim_id", DEVICE_CLAIMS)
def test_device_claim(conformance_report, device_name, device_role, claim_id, pytestconfig):
    found = report_claims(conformance_report, claim_id, device_name)
    applies = _applies(claim_id, device_role)
    if not applies:
        assert not found, f"{claim_id} must not be judged on {device_name}"
        pytest.skip(f"{claim_id} does not apply to {device_name}")
    assert found, f"no {claim_id} verdict on {device_name}"
    for c in found:
        assert_verdict(c, strict_perf=pytestconfig.getoption("qat_strict_perf"))

