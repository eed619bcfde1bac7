"""QAT with some layers kept in float (``build.partial_qat``) on a tiny model built here."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.core import tflite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, use_bias=False, name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(16, activation="relu", name="kept")(x)
    out = layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inp, out), np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)


def _compute_ops(blob: bytes, folder) -> list[tuple[str, str]]:
    path = folder / "m.tflite"
    path.write_bytes(blob)
    info = tflite.inspect_model(path)
    return [(op.opcode, info.tensor(op.inputs[1]).dtype) for op in info.ops
            if op.opcode in ("CONV_2D", "FULLY_CONNECTED")]


def test_units_take_the_layers_tfmot_fuses_after_a_kernel(tiny):
    from qat_harness.build import partial_qat

    model, _ = tiny
    found = {u.name: u.layers for u in partial_qat.units(model)}
    assert found == {"conv": ("conv", "bn", "relu"), "kept": ("kept",), "head": ("head",)}


def test_a_kept_layer_converts_to_float_with_float_weights_and_the_rest_to_int8(tiny, tmp_path):
    from qat_harness.build import partial_qat

    model, x = tiny
    before = [w.copy() for w in model.get_weights()]
    mixed = partial_qat.quantize_except(model, ["kept"])
    partial_qat.calibrate(mixed, x)
    ops = _compute_ops(partial_qat.to_mixed_tflite(mixed, x, ["kept"]), tmp_path)
    # the kept Dense alone computes in float32, with float32 weights; the head after it is int8
    assert ops == [("CONV_2D", "int8"), ("FULLY_CONNECTED", "float32"), ("FULLY_CONNECTED", "int8")]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the float model is untouched


def test_quantizing_only_some_units_leaves_the_others_float_in_keras(tiny):
    from qat_harness.build import partial_qat

    model, _ = tiny
    only_head = partial_qat.quantize_except(model, ["conv", "kept"], quantize_others=False)
    configs = {layer.name: type(layer.quantize_config).__name__ for layer in only_head.layers
               if hasattr(layer, "quantize_config")}
    assert configs["quant_kept"] == "KeepFloat" and configs["quant_conv"] == "KeepFloat"
    assert configs["quant_head"] != "KeepFloat"
