"""The conformance tests: the ``--conformance-models`` (default digits_cnn) on each ``--device``
(default cpu). ``pytest --pyargs qat_harness.conformance --device=edgetpu`` runs the same
claims on an Edge TPU; a claim that does not hold fails the test with its measurement
(latency claims xfail unless --strict-perf: they measure the hardware, not the harness).

Every claim of the registry (``qat_harness.claims``) that a run judges is a test here: one per
claim about the model files, one per claim x device, one per claim about the toolchain."""
import pytest

from qat_harness.claims import ANY_DEVICE, Scope, with_scope
from qat_harness.models.registry import REGISTRY
from qat_harness.pytest_plugin import assert_verdict


def report_claims(report, claim, device):
    return [c for c in report.claims if c.id == claim.id and c.device == device]


def _each_claim(scope: Scope):
    return pytest.mark.parametrize("claim", with_scope(scope), ids=lambda c: c.id)


@_each_claim(Scope.FILE)
def test_model_claim(qat_conformance_report, qat_conformance_models, claim):
    found = report_claims(qat_conformance_report, claim, ANY_DEVICE)
    assert {c.model for c in found} == set(qat_conformance_models)
    for c in found:
        assert_verdict(c)


@_each_claim(Scope.TOOLCHAIN)
def test_toolchain_claim(qat_conformance_report, qat_conformance_models, claim):
    found = report_claims(qat_conformance_report, claim, ANY_DEVICE)
    # the run judged the toolchain only beside one of the guide's own models (sources.judges_the_toolchain)
    if not any(name in REGISTRY for name in qat_conformance_models):
        assert not found, f"{claim.id} must not be judged on a run of your own models alone"
        pytest.skip(f"{claim.id} is judged beside the guide's own models; this run has only yours")
    assert len(found) == 1
    assert_verdict(found[0])


@_each_claim(Scope.DEVICE)
def test_device_claim(qat_conformance_report, qat_device_name, qat_device_role, claim, pytestconfig):
    """A device gets a verdict of each claim its role is judged on, a SKIP saying why of those
    its role is not judged on but told about (an oracle's C2), and none of the others."""
    found = report_claims(qat_conformance_report, claim, qat_device_name)
    if not claim.recorded_on(qat_device_role):
        assert not found, f"{claim.id} must not be judged on {qat_device_name}"
        pytest.skip(f"{claim.id} does not apply to {qat_device_name}")
    assert found, f"no {claim.id} verdict on {qat_device_name}"
    for c in found:
        assert_verdict(c, strict_perf=pytestconfig.getoption("qat_strict_perf"))
