"""Per-layer trace (issue 14): the quantization culprit, the device culprit by bisection over
cut sub-models, and the OpenVINO REVERSE_V2 case. ~60 s (two small conversions)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from trace_models import digits, outlier_classifier

from qat_harness.core import tflite
from qat_harness.devices.base import Availability
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.trace import graph, run_trace


def _convert(model, x, folder, name):
    from qat_harness.build.convert import to_tflite

    paths = {"float": folder / f"{name}_float.tflite", "int8": folder / f"{name}_int8.tflite"}
    paths["float"].write_bytes(to_tflite(model, full_int8=False))
    paths["int8"].write_bytes(to_tflite(model, full_int8=True, calibration=x))
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import tensorflow as tf
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("trace-models")
    x = digits()
    keras.utils.set_random_seed(0)

    bad = outlier_classifier(keras)

    # the same shape of model without the outlier
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inp)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    out = keras.layers.Dense(10, name="logits")(h)
    clean = keras.Model(inp, out, name="digits_clean")

    # Conv -> tf.reverse -> Concatenate with a x3 branch: REVERSE_V2's output scale (the
    # concatenation's) is 3x its input's; LiteRT copies int8 codes, OpenVINO requantizes
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    r = keras.layers.Lambda(lambda t: tf.reverse(t, axis=[2]), name="reverse")(h)
    m = keras.layers.Lambda(lambda t: t * 3.0, name="times3")(h)
    rev = keras.Model(inp, keras.layers.Concatenate(name="concat")([r, m]), name="rev")

    return {"x": x[:16], "bad": _convert(bad, x, folder, "bad"), "clean": _convert(clean, x, folder, "clean"),
            "reverse": _convert(rev, x, folder, "reverse")}


def test_layer_names_strip_quant_prefix():
    name = ("digits_cnn/quant_re_lu_1/Relu;digits_cnn/quant_batch_normalization_1/FusedBatchNormV3;"
            "digits_cnn/quant_conv2d_1/Conv2D")
    assert graph.layer_names(name) == ["re_lu_1", "batch_normalization_1", "conv2d_1"]
    assert graph.primary_layer("digits_cnn/re_lu_1/Relu") == "re_lu_1"


def test_cut_model_ends_at_the_chosen_tensor(models, tmp_path):
    info = tflite.inspect_model(models["clean"]["int8"])
    t = info.ops[1].outputs[0]
    cut = tflite.inspect_model(graph.cut_model(models["clean"]["int8"], [t], tmp_path / "cut.tflite"))
    assert cut.outputs == [t] and len(cut.ops) == 2
    xq = tflite.model_inputs(info, models["x"][:2])
    out = CpuDevice().run(tmp_path / "cut.tflite", xq).outputs
    assert out.dtype == np.int8 and out.size == 2 * int(np.prod(info.tensor(t).shape))


def test_outlier_layer_is_the_quantization_culprit(models, tmp_path):
    result = run_trace(models["bad"]["float"], models["bad"]["int8"], models["x"], {"cpu": CpuDevice()}, tmp_path)
    print("outlier culprit:", result.culprit)
    assert result.culprit is not None
    assert result.culprit.layer == "outlier" and result.culprit.stage == "quantization"
    assert result.devices["cpu"].status == "agrees" and len(result.devices["cpu"].runs) == 1
    data = json.loads((tmp_path / "trace.json").read_text())
    assert data["culprit"]["layer"] == "outlier"
    assert "outlier" in (tmp_path / "trace.md").read_text()
    assert (tmp_path / "trace.png").stat().st_size > 1000
    nodes = json.loads((tmp_path / "trace_nodedata_quantization.json").read_text())
    op = data["ops"][data["culprit"]["op"]]
    assert nodes["results"][op["tensor_name"]]["value"] > 0.5 and nodes["thresholds"]


class BuggyDevice(CpuDevice):
    """XNNPACK with a simulated graph-level bug: every output of a model cut from the original
    at or past op ``bad_op`` (run from the model inputs) is off by 10 steps; ops run alone on
    recorded inputs are right."""
    name = "buggy"

    def __init__(self, bad_op: int):
        super().__init__()
        self.bad_op = bad_op
        self.calls = 0

    def probe(self):
        return Availability(True, "test double")

    def run(self, model_path, inputs, timeout_s=300.0):
        self.calls += 1
        result = super().run(model_path, inputs, timeout_s)
        info = tflite.inspect_model(model_path)
        from_model_inputs = len(info.inputs) == 1 and info.tensor(info.inputs[0]).name.startswith("serving_default")
        if from_model_inputs and len(info.ops) > self.bad_op:
            bump = lambda a: np.clip(a.astype(np.int32) + 10, -128, 127).astype(a.dtype)  # noqa: E731
            result.outputs = bump(result.outputs)
            result.extra_outputs = [bump(a) for a in result.extra_outputs]
        return result


def test_bisection_names_the_departing_op(models, tmp_path):
    info = tflite.inspect_model(models["clean"]["int8"])
    bad_op = 2
    dev = BuggyDevice(bad_op)
    result = run_trace(models["clean"]["float"], models["clean"]["int8"], models["x"],
                       {"buggy": dev, "cpu": CpuDevice()}, tmp_path)
    print("bisection culprit:", result.culprit, "runs:", dev.calls, "ops:", len(info.ops))
    assert result.culprit.stage == "device" and result.culprit.device == "buggy"
    assert result.culprit.op == bad_op and result.devices["buggy"].first_departing_op == bad_op
    assert len(result.devices["buggy"].runs) <= 1 + int(np.ceil(np.log2(len(info.ops))))
    # alone on the reference kernels' inputs op 2 is right: the departure is the graph's
    assert result.ops[bad_op].local["buggy"].max_steps == 0 and result.culprit.local_departs is False
    assert result.quantization_culprit is None
    assert result.ops[bad_op].verdict == "FAIL"


def test_reverse_v2_on_openvino(models, tmp_path):
    from qat_harness.devices import registry

    try:
        dev = registry.create("openvino")
        ok = dev.probe().available
    except Exception:  # noqa: BLE001 - not installed
        ok = False
    if not ok:
        pytest.skip("openvino not available")
    result = run_trace(models["reverse"]["float"], models["reverse"]["int8"], models["x"],
                       {"openvino": dev}, tmp_path)
    print("REVERSE_V2 culprit:", result.culprit)
    c = result.culprit
    assert c.opcode == "REVERSE_V2" and c.stage == "device" and c.device == "openvino"


def test_device_only_trace_for_a_matrix_cell(models, tmp_path):
    """The layer matrix's case: no float .tflite, the device stages only."""
    from qat_harness.results import ClaimResult, Verdict
    from qat_harness.trace import service

    dev = BuggyDevice(1)
    result = service.trace_cell(models["clean"]["int8"], models["x"], "buggy", dev, tmp_path / "cell")
    assert result.culprit.op == 1 and result.culprit.stage == "device"
    assert result.markdown == tmp_path / "cell" / "trace.md" and result.markdown.exists()
    assert result.float_path is None and any("no float model" in n for n in result.notes)
    claims = [ClaimResult("A2-agreement", "m", "cpu", Verdict.WARN, 0.9, ">= 95%", "x")]
    assert service.needs_trace(claims, "m", "cpu") and not service.needs_trace(claims, "m", "cpu-ref")
