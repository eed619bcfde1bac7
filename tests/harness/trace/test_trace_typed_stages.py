"""The trace's stages on typed values, without a model file or a child: the device comparison
through the project's one output comparison (a shape mismatch is a typed departure), the
quantization culprit and the reference-kernels-are-the-odd-one-out rule on a hand-made graph,
the files written from a typed result, and what the run's report keeps of it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qat_harness.claims import Agreement
from qat_harness.claims.tolerances import TRACE_ODD_ONE_OUT_FACTOR
from qat_harness.core import tflite
from qat_harness.measure.difference import OutputDifference
from qat_harness.record.tree import TraceCulprit
from qat_harness.results import ClaimResult, Verdict
from qat_harness.trace import output, service
from qat_harness.trace.culprit import int8_culprit, name_culprit, set_verdicts
from qat_harness.trace.measures import departs, device_difference, quant_error
from qat_harness.trace.results import (
    Bisection,
    BisectionStatus,
    CutRun,
    DeviceCut,
    Mismatch,
    QuantError,
    Stage,
    Thresholds,
    TraceResult,
    Unmeasured,
)
from qat_harness.trace.stages import quantization_stage, upstream_ops

N, SCALE = 8, 0.05


def _tensor(index: int, name: str, dtype: str = "int8", scale: float | None = SCALE) -> tflite.TensorInfo:
    return tflite.TensorInfo(index, name, dtype, [1, 4], False, [scale] if scale else None,
                             [0] if scale else None, None)


def _graph(dtype: str = "int8") -> tflite.ModelInfo:
    """input -> op 0 (conv_a) -> op 1 (dense)"""
    scale = SCALE if dtype == "int8" else None
    tensors = [_tensor(0, "serving_input", dtype, scale), _tensor(1, "m/conv_a/Conv2D", dtype, scale),
               _tensor(2, "m/dense/MatMul", dtype, scale)]
    ops = [tflite.OpInfo(0, "CONV_2D", [0], [1]), tflite.OpInfo(1, "FULLY_CONNECTED", [1], [2])]
    return tflite.ModelInfo(0, ops, tensors, [0], [2], 1)


@pytest.fixture()
def values():
    rng = np.random.default_rng(0)
    flt = {t: rng.normal(0.0, 1.0, (N, 1, 4)).clip(-6, 6) for t in (0, 1, 2)}
    ref = {t: np.round(v / SCALE).astype(np.int8) for t, v in flt.items()}
    ref[2] = (ref[2].astype(np.int32) + 20).clip(-128, 127).astype(np.int8)  # op 1: 20 steps off float
    return ref, flt


def _ops(values, flt_override=None):
    ref, flt = values
    info = _graph()
    flt = {**flt, **(flt_override or {})}
    upstream = upstream_ops(info)
    return quantization_stage(info, _graph("float32"), {1: 1, 2: 2}, ref, flt, N, upstream), upstream


def test_device_difference_is_the_one_output_comparison():
    t = _tensor(1, "m/conv_a/Conv2D")
    ref = np.zeros((N, 1, 4), np.int8)
    near = device_difference(ref + 2, ref, t, N)
    far = device_difference(ref + 3, ref, t, N)
    assert isinstance(near, OutputDifference) and near.max_steps == 2 and near.domain == "int8 steps"
    assert not departs(near, Thresholds()) and departs(far, Thresholds())
    flt_t = _tensor(1, "f", "float32", None)
    small = device_difference(np.full((N, 4), 1.05), np.ones((N, 4)), flt_t, N)
    assert isinstance(small, OutputDifference) and small.max_rel == pytest.approx(0.05)
    assert not departs(small, Thresholds()) and departs(small, Thresholds(threshold_rel=0.01))


def test_a_device_output_of_another_shape_is_a_typed_departure_with_its_reason():
    t = _tensor(1, "m/conv_a/Conv2D")
    mismatch = device_difference(np.zeros((N, 5), np.int8), np.zeros((N, 1, 4), np.int8), t, N)
    assert isinstance(mismatch, Mismatch) and mismatch.output == "m/conv_a/Conv2D"
    assert "[8, 5]" in mismatch.reason and "[8, 4]" in mismatch.reason
    assert departs(mismatch, Thresholds())
    cut = DeviceCut(True, mismatch)
    assert cut.max_steps == math.inf and cut.max_rel is None


def test_quant_error_refuses_other_shapes_and_the_stage_records_why(values):
    with pytest.raises(ValueError, match="differ"):
        quant_error(np.zeros((N, 4), np.int8), np.zeros((N, 5)), _tensor(1, "x"), N)
    ops, _ = _ops(values, {1: np.zeros((N, 5))})
    assert isinstance(ops[0].quant, Unmeasured) and "differ" in ops[0].quant.error
    # an op whose input was not measured passes on what that input carried itself
    assert isinstance(ops[1].quant, QuantError) and ops[1].carried_rel == ops[0].carried_rel == 0.0


def test_the_op_where_the_error_appears_is_the_quantization_culprit(values):
    ops, upstream = _ops(values)
    assert isinstance(ops[0].quant, QuantError) and ops[0].quant.rel < 0.1
    assert isinstance(ops[1].quant, QuantError) and ops[1].quant.mean_steps == pytest.approx(20, abs=1)
    culprit = int8_culprit(ops, Thresholds(), False, upstream)
    assert culprit is not None and (culprit.op, culprit.stage, culprit.layer) == (1, Stage.QUANTIZATION, "dense")
    assert ops[1].carried_rel == pytest.approx(ops[0].quant.rel)
    set_verdicts(ops, culprit, {}, Thresholds())
    assert [o.verdict for o in ops] == [Verdict.PASS, Verdict.FAIL]


def _departing_at(ops, k: int, device: str, rel_vs_float: float | None) -> Bisection:
    cut = DeviceCut(True, OutputDifference("t", "int8 steps", 0.0, max_steps=9, mean_steps=9.0), rel_vs_float)
    ops[k].devices[device] = cut
    return Bisection(BisectionStatus.DEPARTS, f"op {k} departs", [CutRun(k, 0.1, cut)], first_departing_op=k,
                     agrees_up_to=k - 1)


def test_the_reference_kernels_are_the_odd_one_out_when_the_device_is_closer_to_float(values):
    ops, upstream = _ops(values)
    qculprit = int8_culprit(ops, Thresholds(), False, upstream)
    assert qculprit is not None and qculprit.rel is not None
    close = qculprit.rel / TRACE_ODD_ONE_OUT_FACTOR * 0.9
    culprit = name_culprit(ops, qculprit, {"npu": _departing_at(ops, 1, "npu", close)})
    assert culprit is not None and culprit.stage is Stage.DEVICE and culprit.device == "npu"
    assert "odd one out" in culprit.reason and culprit.max_steps == 9
    assert [c.stage for c in culprit.also] == [Stage.QUANTIZATION] and "odd one out" not in qculprit.reason

    ops, upstream = _ops(values)
    far = qculprit.rel / TRACE_ODD_ONE_OUT_FACTOR * 1.1
    culprit = name_culprit(ops, qculprit, {"npu": _departing_at(ops, 1, "npu", far)})
    assert culprit is not None and culprit.stage is Stage.QUANTIZATION and culprit.also[0].device == "npu"


def _result(values, tmp_path) -> TraceResult:
    ops, upstream = _ops(values)
    qculprit = int8_culprit(ops, Thresholds(), False, upstream)
    bisections = {"npu": _departing_at(ops, 1, "npu", None)}
    set_verdicts(ops, qculprit, bisections, Thresholds())
    result = TraceResult(None, "m.tflite", N, Thresholds(), ops, name_culprit(ops, qculprit, bisections), qculprit,
                         bisections, ["a note"])
    result.files = output.write_all(result, tmp_path)
    output.write_json(result, tmp_path)
    return result


def test_files_are_written_from_the_typed_result(values, tmp_path):
    result = _result(values, tmp_path)
    md = (tmp_path / "trace.md").read_text()
    assert result.markdown == tmp_path / "trace.md"
    assert "stage **quantization**" in md and "| 1 | FULLY_CONNECTED | `dense` |" in md and "| 9 | FAIL |" in md
    assert "- npu: departs — op 1 departs (1 run(s))" in md
    data = json.loads((tmp_path / "trace.json").read_text())
    assert data["culprit"]["stage"] == "quantization" and data["culprit"]["also"][0]["device"] == "npu"
    assert data["devices"]["npu"]["runs"][0]["cut"]["worst"]["max_steps"] == 9
    assert data["ops"][1]["verdict"] == "FAIL" and data["files"]["markdown"].endswith("trace.md")
    assert set(result.files.model_explorer) == {"quantization", "npu"}
    nodes = json.loads(result.files.model_explorer["npu"].read_text())
    assert nodes["results"]["m/dense/MatMul"]["value"] == 9


def test_what_the_run_keeps_of_a_trace(values, tmp_path):
    result = _result(values, tmp_path)
    summary = result.summary()
    assert summary.markdown == str(tmp_path / "trace.md")
    assert summary.culprit == TraceCulprit(1, "FULLY_CONNECTED", "dense", "quantization",
                                           result.culprit.reason, None)


def test_which_verdicts_call_for_a_trace():
    def claim(cid: str, device: str, verdict: Verdict) -> ClaimResult:
        return ClaimResult(cid, "m", device, verdict, None, None, "")

    claims = [claim(Agreement.id, "cpu", Verdict.FAIL), claim(Agreement.id, "gpu", Verdict.PASS),
              claim("another-claim", "npu", Verdict.FAIL)]
    assert service.needs_trace(claims, "m", "cpu")
    assert not service.needs_trace(claims, "m", "gpu") and not service.needs_trace(claims, "m", "npu")
    assert not service.needs_trace(claims, "other", "cpu")
