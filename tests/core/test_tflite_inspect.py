"""The .tflite inspector against real converter output (float, PTQ int8, QAT int8), against
the LiteRT interpreter's own view of the same files, and against broken or hand-built files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qat_harness import inspection
from qat_harness.core import tflite as ti

CONV_FILTERS = 8
DENSE_UNITS = 5


def _train_briefly(model, x, batch_size=8):
    """One pass so BatchNorm statistics (and QAT ranges) are not their initial values."""
    y = np.random.default_rng(1).integers(0, model.output_shape[-1], len(x))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Conv2D+BN+ReLU, DepthwiseConv2D+BN+ReLU, GAP, Dense, Softmax as float, PTQ int8 and QAT
    int8 .tflite files; plus a model whose BatchNorms cannot fold (after a ReLU, after a
    Concatenate), as float and PTQ int8."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (32, 12, 12, 3)).astype(np.float32)

    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(CONV_FILTERS, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(DENSE_UNITS)(h)
    model = keras.Model(inp, keras.layers.Softmax()(h))
    _train_briefly(model, x)

    qat = tfmot.quantization.keras.quantize_model(model)
    _train_briefly(qat, x)

    inp = keras.Input((12, 12, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    a = keras.layers.BatchNormalization()(a)            # after a ReLU: nothing to fold into
    b = keras.layers.Conv2D(4, 1)(inp)
    h = keras.layers.Concatenate()([a, b])
    h = keras.layers.BatchNormalization()(h)            # after a Concatenate: standalone
    h = keras.layers.GlobalAveragePooling2D()(h)
    unfoldable = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    _train_briefly(unfoldable, x)

    import tensorflow as tf

    from qat_harness.build.convert import representative

    # full-int8 body with the converter's default float interface
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    folder = tmp_path_factory.mktemp("inspect")
    files = {
        "float": to_tflite(model, full_int8=False),
        "ptq": to_tflite(model, full_int8=True, calibration=x),
        "qat": to_tflite(qat, full_int8=True, calibration=x),
        "ptq_float_io": conv.convert(),
        "unfolded_float": to_tflite(unfoldable, full_int8=False),
        "unfolded_int8": to_tflite(unfoldable, full_int8=True, calibration=x),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="session")
def infos(converted):
    return {name: ti.inspect_model(path) for name, path in converted.items()}


# -- parsing agrees with the runtime ------------------------------------------------------------
@pytest.mark.parametrize("variant", ["float", "ptq", "qat"])
def test_tensors_match_the_litert_interpreter(converted, infos, variant):
    from ai_edge_litert.interpreter import Interpreter

    info = infos[variant]
    details = Interpreter(model_path=str(converted[variant])).get_tensor_details()
    assert len(details) == len(info.tensors)
    for d in details:
        t = info.tensor(d["index"])
        assert t.name == d["name"]
        assert t.shape == [int(v) for v in d["shape"]]
        assert t.dtype == np.dtype(d["dtype"]).name
        q = d["quantization_parameters"]
        if len(q["scales"]):
            assert np.array_equal(np.float32(t.scales), q["scales"])
            assert t.zero_points == [int(v) for v in q["zero_points"]]
            assert t.quantized_dimension == q["quantized_dimension"]
        else:
            assert t.scales is None and t.zero_points is None


def test_model_structure_and_summary(converted, infos):
    for variant in ("float", "ptq", "qat"):
        info = infos[variant]
        assert info.size_bytes == converted[variant].stat().st_size
        assert info.n_subgraphs == 1
        assert [op.opcode for op in info.ops] == [
            "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
        assert info.op_counts()["CONV_2D"] == 1
        # op i's outputs feed op i+1: the chain is wired through real tensor indices
        for prev, nxt in zip(info.ops, info.ops[1:]):
            assert prev.outputs[0] in nxt.inputs
        assert info.inputs == [info.ops[0].inputs[0]]
        assert info.outputs == info.ops[-1].outputs
        summary = json.loads(json.dumps(info.to_dict()))
        assert summary["op_counts"] == info.op_counts()
        assert summary["size_bytes"] == info.size_bytes
        assert 0 < summary["constant_bytes"] < info.size_bytes
    qat_in = infos["qat"].to_dict()["inputs"][0]
    assert qat_in["dtype"] == "int8" and qat_in["shape"] == [1, 12, 12, 3] and qat_in["scale"] > 0
    assert infos["float"].to_dict()["inputs"][0]["scale"] is None
    # the constant weights are int8 after quantization: roughly 4x less constant data
    assert infos["float"].to_dict()["constant_bytes"] > 2.5 * infos["qat"].to_dict()["constant_bytes"]


# -- C4 ----------------------------------------------------------------------------------------
def test_float_model_is_not_full_integer(infos):
    check = inspection.full_integer_check(infos["float"])
    assert not check.ok
    assert check.io_dtypes == {"inputs": ["float32"], "outputs": ["float32"]}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(check.float_ops)
    assert check.float_tensors > 0
    assert "float op" in check.reason and "\n" not in check.reason


@pytest.mark.parametrize("variant", ["ptq", "qat"])
def test_int8_models_are_full_integer(infos, variant):
    check = inspection.full_integer_check(infos[variant], require_int8_io=True)
    assert check.ok, check.reason
    assert check.io_dtypes == {"inputs": ["int8"], "outputs": ["int8"]}
    assert check.float_ops == [] and check.float_tensors == 0
    assert check.dequantize_ops == 0 and check.quantize_ops == 0


def test_float_interface_accepted_only_when_int8_io_not_required(infos):
    """Integer body behind a float interface (QUANTIZE at the input, DEQUANTIZE at the output)."""
    info = infos["ptq_float_io"]
    assert [info.ops[0].opcode, info.ops[-1].opcode] == ["QUANTIZE", "DEQUANTIZE"]
    strict = inspection.full_integer_check(info, require_int8_io=True)
    assert not strict.ok and "not int8" in strict.reason
    assert strict.quantize_ops == 1 and strict.dequantize_ops == 1
    assert sorted(strict.float_ops) == ["DEQUANTIZE", "QUANTIZE"]
    relaxed = inspection.full_integer_check(info, require_int8_io=False)
    assert relaxed.ok, relaxed.reason
    assert relaxed.io_dtypes == {"inputs": ["float32"], "outputs": ["float32"]}
    assert relaxed.float_ops == [] and relaxed.float_tensors == 0
    # the float model gains nothing from the relaxation: its body is float
    assert not inspection.full_integer_check(infos["float"], require_int8_io=False).ok


def test_int8_requantize_is_integer_but_float_quantize_is_not():
    s = _schema()
    B = s.BuiltinOperator
    a, b = _quantized("a", [1, 4], 1, 0), _quantized("b", [1, 4], 1, 0)
    a.buffer = b.buffer = 0
    b.quantization.scale = [0.5]
    b.quantization.zeroPoint = [3]
    requant = _handmade([(B.QUANTIZE, B.QUANTIZE, None)], [(0, [0], [1])], [a, b], [_buffer()])
    check = inspection.full_integer_check(ti.inspect_model(_pack(requant)))
    assert check.ok, check.reason
    assert (check.quantize_ops, check.requantize_ops) == (0, 1)
    assert "1 int->int requantize" in check.reason

    f = _tensor("f", [1, 4], "FLOAT32")
    quant = _handmade([(B.QUANTIZE, B.QUANTIZE, None)], [(0, [0], [1])], [f, b], [_buffer()],
                      outputs=[1])
    check = inspection.full_integer_check(ti.inspect_model(_pack(quant)))
    assert not check.ok and (check.quantize_ops, check.requantize_ops) == (1, 0)


# -- C5 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["ptq", "qat"])
def test_conv_weights_are_per_channel(infos, variant):
    rows = {r["opcode"]: r for r in inspection.weight_granularity(infos[variant])}
    assert set(rows) == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    for opcode, axis in (("CONV_2D", 0), ("DEPTHWISE_CONV_2D", 3)):
        r = rows[opcode]
        assert r["weight_dtype"] == "int8"
        assert r["granularity"] == "per-channel"
        assert r["n_scales"] == r["out_channels"] == CONV_FILTERS
        assert r["quantized_dimension"] == axis
    check = inspection.per_axis_check(infos[variant])
    assert check.ok, check.reason
    assert check.conv_per_channel == 2 and check.conv_per_tensor == 0


def test_dense_is_per_tensor_after_qat_and_per_channel_after_ptq(infos):
    """Measured on tfmot 0.8.1 / TF 2.21: QAT's Dense quantizer is per-tensor, the PTQ
    calibrator quantizes FULLY_CONNECTED per output channel. Both pass C5 (dense is reported)."""
    def dense(variant):
        return next(r for r in inspection.weight_granularity(infos[variant]) if r["opcode"] == "FULLY_CONNECTED")

    assert dense("qat")["granularity"] == "per-tensor" and dense("qat")["n_scales"] == 1
    assert dense("ptq")["granularity"] == "per-channel" and dense("ptq")["n_scales"] == DENSE_UNITS
    assert inspection.per_axis_check(infos["qat"]).dense == {"per-tensor": 1, "per-channel": 0}
    assert inspection.per_axis_check(infos["ptq"]).dense == {"per-tensor": 0, "per-channel": 1}


def test_float_conv_weights_fail_per_axis(infos):
    rows = inspection.weight_granularity(infos["float"])
    assert {r["granularity"] for r in rows} == {"float"}
    check = inspection.per_axis_check(infos["float"])
    assert not check.ok and check.conv_per_channel == 0
    assert "float" in check.reason


def _quantized(name, shape, n_scales, axis):
    s = _schema()
    t = _tensor(name, shape, "INT8", buffer=1)
    t.quantization = s.QuantizationParametersT()
    t.quantization.scale = [0.01 * (i + 1) for i in range(n_scales)]
    t.quantization.zeroPoint = [0] * n_scales
    t.quantization.quantizedDimension = axis
    return t


def test_per_axis_check_flags_per_tensor_and_wrong_axis_conv_weights():
    s = _schema()
    B = s.BuiltinOperator
    x = _tensor("x", [1, 6, 6, 8], "INT8")
    tensors = [x,
               _quantized("per_tensor", [8, 3, 3, 8], 1, 0),
               _quantized("single_channel", [1, 3, 3, 8], 1, 0),
               _quantized("wrong_axis", [8, 3, 3, 8], 8, 3),
               _quantized("depthwise", [1, 3, 3, 8], 8, 3),
               _tensor("y0", [1, 4, 4, 8], "INT8"), _tensor("y1", [1, 4, 4, 1], "INT8"),
               _tensor("y2", [1, 4, 4, 8], "INT8"), _tensor("y3", [1, 4, 4, 8], "INT8")]
    ops = [(0, [0, 1, -1], [5]), (0, [0, 2, -1], [6]), (0, [0, 3, -1], [7]), (1, [0, 4, -1], [8])]
    model = _handmade([(B.CONV_2D, B.CONV_2D, None), (B.DEPTHWISE_CONV_2D, B.DEPTHWISE_CONV_2D, None)],
                      ops, tensors, [_buffer(), _buffer(data=[1] * 64)], outputs=[5, 6, 7, 8])
    info = ti.inspect_model(_pack(model))
    rows = inspection.weight_granularity(info)
    assert [r["granularity"] for r in rows] == ["per-tensor", "per-tensor", "per-channel", "per-channel"]
    assert [r["out_channels"] for r in rows] == [8, 1, 8, 8]
    check = inspection.per_axis_check(info)
    assert not check.ok
    # single-output-channel conv and the depthwise are fine; per-tensor and wrong axis are not
    assert (check.conv_per_channel, check.conv_per_tensor, check.conv_other) == (2, 1, 1)
    assert "2 of 4 conv weight(s) not per-channel" in check.reason


def test_describe_quantization_lists_per_channel_weights(infos):
    rows = ti.describe_quantization(infos["qat"])
    per_channel = [r for r in rows if r["n_scales"] > 1]
    # conv and depthwise: int8 weights and their int32 biases (scale_in * scale_w per channel)
    assert sorted(r["dtype"] for r in per_channel) == ["int32", "int32", "int8", "int8"]
    assert all(r["n_scales"] == CONV_FILTERS for r in per_channel)
    assert all(r["constant"] and r["scale_min"] <= r["scale_max"] for r in per_channel)
    assert ti.describe_quantization(infos["float"]) == []


# -- M3 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["float", "ptq", "qat"])
def test_batchnorm_after_conv_is_folded(infos, variant):
    counts = infos[variant].op_counts()
    assert "MUL" not in counts and "ADD" not in counts
    check = inspection.batchnorm_fold_check(infos[variant])
    assert check.ok, check.reason
    assert check.conv_ops == 2 and check.unfolded_after == []


@pytest.mark.parametrize("variant", ["unfolded_float", "unfolded_int8"])
def test_unfoldable_batchnorm_is_reported(infos, variant):
    info = infos[variant]
    counts = info.op_counts()
    assert counts.get("MUL") == 2 and counts.get("ADD") == 2
    check = inspection.batchnorm_fold_check(info)
    assert not check.ok
    # the ReLU conv (3x3, 4 filters) is followed by its BN's MUL
    relu_conv = [op.index for op in info.ops if op.opcode == "CONV_2D"
                 and info.tensor(op.inputs[1]).shape == [4, 3, 3, 3]]
    assert check.unfolded_after == relu_conv
    # the BN after the concatenation: a MUL reading the CONCATENATION output
    concat = next(op for op in info.ops if op.opcode == "CONCATENATION")
    assert [info.ops[i].opcode for i in check.standalone_bn] == ["MUL"]
    assert concat.outputs[0] in info.ops[check.standalone_bn[0]].inputs
    assert "after conv" in check.reason and "standalone" in check.reason


# -- hand-built flatbuffers --------------------------------------------------------------------
def _schema():
    return ti._schema()


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=ti.FILE_IDENTIFIER)
    return bytes(builder.Output())


def _tensor(name, shape, dtype, buffer=0):
    s = _schema()
    t = s.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, getattr(s.TensorType, dtype), buffer
    return t


def _handmade(opcodes, ops, tensors, buffers, inputs=(0,), outputs=None):
    """opcodes: [(deprecated_code, builtin_code, custom_name)]; ops: [(opcode_index, ins, outs)]."""
    s = _schema()
    model = s.ModelT()
    model.version = 3
    model.operatorCodes = []
    for deprecated, builtin, custom in opcodes:
        oc = s.OperatorCodeT()
        oc.deprecatedBuiltinCode, oc.builtinCode, oc.customCode, oc.version = deprecated, builtin, custom, 1
        model.operatorCodes.append(oc)
    sg = s.SubGraphT()
    sg.tensors, sg.inputs = tensors, list(inputs)
    sg.outputs = list(outputs if outputs is not None else [len(tensors) - 1])
    sg.operators = []
    for idx, ins, outs in ops:
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = idx, list(ins), list(outs)
        sg.operators.append(op)
    model.subgraphs = [sg]
    model.buffers = buffers
    return model


def _buffer(data=None, offset=0, size=0):
    b = _schema().BufferT()
    b.data, b.offset, b.size = data, offset, size
    return b


def test_builtin_code_is_the_larger_of_the_two_fields():
    s = _schema()
    B = s.BuiltinOperator
    tensors = [_tensor("x", [4], "FLOAT32"), _tensor("a", [4], "FLOAT32"), _tensor("b", [4], "FLOAT32"),
               _tensor("c", [4], "FLOAT32")]
    model = _handmade(
        [(B.PLACEHOLDER_FOR_GREATER_OP_CODES, B.CUMSUM, None),  # new file, code >= 127
         (B.MUL, 0, None),                                       # old file: only the deprecated field
         (B.CUSTOM, B.CUSTOM, "FlexFusedBatchNormV3")],
        [(0, [0], [1]), (1, [1, 1], [2]), (2, [2], [3])], tensors, [_buffer()])
    info = ti.inspect_model(_pack(model))
    assert [op.opcode for op in info.ops] == ["CUMSUM", "MUL", "CUSTOM:FlexFusedBatchNormV3"]
    check = inspection.batchnorm_fold_check(info)
    assert not check.ok and check.bn_named_ops == [2]


def _external_offset_model(data: bytes) -> bytes:
    """A >2GB-style model: the constant's bytes follow the flatbuffer, located by offset/size."""
    s = _schema()
    B = s.BuiltinOperator
    tensors = [_tensor("x", [1, 4], "FLOAT32"), _tensor("w", [4], "FLOAT32", buffer=1),
               _tensor("y", [1, 4], "FLOAT32")]

    def build(offset):
        return _pack(_handmade([(B.MUL, B.MUL, None)], [(0, [0, 1], [2])], tensors,
                               [_buffer(), _buffer(offset=offset, size=len(data))]))

    head = build(1 << 40)  # same layout whatever non-default offset: measure, then place
    offset = (len(head) + 15) // 16 * 16
    body = build(offset)
    assert len(body) == len(head)
    return body + b"\0" * (offset - len(body)) + data


def test_buffer_stored_after_the_flatbuffer():
    data = np.arange(4, dtype=np.float32).tobytes()
    info = ti.inspect_model(_external_offset_model(data))
    w = info.tensor(1)
    assert w.is_constant and w.data_bytes == len(data)
    assert not info.tensor(0).is_constant
    # a MUL of an activation by a per-channel constant after no conv: not a BN pair on its own
    assert inspection.batchnorm_fold_check(info).ok


def test_buffer_past_the_end_is_invalid():
    whole = _external_offset_model(np.arange(4, dtype=np.float32).tobytes())
    with pytest.raises(ti.InvalidModel, match="past the end"):
        ti.inspect_model(whole[:-4])


def test_buffer_longer_than_the_file_is_invalid():
    s = _schema()
    B = s.BuiltinOperator
    tensors = [_tensor("x", [1, 4], "FLOAT32"), _tensor("w", [4], "FLOAT32", buffer=1),
               _tensor("y", [1, 4], "FLOAT32")]
    payload = bytes(range(100, 116))
    model = _handmade([(B.MUL, B.MUL, None)], [(0, [0, 1], [2])], tensors,
                      [_buffer(), _buffer(data=list(payload))])
    data = bytearray(_pack(model))
    assert ti.inspect_model(bytes(data)).tensor(1).data_bytes == len(payload)
    at = data.index(payload)  # the uint32 before a vector is its length
    assert int.from_bytes(data[at - 4:at], "little") == len(payload)
    data[at - 4:at] = (len(data) * 2).to_bytes(4, "little")
    with pytest.raises(ti.InvalidModel, match="buffer 1 claims .* past the end"):
        ti.inspect_model(bytes(data))


def test_tensor_in_an_external_file_is_constant():
    s = _schema()
    B = s.BuiltinOperator
    tensors = [_tensor("x", [1, 4], "FLOAT32"), _tensor("w", [4], "FLOAT32"), _tensor("y", [1, 4], "FLOAT32")]
    tensors[1].externalBuffer = 1
    model = _handmade([(B.ADD, B.ADD, None)], [(0, [0, 1], [2])], tensors, [_buffer()])
    group, ext = s.ExternalBufferGroupT(), s.ExternalBufferT()
    group.name = "weights.bin"
    ext.id, ext.group, ext.offset, ext.length = 1, 0, 0, 16
    model.externalBufferGroups, model.externalBuffers = [group], [ext]
    info = ti.inspect_model(_pack(model))
    assert info.tensor(1).is_constant and info.tensor(1).data_bytes == 16


# -- bad input ---------------------------------------------------------------------------------
def test_empty_and_non_tflite_files(tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ti.InvalidModel, match="too short"):
        ti.inspect_model(empty)
    text = tmp_path / "notes.tflite"
    text.write_text("this is a text file, not a model\n")
    with pytest.raises(ti.InvalidModel, match="not a .tflite model"):
        ti.inspect_model(str(text))
    with pytest.raises(ti.InvalidModel, match="cannot read"):
        ti.inspect_model(tmp_path / "missing.tflite")
    with pytest.raises(ti.InvalidModel, match="path or bytes"):
        ti.inspect_model(12345)


def test_random_bytes_are_invalid():
    rng = np.random.default_rng(7)
    for n in (8, 64, 4096):
        junk = bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        junk[4:8] = ti.FILE_IDENTIFIER  # get past the identifier check
        with pytest.raises(ti.InvalidModel) as err:
            ti.inspect_model(bytes(junk))
        assert "\n" not in str(err.value)


def test_truncated_real_model_is_invalid(converted):
    data = converted["qat"].read_bytes()
    for cut in list(range(8, len(data), 97)) + [len(data) - 1]:
        with pytest.raises(ti.InvalidModel):
            ti.inspect_model(data[:cut])


def test_corrupted_bytes_never_escape_as_another_exception(converted):
    """Random byte flips: either a readable model or InvalidModel, never another error type,
    and the checks run on whatever parsed."""
    data = converted["qat"].read_bytes()
    rng = np.random.default_rng(3)
    invalid = 0
    for _ in range(300):
        broken = bytearray(data)
        for pos in rng.integers(8, len(data), 4):
            broken[pos] = int(rng.integers(0, 256))
        try:
            info = ti.inspect_model(bytes(broken))
        except ti.InvalidModel:
            invalid += 1
            continue
        inspection.full_integer_check(info)
        inspection.per_axis_check(info)
        inspection.batchnorm_fold_check(info)
        json.dumps(info.to_dict())
    assert invalid > 0


def test_inspection_does_not_load_tensorflow(converted):
    import subprocess
    import sys

    code = ("import sys; from qat_harness.core import tflite as t; "
            f"t.inspect_model({str(converted['qat'])!r}); "
            "print(sorted({m.split('.')[0] for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'ai_edge_litert', 'tf_keras')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "[]"
