"""The test-support models of tests/user_models.py are what they claim to be: io dtypes and
shapes, per-tensor vs per-channel weights, op lists and io order read back from the files with
``qat_harness.core.tflite.inspect_model``, and the Keras files loaded back."""
from __future__ import annotations

import importlib
import json
import sys
import zipfile

import numpy as np
import pytest
from user_models import (
    CLASS_NAMES,
    EDGETPU_CUSTOM_CODE,
    EDGETPU_REFUSAL,
    FACTORY_WITH_DATA_FUNCTION,
    LABELS,
    MULTI_IO_ORDER,
    NUM_OUTPUTS,
)

from qat_harness.core.tflite import WEIGHT_OPS, InvalidModel, inspect_model

pytest_plugins = ["user_models"]  # the session fixture `user_models`


# -- helpers ----------------------------------------------------------------------------------------
def io_dtypes(info) -> tuple[list, list]:
    return ([info.tensor(i).dtype for i in info.inputs], [info.tensor(i).dtype for i in info.outputs])


def io_shapes(info) -> tuple[list, list]:
    return ([info.tensor(i).shape for i in info.inputs], [info.tensor(i).shape for i in info.outputs])


def weight_tensors(info) -> list:
    """The weight tensor of every conv / depthwise / fully-connected op."""
    return [info.tensor(op.inputs[WEIGHT_OPS[op.opcode][0]]) for op in info.ops if op.opcode in WEIGHT_OPS]


def run_one_input_model(path, x: np.ndarray) -> np.ndarray:
    """Run a one-input model example by example; quantizes float x for integer inputs and
    dequantizes integer outputs (per the model's own io scales)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for example in x:
        interpreter.set_tensor(inp["index"], _to_input(example[None], inp))
        interpreter.invoke()
        results.append(_from_output(interpreter.get_tensor(out["index"]), out)[0])
    return np.stack(results)


def _to_input(x, detail):
    scale, zero_point = detail["quantization"]
    if scale:
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


def _from_output(y, detail):
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale if scale else y


# -- 1. the classifier ------------------------------------------------------------------------------
def test_classifier_pair_is_full_int8_and_float(user_models):
    int8, float_, x_calib = user_models.classifier_pair()
    q, f = inspect_model(int8), inspect_model(float_)
    assert io_dtypes(q) == (["int8"], ["int8"])
    assert io_dtypes(f) == (["float32"], ["float32"])
    assert io_shapes(q) == io_shapes(f) == ([[1, 16, 16, 3]], [[1, NUM_OUTPUTS]])
    assert q.op_counts() == {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
                             "MEAN": 1, "SOFTMAX": 1}  # BatchNorm folded, GAP is MEAN
    assert {t.dtype for t in q.tensors} <= {"int8", "int32"}
    for op in q.ops:  # the TF2 converter quantizes conv weights per output channel
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight = q.tensor(op.inputs[1])
            assert len(weight.scales) == weight.shape[WEIGHT_OPS[op.opcode][1]] > 1
    assert x_calib.dtype == np.float32 and x_calib.shape[1:] == (16, 16, 3)


def test_classifier_int8_and_float_agree_and_are_accurate(user_models):
    int8, float_, _ = user_models.classifier_pair()
    data = np.load(user_models.classifier_dataset_npz())
    x, y = data["x"], data["y"]
    top1_int8 = run_one_input_model(int8, x).argmax(axis=1)
    top1_float = run_one_input_model(float_, x).argmax(axis=1)
    assert np.mean(top1_int8 == top1_float) >= 0.90
    assert np.mean(top1_float == y) >= 0.80  # trained, not random
    assert not np.any(top1_float == 0)  # 'background' is never predicted


def test_classifier_dataset_npz(user_models):
    data = np.load(user_models.classifier_dataset_npz())
    x, y = data["x"], data["y"]
    assert x.dtype == np.float32 and x.shape == (200, 16, 16, 3)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert sorted(set(y.tolist())) == list(range(1, NUM_OUTPUTS))


def test_classifier_image_folder_needs_the_labels_file(user_models):
    from PIL import Image

    folder, labels_txt = user_models.classifier_image_folder()
    labels = labels_txt.read_text().splitlines()
    assert labels == list(LABELS) and labels[0] == "background"
    class_folders = sorted(p.name for p in folder.iterdir())
    assert set(class_folders) == set(CLASS_NAMES)
    # scoring by sorted folder order would give every class a wrong index
    assert all(class_folders.index(name) != labels.index(name) for name in CLASS_NAMES)

    data = np.load(user_models.classifier_dataset_npz())
    pngs = sorted(folder.glob("*/*.png"))
    assert len(pngs) == len(data["y"])
    for png in pngs[:20]:  # same pixels as the .npz, label = line index in labels.txt
        i = int(png.stem)
        assert labels.index(png.parent.name) == data["y"][i]
        pixels = np.asarray(Image.open(png).convert("RGB"))
        np.testing.assert_array_equal(pixels, np.round(data["x"][i] * 255).astype(np.uint8))


# -- 2-7. other quantizations and graph shapes ------------------------------------------------
def test_uint8_io_model(user_models):
    info = inspect_model(user_models.uint8_io_model())
    assert io_dtypes(info) == (["uint8"], ["uint8"])
    assert info.op_counts()["QUANTIZE"] == 2  # uint8 -> int8 in, int8 -> uint8 out
    assert {t.dtype for t in weight_tensors(info)} == {"int8"}
    assert all(info.tensor(i).zero_points == [0] for i in info.inputs)


def test_legacy_uint8_model_is_uint8_per_tensor(user_models):
    path = user_models.legacy_uint8_model()
    info = inspect_model(path)
    assert io_dtypes(info) == (["uint8"], ["uint8"])
    assert info.op_counts() == {"AVERAGE_POOL_2D": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1,
                                "FULLY_CONNECTED": 1, "RESHAPE": 1}
    weights = weight_tensors(info)
    assert len(weights) == 3
    assert all(w.dtype == "uint8" and len(w.scales) == 1 for w in weights)  # per-tensor
    assert {t.dtype for t in info.tensors} == {"uint8", "int32"}  # int32: biases, reshape shape
    assert all(len(t.scales) == 1 for t in info.tensors if t.scales)
    x = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 1)).astype(np.float32)
    assert run_one_input_model(path, x).shape == (2, 3)


def test_int16_model_is_16x8(user_models):
    info = inspect_model(user_models.int16_model())
    assert io_dtypes(info) == (["int16"], ["int16"])
    assert all(info.tensor(i).zero_points == [0] for i in info.inputs + info.outputs)
    assert {t.dtype for t in weight_tensors(info)} == {"int8"}
    activations = [t for t in info.tensors if not t.is_constant]
    assert {t.dtype for t in activations} == {"int16"}


def test_multi_io_pair_order(user_models):
    from ai_edge_litert.interpreter import Interpreter

    for path, dtype in zip(user_models.multi_io_pair(), ("int8", "float32")):
        info = inspect_model(path)
        assert io_dtypes(info) == ([dtype] * 2, [dtype] * 2)
        # inputs sorted by name: aux_features [1,4] first; outputs in declared order
        assert io_shapes(info) == ([[1, 4], [1, 16, 16, 3]], [[1, 10], [1, 3]])
        assert [info.tensor(i).name for i in info.inputs] == [
            f"serving_default_{name}:0" for name in MULTI_IO_ORDER["inputs"]]
        assert [info.tensor(i).name for i in info.outputs] == [
            "StatefulPartitionedCall:1", "StatefulPartitionedCall:0"]
        runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
        by_name = runner.get_output_details()
        assert list(by_name["scores"]["shape"]) == [1, 10] and list(by_name["box"]["shape"]) == [1, 3]
        assert [by_name[name]["index"] for name in MULTI_IO_ORDER["outputs"]] == info.outputs


def test_float_output_model(user_models):
    info = inspect_model(user_models.float_output_model())
    assert io_dtypes(info) == (["int8"], ["float32"])
    assert info.ops[-1].opcode == "DEQUANTIZE" and info.ops[-1].outputs == info.outputs
    assert [t.dtype for t in info.tensors if t.is_float] == ["float32"]  # only the output


def test_argmax_int64_model(user_models):
    path = user_models.argmax_int64_model()
    info = inspect_model(path)
    assert io_dtypes(info) == (["int8"], ["int64"])
    assert io_shapes(info) == ([[1, 8, 8, 1]], [[1, 8, 8]])
    assert info.op_counts() == {"ARG_MAX": 1, "CONV_2D": 2}
    x = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 1)).astype(np.float32)
    ids = run_one_input_model(path, x)
    assert ids.dtype == np.int64 and ids.shape == (2, 8, 8) and 0 <= ids.min() and ids.max() < 5


# -- 8. Edge TPU look-alike ---------------------------------------------------------------------
def test_edgetpu_compiled_model_is_one_custom_op(user_models):
    from ai_edge_litert.interpreter import Interpreter

    from qat_harness.core import tflite

    path = user_models.edgetpu_compiled_model()
    info = inspect_model(path)
    assert [op.opcode for op in info.ops] == [f"CUSTOM:{EDGETPU_CUSTOM_CODE}"]
    assert info.ops[0].inputs == info.inputs and info.ops[0].outputs == info.outputs
    source = inspect_model(user_models.classifier_pair()[0])
    assert info.to_dict()["inputs"] == source.to_dict()["inputs"]
    assert [t.shape for t in info.tensors] == [[1, 16, 16, 3], [1, NUM_OUTPUTS]]

    s = tflite._schema()
    model = s.Model.GetRootAs(path.read_bytes(), 0)
    code = model.OperatorCodes(0)
    assert code.BuiltinCode() == code.DeprecatedBuiltinCode() == s.BuiltinOperator.CUSTOM == 32

    interpreter = Interpreter(model_path=str(path))  # constructing works
    with pytest.raises(RuntimeError) as refused:
        interpreter.allocate_tensors()
    assert str(refused.value) == EDGETPU_REFUSAL


# -- 9. Keras files ---------------------------------------------------------------------------------
def test_h5_and_keras3_are_the_same_architecture(user_models):
    import keras
    import tf_keras

    h5, keras3 = user_models.keras_h5_and_keras3()
    data = np.load(user_models.classifier_dataset_npz())
    x, y = data["x"][:50], data["y"][:50]
    model2 = tf_keras.models.load_model(h5)
    model3 = keras.saving.load_model(keras3)
    assert [type(layer).__name__ for layer in model2.layers] == [type(layer).__name__ for layer in model3.layers]
    scores2, scores3 = model2.predict(x, verbose=0), model3.predict(x, verbose=0)
    assert scores2.shape == scores3.shape == (50, NUM_OUTPUTS)
    assert np.mean(scores2.argmax(1) == y) >= 0.8 and np.mean(scores3.argmax(1) == y) >= 0.8
    # the .h5 is the classifier that classifier_pair converted
    float_tflite = user_models.classifier_pair()[1]
    np.testing.assert_allclose(run_one_input_model(float_tflite, x[:5]), scores2[:5], atol=1e-4)
    with zipfile.ZipFile(keras3) as archive:
        assert json.loads(archive.read("metadata.json"))["keras_version"].startswith("3.")


def test_tf_keras_dot_keras_and_saved_model(user_models):
    import tf_keras

    path = user_models.keras_tf_keras_format()
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("metadata.json"))["keras_version"].startswith("2.")
    assert tf_keras.models.load_model(path).output_shape == (None, NUM_OUTPUTS)

    folder = user_models.saved_model_dir()
    assert (folder / "saved_model.pb").is_file() and (folder / "variables").is_dir()
    assert tf_keras.models.load_model(folder).output_shape == (None, NUM_OUTPUTS)


# -- 10. bad inputs ---------------------------------------------------------------------------------
def test_keras_with_custom_layer_needs_custom_objects(user_models):
    import tf_keras
    from user_models import custom_layer_class

    path = user_models.keras_with_custom_layer()
    with pytest.raises(ValueError, match="ScaleByTwo"):
        tf_keras.models.load_model(path)
    loaded = tf_keras.models.load_model(path, custom_objects={"ScaleByTwo": custom_layer_class()})
    assert loaded.output_shape == (None, 3)


def test_keras_with_lambda_holds_a_lambda_layer(user_models):
    import h5py

    with h5py.File(user_models.keras_with_lambda(), "r") as f:
        config = json.loads(f.attrs["model_config"])
    assert "Lambda" in [layer["class_name"] for layer in config["config"]["layers"]]


def test_keras3_untranslatable_is_refused(user_models):
    import keras

    from qat_harness.build import keras3 as translator
    from qat_harness.core.errors import UsageError

    path = user_models.keras3_untranslatable()
    with pytest.raises(UsageError, match="Lambda"):
        translator.check_translatable(translator.read_keras_archive(path))
    with pytest.raises(ValueError):  # Keras 3 refuses Python code unless safe_mode=False
        keras.saving.load_model(path)


def test_junk_files(user_models):
    with pytest.raises(InvalidModel, match="not a .tflite model"):
        inspect_model(user_models.not_a_flatbuffer())
    assert "x" not in np.load(user_models.npz_without_x()).files


def test_factory_module(user_models, tmp_path, monkeypatch):
    folder, spec = user_models.factory_module(tmp_path)
    module_name, function = spec.split(":")
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(module_name, None)
    module = importlib.import_module(module_name)
    try:
        assert getattr(module, function)().output_shape == (None, 3)
        model, data = getattr(module, FACTORY_WITH_DATA_FUNCTION)()
        assert model.input_shape == (None, *data["x"].shape[1:])
        assert data["x"].dtype == np.float32 and len(data["x"]) == len(data["y"])
    finally:
        sys.modules.pop(module_name, None)
