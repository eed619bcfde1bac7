"""Every claim's judge is pure: typed measurements in, a ClaimResult out, so each PASS / WARN /
FAIL / SKIP / ERROR path is checked here without a model."""
import pytest

from qat_harness import claims, stats
from qat_harness.build.bitwidth import BitWidthOutcome
from qat_harness.devices.base import Delegation
from qat_harness.inspection import BnFoldCheck, FullIntegerCheck, PerAxisCheck
from qat_harness.results import ClaimResult, Verdict


@pytest.mark.parametrize("float_b,int8_b,verdict", [(4000, 1000, Verdict.PASS),
                                                    (3300, 1000, Verdict.WARN),
                                                    (2000, 1000, Verdict.FAIL)])
def test_size(float_b, int8_b, verdict):
    c = claims.Size.judge("m", claims.FileSizes(float_b, int8_b))
    assert c.verdict is verdict and c.measured == pytest.approx(float_b / int8_b)
    assert c.id == claims.Size.id and c.expected == claims.Size.expected


def _ratio(r, lo, hi):
    return stats.RatioCI(r, lo, hi, n_pairs=100)


LAT = stats.latency_summary([1.0, 1.0, 1.0])


@pytest.mark.parametrize("ratio,verdict", [(_ratio(2.0, 1.8, 2.2), Verdict.PASS),
                                           (_ratio(1.0, 0.9, 1.1), Verdict.FAIL),
                                           (_ratio(1.5, 1.3, 1.7), Verdict.WARN),
                                           (_ratio(6.0, 5.0, 7.0), Verdict.WARN)])
def test_cpu_latency(ratio, verdict):
    c = claims.CpuLatency.judge("m", "cpu", claims.SpeedUp(ratio, LAT, LAT, cpu_flags=["avx2"]))
    assert c.verdict is verdict
    assert "CI" in c.reason


def test_cpu_latency_fail_explains_missing_int8_dot_product():
    c = claims.CpuLatency.judge("m", "cpu", claims.SpeedUp(_ratio(0.9, 0.8, 0.95), LAT, LAT, cpu_flags=["avx2"]))
    assert c.verdict is Verdict.FAIL and "slower" in c.reason and "VNNI" in c.reason


def test_latency_details_carry_the_ceiling_given():
    ceiling = claims.ceiling(["avx2"], {})
    c = claims.CpuLatency.judge("m", "cpu", claims.SpeedUp(_ratio(2.0, 1.8, 2.2), LAT, LAT, ceiling=ceiling))
    assert c.details["ceiling"] is ceiling
    assert "ceiling" not in claims.CpuLatency.judge("m", "cpu", claims.SpeedUp(_ratio(2.0, 1.8, 2.2), LAT, LAT)).details


def test_accelerator_partial_delegation_is_not_a_success():
    def judge(ratio, deleg, simulated=False):
        return claims.AcceleratorLatency.judge("m", "nnapi", claims.SpeedUp(ratio, delegation=deleg,
                                                                            simulated=simulated))
    c = judge(_ratio(2.0, 1.8, 2.2), Delegation("nnapi", ops_total=10, ops_delegated=6), simulated=True)
    assert c.verdict is Verdict.WARN and c.simulated and c.reason.startswith("[simulated]")
    assert judge(_ratio(1.0, 0.9, 1.1), Delegation("nnapi", ops_total=10, ops_delegated=0)).verdict is Verdict.FAIL
    assert judge(_ratio(3.0, 2.5, 3.5), Delegation("edgetpu", ops_total=10, ops_delegated=10)).verdict is Verdict.PASS
    assert judge(None, None).verdict is Verdict.SKIP


@pytest.mark.parametrize("k,n,verdict", [(990, 1000, Verdict.PASS), (99, 100, Verdict.WARN),
                                         (92, 100, Verdict.WARN), (50, 100, Verdict.FAIL),
                                         (1, 1, Verdict.WARN)])
def test_agreement_is_judged_on_its_interval(k, n, verdict):
    """99/100 has a point estimate above 95% but an interval reaching 94.5%: not a PASS; one
    example is too few to judge at all."""
    c = claims.Agreement.judge("m", "cpu", claims.TopOneAgreement(stats.wilson_interval(k, n)))
    assert c.verdict is verdict, c.reason
    if n == 1:
        assert "too few examples" in c.reason


def test_agreement_details_keep_only_what_was_measured():
    w = stats.wilson_interval(9, 10)
    assert set(claims.Agreement.judge("m", "cpu", claims.TopOneAgreement(w)).details) == {"wilson"}
    ids = claims.Agreement.judge("m", "cpu", claims.TopOneAgreement(w, unit="output elements (class ids)"))
    assert ids.details["unit"] == "output elements (class ids)"
    assert "ptq_agreement" in claims.Agreement.judge("m", "cpu", claims.TopOneAgreement(w, w)).details


FULL_INT_FAIL = FullIntegerCheck(ok=False, io_dtypes={}, float_ops=["ADD"], dequantize_ops=0, quantize_ops=0,
                                 requantize_ops=0, float_tensors=2, other_dtypes=[], reason="2 float ops")
PER_AXIS_FAIL = PerAxisCheck(ok=False, conv_per_channel=0, conv_per_tensor=2, conv_other=0, dense={},
                             reason="per-tensor")
UNFOLDED = BnFoldCheck(ok=False, unfolded_after=[3], standalone_bn=[], bn_named_ops=[], conv_ops=1,
                       reason="BN left")


def test_structural_claims_fail_when_checks_fail():
    assert claims.FullInteger.judge("m", FULL_INT_FAIL).verdict is Verdict.FAIL
    assert claims.PerAxis.judge("m", PER_AXIS_FAIL).verdict is Verdict.FAIL
    assert claims.BatchNormFolding.judge("m", UNFOLDED, True).verdict is Verdict.FAIL
    assert claims.BatchNormFolding.judge("m", UNFOLDED, False).verdict is Verdict.SKIP


def test_every_claim_result_serialises_with_required_fields():
    d = claims.Size.judge("m", claims.FileSizes(4000, 1000)).to_dict()
    assert {"id", "model", "device", "verdict", "measured", "expected", "reason"} <= set(d)
    assert d["verdict"] == "PASS" and d["id"] in claims.REGISTRY
    assert ClaimResult.from_dict(d).to_dict() == d


def test_error_and_skip_carry_the_claims_expectation():
    e = claims.Agreement.error("m", "cpu", "qat_int8 did not run: crash")
    s = claims.Accuracy.skip("m", "cpu", "the dataset has no labels")
    assert (e.id, e.verdict, e.expected) == (claims.Agreement.id, Verdict.ERROR, claims.Agreement.expected)
    assert (s.id, s.verdict, s.expected) == (claims.Accuracy.id, Verdict.SKIP, claims.Accuracy.expected)


def test_bit_width_judgement():
    refused = BitWidthOutcome(True, False, "tfl.conv_2d does not accept i4 tensors")
    stored8 = BitWidthOutcome(True, True, max_weight_levels=15, narrow_tensor_types=[])
    narrow = BitWidthOutcome(True, True, max_weight_levels=15, narrow_tensor_types=["int4"])
    ok = claims.EightBitOnly.judge_probe({"W4A4": refused, "W4A8": stored8})
    assert ok.verdict is Verdict.PASS and "15 levels" in ok.reason and "refused" in ok.reason
    assert ok.measured == {"W4A4": "refused", "W4A8": "int8 storage"}
    assert claims.EightBitOnly.judge_probe({"W4A8": narrow}).verdict is Verdict.FAIL
    crashed = BitWidthOutcome(None, False, "crash")
    assert claims.EightBitOnly.judge_probe({"W4A8": crashed}).verdict is Verdict.ERROR
    assert claims.EightBitOnly.judge_probe({"W4A8": BitWidthOutcome(False, False, "no")}).verdict is Verdict.WARN


def test_bit_width_outcomes_round_trip_as_the_child_writes_them():
    """The cache keeps the child's own dicts: what was not measured stays out of them."""
    child = {"weight_bits": 4, "activation_bits": 8, "trained": True, "converted": True,
             "max_weight_levels": 15, "narrow_tensor_types": [], "size_bytes": 1234}
    assert BitWidthOutcome.from_dict(child).to_dict() == child
    failed = {"trained": None, "converted": False, "failure": "crash: SIGABRT"}
    assert BitWidthOutcome.from_dict(failed).to_dict() == failed
