"""Claim evaluation is pure: measurements in, verdicts out. Every verdict path is checked."""
import numpy as np
import pytest

from qat_harness import claims, stats
from qat_harness.devices.base import Delegation
from qat_harness.inspection import BnFoldCheck, FullIntegerCheck, PerAxisCheck
from qat_harness.results import Verdict


def test_ratio_of_medians_interval_contains_the_true_ratio():
    rng = np.random.default_rng(3)
    slow, fast = rng.normal(10, 1, 300), rng.normal(4, 0.4, 300)
    r = stats.ratio_of_medians_ci(slow, fast)
    assert r.ci_low < 2.5 < r.ci_high
    assert r.ci_high - r.ci_low < 0.3


def test_ratio_with_too_few_pairs_has_no_interval():
    r = stats.ratio_of_medians_ci([2.0, 2.0], [1.0, 1.0])
    assert r.ratio == 2.0 and r.ci_low is None


def test_wilson_interval_is_inside_unit_range_and_brackets_rate():
    w = stats.wilson_interval(99, 100)
    assert 0 < w.ci_low < 0.99 < w.ci_high <= 1
    assert stats.wilson_interval(0, 0).rate is None


def test_int8_step_difference():
    a = np.array([[1, 2, 3]], dtype=np.int8)
    b = np.array([[1, 4, -3]], dtype=np.int8)
    d = stats.int8_step_difference(a, b)
    assert d.max_steps == 6 and d.fraction_exact == pytest.approx(1 / 3)


@pytest.mark.parametrize("float_b,int8_b,verdict", [(4000, 1000, Verdict.PASS),
                                                    (3300, 1000, Verdict.WARN),
                                                    (2000, 1000, Verdict.FAIL)])
def test_size_claim(float_b, int8_b, verdict):
    c = claims.size_claim("m", float_b, int8_b)
    assert c.verdict is verdict and c.measured == pytest.approx(float_b / int8_b)


def _ratio(r, lo, hi):
    return stats.RatioCI(r, lo, hi, n_pairs=100)


LAT = stats.latency_summary([1.0, 1.0, 1.0])


@pytest.mark.parametrize("ratio,verdict", [(_ratio(2.0, 1.8, 2.2), Verdict.PASS),
                                           (_ratio(1.0, 0.9, 1.1), Verdict.FAIL),
                                           (_ratio(1.5, 1.3, 1.7), Verdict.WARN),
                                           (_ratio(6.0, 5.0, 7.0), Verdict.WARN)])
def test_cpu_latency_claim(ratio, verdict):
    c = claims.cpu_latency_claim("m", "cpu", ratio, LAT, LAT, cpu_features=["avx2"])
    assert c.verdict is verdict
    assert "CI" in c.reason


def test_cpu_latency_fail_explains_missing_int8_dot_product():
    c = claims.cpu_latency_claim("m", "cpu", _ratio(0.9, 0.8, 0.95), LAT, LAT, cpu_features=["avx2"])
    assert c.verdict is Verdict.FAIL and "slower" in c.reason and "VNNI" in c.reason


def test_accelerator_claim_partial_delegation_is_not_a_success():
    deleg = Delegation("nnapi", ops_total=10, ops_delegated=6)
    c = claims.accelerator_claim("m", "nnapi", _ratio(2.0, 1.8, 2.2), deleg, simulated=True)
    assert c.verdict is Verdict.WARN and c.simulated and c.reason.startswith("[simulated]")
    none = Delegation("nnapi", ops_total=10, ops_delegated=0)
    assert claims.accelerator_claim("m", "nnapi", _ratio(1.0, 0.9, 1.1), none, False).verdict is Verdict.FAIL
    full = Delegation("edgetpu", ops_total=10, ops_delegated=10)
    assert claims.accelerator_claim("m", "edgetpu", _ratio(3.0, 2.5, 3.5), full, False).verdict is Verdict.PASS


@pytest.mark.parametrize("f,q,verdict", [(0.95, 0.945, Verdict.PASS), (0.95, 0.935, Verdict.WARN),
                                         (0.95, 0.90, Verdict.FAIL), (0.90, 0.95, Verdict.PASS)])
def test_accuracy_claim(f, q, verdict):
    assert claims.accuracy_claim("m", "cpu", f, q, 100).verdict is verdict


@pytest.mark.parametrize("k,n,verdict", [(990, 1000, Verdict.PASS), (99, 100, Verdict.WARN),
                                         (92, 100, Verdict.WARN), (50, 100, Verdict.FAIL),
                                         (1, 1, Verdict.WARN)])
def test_agreement_claim_is_judged_on_its_interval(k, n, verdict):
    """99/100 has a point estimate above 95% but an interval reaching 94.5%: not a PASS; one
    example is too few to judge at all."""
    c = claims.agreement_claim("m", "cpu", stats.wilson_interval(k, n))
    assert c.verdict is verdict, c.reason
    if n == 1:
        assert "too few examples" in c.reason


def test_structural_claims_fail_when_checks_fail():
    full_int = FullIntegerCheck(ok=False, io_dtypes={}, float_ops=["ADD"], dequantize_ops=0, quantize_ops=0,
                                requantize_ops=0, float_tensors=2, other_dtypes=[], reason="2 float ops")
    assert claims.full_integer_claim("m", full_int).verdict is Verdict.FAIL
    per_axis = PerAxisCheck(ok=False, conv_per_channel=0, conv_per_tensor=2, conv_other=0, dense={},
                            reason="per-tensor")
    assert claims.per_axis_claim("m", per_axis).verdict is Verdict.FAIL
    unfolded = BnFoldCheck(ok=False, unfolded_after=[3], standalone_bn=[], bn_named_ops=[], conv_ops=1,
                           reason="BN left")
    assert claims.bn_fold_claim("m", unfolded, True).verdict is Verdict.FAIL
    assert claims.bn_fold_claim("m", unfolded, False).verdict is Verdict.SKIP


def test_every_claim_result_serialises_with_required_fields():
    d = claims.size_claim("m", 4000, 1000).to_dict()
    assert {"id", "model", "device", "verdict", "measured", "expected", "reason"} <= set(d)
    assert d["verdict"] == "PASS" and d["id"] in claims.CLAIMS


def test_bit_width_judgement():
    from qat_harness.build.bitwidth import judge

    refused = {"trained": True, "converted": False, "failure": "tfl.conv_2d does not accept i4 tensors"}
    stored8 = {"trained": True, "converted": True, "max_weight_levels": 15, "narrow_tensor_types": []}
    narrow = {"trained": True, "converted": True, "max_weight_levels": 15, "narrow_tensor_types": ["int4"]}
    ok = judge({"W4A4": refused, "W4A8": stored8})
    assert ok.verdict is Verdict.PASS and "15 levels" in ok.reason and "refused" in ok.reason
    assert judge({"W4A8": narrow}).verdict is Verdict.FAIL
    assert judge({"W4A8": {"trained": None, "converted": False, "failure": "crash"}}).verdict is Verdict.ERROR
