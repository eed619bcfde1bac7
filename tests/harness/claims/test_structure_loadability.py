"""The structure claims (C1, C4, C5, M3) are judged once, with whether a device could load the
file as one of their measurements: a file that parses but that no device loads never keeps a
PASS (the end-to-end case: tests/scenarios/test_own_models.py)."""
from qat_harness import claims
from qat_harness.claims import Loadability, StructureFacts
from qat_harness.inspection import BnFoldCheck, FullIntegerCheck, PerAxisCheck
from qat_harness.results import Verdict

FULL_INT = FullIntegerCheck(ok=True, io_dtypes={"inputs": ["int8"], "outputs": ["int8"]}, float_ops=[],
                            dequantize_ops=0, quantize_ops=0, requantize_ops=0, float_tensors=0, other_dtypes=[],
                            reason="all integer")
PER_AXIS = PerAxisCheck(ok=True, conv_per_channel=2, conv_per_tensor=0, conv_other=0, dense={}, reason="per-axis")
FOLDED = BnFoldCheck(ok=True, unfolded_after=[], standalone_bn=[], bn_named_ops=[], conv_ops=2, reason="folded")
FACTS = StructureFacts("int8", claims.FileSizes(4000, 1000), True, FULL_INT, PER_AXIS, FOLDED, (), True)
REFUSED = "failed: Didn't find op for builtin opcode 'CONV_2D' version '99'"


def _verdicts(results):
    return {r.id: r.verdict for r in results}


def test_a_file_no_device_loads_never_keeps_a_structure_pass():
    results = claims.judge_structure("m", FACTS, Loadability({"cpu": REFUSED, "cpu-ref": REFUSED}))
    assert set(_verdicts(results).values()) == {Verdict.ERROR}
    assert [r.id for r in results] == [c.id for c in (claims.Size, claims.FullInteger, claims.PerAxis,
                                                      claims.BatchNormFolding)]
    for r in results:
        assert r.reason.endswith(f"; but no device could load the file ({REFUSED})"), r.reason
        assert r.measured is not None  # what the flatbuffer showed is kept beside the ERROR


def test_one_device_that_loads_it_keeps_the_pass():
    loaded = Loadability({"cpu": REFUSED, "cpu-ref": ""})
    assert loaded.settled and loaded.refusal is None
    assert set(_verdicts(claims.judge_structure("m", FACTS, loaded)).values()) == {Verdict.PASS}


def test_only_a_refusal_to_load_counts_not_a_crash_or_a_device_that_runs_nothing():
    crashed = Loadability({"cpu": REFUSED, "null": "unsupported: the null device runs nothing"})
    assert crashed.settled and crashed.refusal is None
    assert set(_verdicts(claims.judge_structure("m", FACTS, crashed)).values()) == {Verdict.PASS}


def test_loadability_is_settled_only_once_a_device_did_not_refuse():
    assert not Loadability().settled and Loadability().refusal is None
    assert not Loadability({"cpu": REFUSED}).settled
    assert Loadability({"cpu": REFUSED}).refusal == REFUSED


def test_a_non_pass_is_kept_as_it_is():
    small = StructureFacts("int8", claims.FileSizes(2000, 1000), True, FULL_INT, PER_AXIS, FOLDED, (), False)
    verdicts = _verdicts(claims.judge_structure("m", small, Loadability({"cpu": REFUSED})))
    assert verdicts[claims.Size.id] is Verdict.FAIL and verdicts[claims.BatchNormFolding.id] is Verdict.SKIP


def test_what_inspection_could_not_read_is_skipped_or_an_error():
    no_float = claims.judge_structure("m", StructureFacts("int8", None, False, FULL_INT, PER_AXIS, FOLDED),
                                      Loadability())
    assert no_float[0].verdict is Verdict.SKIP and "--float-model" in no_float[0].reason
    unread = _verdicts(claims.judge_structure("m", StructureFacts("qat_int8", None, True), Loadability()))
    assert set(unread.values()) == {Verdict.ERROR}
    edgetpu = StructureFacts("int8", None, False, custom_ops=("CUSTOM:edgetpu-custom-op",))
    compiled = claims.judge_structure("m", edgetpu, Loadability())
    assert [r.verdict for r in compiled[1:]] == [Verdict.SKIP] * 3 and "edgetpu-custom-op" in compiled[1].reason


def test_the_size_reason_names_the_variant_under_test():
    qat = StructureFacts("qat_int8", claims.FileSizes(4000, 1000), True, FULL_INT, PER_AXIS, FOLDED)
    assert "/ QAT int8 " in claims.judge_structure("m", qat, Loadability())[0].reason
    assert "/ int8 " in claims.judge_structure("m", FACTS, Loadability())[0].reason
