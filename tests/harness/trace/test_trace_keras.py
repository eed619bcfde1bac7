"""The trace's QAT Keras stage (issue 14): with the QAT Keras model rebuilt from its source and
saved weights, the trace tells quantization (QAT Keras already departs from float) from
conversion (the int8 file departs from QAT Keras). A converter fault is simulated by
rewriting one bias in the int8 file. ~60 s (three Keras children)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from trace_models import digits, outlier_classifier

from qat_harness.build.artifacts import QatKerasModel
from qat_harness.core import tflite
from qat_harness.trace import graph, run_trace


def _files(model, x, folder, name):
    """Float .h5 (the QAT Keras model's source), QAT weights, float and QAT int8 .tflite."""
    import tensorflow_model_optimization as tfmot

    from qat_harness.build.convert import to_tflite
    from qat_harness.build.training import calibrate_qat_ranges

    h5 = folder / f"{name}.h5"
    model.save(h5)
    qat = tfmot.quantization.keras.quantize_model(model)
    calibrate_qat_ranges(qat, x)
    weights = folder / f"{name}_qat.weights.h5"
    qat.save_weights(str(weights))
    paths = {"float": folder / f"{name}_float.tflite", "int8": folder / f"{name}_int8.tflite"}
    paths["float"].write_bytes(to_tflite(model, full_int8=False))
    paths["int8"].write_bytes(to_tflite(qat, full_int8=True, calibration=x))
    paths["keras"] = QatKerasModel({"kind": "keras_file", "path": str(h5), "ref": None, "label": name}, weights)
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("trace-keras")
    x = digits()
    keras.utils.set_random_seed(0)
    bad = outlier_classifier(keras)

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inp)
    h = keras.layers.Flatten(name="flat")(h)
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")
    h = hidden(h)
    k, b = hidden.get_weights()
    hidden.set_weights([k, np.linspace(0.05, 0.2, b.size, dtype=np.float32)])  # a bias the converter keeps
    clean = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probs")(h), name="digits_clean")
    return {"x": x[:16], "bad": _files(bad, x, folder, "bad"), "clean": _files(clean, x, folder, "clean")}


def _shift_bias(int8_path, layer: str, dest):
    """A copy of the int8 file whose ``layer`` FULLY_CONNECTED bias is moved by 64 steps of the
    output scale on every unit: what a converter that mis-folds a bias would write."""
    s = graph.schema()
    import flatbuffers

    info = tflite.inspect_model(int8_path)
    op = next(o for o in info.ops if o.opcode == "FULLY_CONNECTED"
              and graph.primary_layer(info.tensor(o.outputs[0]).name) == layer)
    assert len(op.inputs) > 2 and op.inputs[2] >= 0, "the layer's op has no bias"
    bias, out = info.tensor(op.inputs[2]), info.tensor(op.outputs[0])
    buf = int8_path.read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    buffer = model.buffers[model.subgraphs[0].tensors[op.inputs[2]].buffer]
    shift = int(round(64 * out.scales[0] / bias.scales[0]))  # 64 output steps
    if buffer.data is None:  # stored after the flatbuffer: edit the bytes where they lie
        raw = bytearray(buf)
        data = np.frombuffer(bytes(raw[buffer.offset:buffer.offset + buffer.size]), dtype=np.int32)
        raw[buffer.offset:buffer.offset + buffer.size] = (data + shift).astype(np.int32).tobytes()
        dest.write_bytes(bytes(raw))
        return dest
    data = np.frombuffer(bytes(np.asarray(buffer.data, dtype=np.uint8)), dtype=np.int32)
    buffer.data = np.frombuffer((data + shift).astype(np.int32).tobytes(), dtype=np.uint8)
    builder = flatbuffers.Builder(1024 + len(buf))
    builder.Finish(model.Pack(builder), file_identifier=tflite.FILE_IDENTIFIER)
    dest.write_bytes(bytes(builder.Output()))
    return dest


def test_outlier_is_named_quantization_from_the_qat_keras_model(models, tmp_path):
    m = models["bad"]
    result = run_trace(m["float"], m["int8"], models["x"], {}, tmp_path, qat_keras=m["keras"])
    print("culprit:", result.culprit)
    assert result.keras_stage
    assert result.culprit.layer == "outlier" and result.culprit.stage == "quantization"
    assert "QAT Keras" in result.culprit.reason
    first = result.ops[0]
    # the fake-quant grid is the int8 grid: before the outlier, conversion changes nothing
    assert first.layer == "conv_a" and first.conversion.mean_steps < 0.5
    md = (tmp_path / "trace.md").read_text()
    assert "QAT Keras vs float" in md and "int8 ref vs QAT Keras" in md


def test_a_bias_the_converter_got_wrong_is_named_conversion(models, tmp_path):
    m = models["clean"]
    broken = _shift_bias(m["int8"], "hidden", tmp_path / "broken.tflite")
    result = run_trace(m["float"], broken, models["x"], {}, tmp_path / "with", qat_keras=m["keras"])
    print("culprit:", result.culprit)
    assert result.culprit is not None
    assert result.culprit.layer == "hidden" and result.culprit.stage == "conversion"
    hidden = result.ops[result.culprit.op]
    assert hidden.conversion.mean_steps > 20 and hidden.keras_qat.rel < 0.1
    nodes = json.loads((tmp_path / "with" / "trace_nodedata_conversion.json").read_text())
    assert nodes["results"][hidden.tensor_name]["value"] > 20

    # without the QAT Keras model the same fault can only be called quantization
    blind = run_trace(m["float"], broken, models["x"], {}, tmp_path / "without")
    assert not blind.keras_stage and blind.culprit.layer == "hidden"
    assert blind.culprit.stage == "quantization"
    assert any("no QAT Keras model" in n for n in blind.notes)


def test_the_unbroken_file_has_no_conversion_culprit(models, tmp_path):
    m = models["clean"]
    result = run_trace(m["float"], m["int8"], models["x"], {}, tmp_path, qat_keras=m["keras"])
    assert result.keras_stage
    assert result.culprit is None or result.culprit.stage != "conversion"
    # Dense(activation="softmax") is the model output: its value is not put on the logits op
    probs = [o for o in result.ops if o.layer == "probs"]
    assert probs and all(o.keras_qat is None for o in probs)
    steps = [o.conversion.max_steps for o in result.ops if o.conversion]
    assert steps and max(steps) <= 2, steps
