"""The structure claims (C1, C4, C5, M3) on files that are not the int8 file they were written
for: a float file SKIPs them all and says why, a uint8 full-integer file is full-integer (C4
PASS naming uint8), a per-tensor file is told "per-tensor" (C5), and C4's measured cell stays
short on a file with many float ops while the check keeps every op."""
from __future__ import annotations

import pytest

from qat_harness import claims, inspection
from qat_harness.claims import Loadability, StructureFacts
from qat_harness.core import tflite
from qat_harness.measure.scheme import QuantScheme, quantization_scheme
from qat_harness.results import Verdict
from qat_harness.variants import Variant
from qat_harness.writers.text import format_measured

pytest_plugins = ["quant_scheme_files"]
STRUCTURE_IDS = (claims.Size.id, claims.FullInteger.id, claims.PerAxis.id, claims.BatchNormFolding.id)


def _facts(path, float_path=None) -> StructureFacts:
    """What a run reads from a user's file (and its float reference, when given)."""
    info = tflite.inspect_model(path)
    sizes = claims.FileSizes(tflite.inspect_model(float_path).size_bytes, info.size_bytes) if float_path else None
    return StructureFacts(Variant.INT8, sizes, float_path is not None, inspection.full_integer_check(info),
                          inspection.per_axis_check(info), inspection.batchnorm_fold_check(info), (), None,
                          quantization_scheme(info))


def _judged(facts: StructureFacts) -> dict:
    return {r.id: r for r in claims.judge_structure("m", facts, Loadability({"cpu": ""}))}


@pytest.mark.parametrize("name,phrase", [("float32", "a float32 file"), ("fp16_weights", "an fp16-weights file"),
                                         ("sparse", "a sparse float file")])
def test_a_float_file_skips_every_structure_claim_and_says_why(scheme_files, name, phrase):
    results = _judged(_facts(scheme_files[name], float_path=scheme_files["float32"]))
    assert list(results) == list(STRUCTURE_IDS)
    assert {r.verdict for r in results.values()} == {Verdict.SKIP}
    assert all(r.reason.startswith(f"{phrase}: ") for r in results.values())
    assert results[claims.FullInteger.id].reason == f"{phrase}: no integer ops to check"
    assert "int8" not in " ".join(r.reason for r in results.values())


@pytest.mark.parametrize("name", ["uint8_io", "legacy_uint8"])
def test_uint8_full_integer_files_pass_c4_and_name_uint8(scheme_files, name):
    c4 = _judged(_facts(scheme_files[name]))[claims.FullInteger.id]
    assert c4.verdict is Verdict.PASS, c4.reason
    assert c4.reason.startswith("uint8: all ") and "['uint8'] -> ['uint8']" in c4.reason
    assert c4.measured["io"] == {"inputs": ["uint8"], "outputs": ["uint8"]}


def test_float_io_is_still_not_full_integer_io(scheme_files):
    c4 = _judged(_facts(scheme_files["int8_float_io"]))[claims.FullInteger.id]
    assert c4.verdict is Verdict.FAIL and "not int8 or uint8" in c4.reason


def test_the_legacy_uint8_per_tensor_file_warns_per_tensor_on_c5(scheme_files):
    c5 = _judged(_facts(scheme_files["legacy_uint8"]))[claims.PerAxis.id]
    assert c5.verdict is Verdict.WARN
    assert c5.reason.startswith("uint8: per-tensor: 2 of 2 conv weight(s) have one scale"), c5.reason
    assert "uint8 weights, 1 scale for 4 output channels" in c5.reason
    assert "uint8 weights have no per-axis form" in c5.reason
    assert c5.measured["conv_per_tensor"] == 2


def test_an_int8_per_tensor_file_fails_c5_per_tensor(scheme_files):
    c5 = _judged(_facts(scheme_files["int8_per_tensor"]))[claims.PerAxis.id]
    assert c5.verdict is Verdict.FAIL
    assert c5.reason.startswith("int8: per-tensor: 2 of 2 conv weight(s)") and "int8 weights, 1 scale" in c5.reason


def test_the_uint8_io_file_is_per_axis_inside(scheme_files):
    c5 = _judged(_facts(scheme_files["uint8_io"]))[claims.PerAxis.id]
    assert c5.verdict is Verdict.PASS and c5.reason.startswith("uint8: all 2 conv weight(s) per-channel")


@pytest.mark.parametrize("name,label", [("dynamic_range", "dynamic-range"), ("mixed", "mixed"),
                                        ("int16x8", "16x8")])
def test_a_quantized_file_that_is_not_full_integer_is_judged_and_named_by_its_scheme(scheme_files, name, label):
    c4 = _judged(_facts(scheme_files[name]))[claims.FullInteger.id]
    assert c4.verdict is Verdict.FAIL and c4.reason.startswith(f"{label}: ")


def test_c4_measured_cell_is_capped_and_the_check_keeps_every_op(scheme_files):
    info = tflite.inspect_model(scheme_files["dynamic_range"])
    check = inspection.full_integer_check(info)
    assert len(check.float_ops) == len(info.ops) == 6
    c4 = claims.FullInteger.judge("m", check, Variant.INT8, scheme=quantization_scheme(info))
    assert c4.measured["float_ops"] == [*check.float_ops[:5], "+1 more"]
    assert c4.details["check"].float_ops == check.float_ops
    assert c4.to_dict()["details"]["check"]["float_ops"] == check.float_ops   # report.json keeps them all
    assert c4.to_dict()["details"]["scheme"] == QuantScheme.DYNAMIC_RANGE.value


def test_c4_measured_cell_of_a_large_float_graph_stays_short():
    """4,776 characters on a real model before: the cell is now the first five ops and a count."""
    ops = [f"CONV_2D_{i}" for i in range(400)]
    check = inspection.FullIntegerCheck(ok=False, io_dtypes={"inputs": ["float32"], "outputs": ["float32"]},
                                        float_ops=ops, dequantize_ops=0, quantize_ops=0, requantize_ops=0,
                                        float_tensors=800, other_dtypes=[], reason="400 float op(s)")
    cell = format_measured(claims.FullInteger.judge("m", check).measured)
    assert len(cell) < 120 and cell.endswith("+395 more"), cell
    assert inspection.FullIntegerCheck(**{**check.to_dict(), "float_ops": ops[:5]}).float_ops_shown() == ops[:5]
