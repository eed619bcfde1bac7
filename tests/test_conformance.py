"""The conformance tests: the registry's models on each --device (default cpu).

`pytest --device=edgetpu tests/test_conformance.py` runs the same claims on an Edge TPU;
a claim that does not hold fails the test with its measurement (latency claims xfail unless
--strict-perf: they measure the hardware, not the harness)."""
import pytest

from qat_harness.pytest_plugin import assert_verdict

pytestmark = pytest.mark.slow

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


@pytest.mark.parametrize("claim_id", DEVICE_CLAIMS)
def test_device_claim(conformance_report, device_name, claim_id, pytestconfig):
    found = report_claims(conformance_report, claim_id, device_name)
    applies = (claim_id != "C2-cpu-latency" or device_name in ("cpu", "cpu-ref")) and \
              (claim_id != "C3-accel" or device_name in ("nnapi", "edgetpu"))
    if not applies:
        assert not found, f"{claim_id} must not be judged on {device_name}"
        pytest.skip(f"{claim_id} does not apply to {device_name}")
    assert found, f"no {claim_id} verdict on {device_name}"
    for c in found:
        assert_verdict(c, strict_perf=pytestconfig.getoption("qat_strict_perf"))

