"""One small model converted every way the TFLite converter quantizes (and a few ways
ai-edge-quantizer does), for the tests of the quantization scheme read from a file and of the
structure claims on those files. Nothing is trained: the structure of a file does not depend on
its weights. Use the session fixture ``scheme_files`` (``pytest_plugins = ["quant_scheme_files"]``):
a dict {name: path}, built once per session.

Names: ``float32``, ``fp16_weights`` (supported_types=[tf.float16]), ``dynamic_range``
(Optimize.DEFAULT, no representative data), ``int8`` (int8 io), ``int8_float_io`` (the
converter's default float interface), ``uint8_io`` (inference_input/output_type=tf.uint8),
``int16x8`` (EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8), ``int8_per_tensor``
(per-channel quantization turned off), ``mixed`` (a SIN with no int8 kernel falls back to
float inside an int8 graph), ``sparse`` (EXPERIMENTAL_SPARSITY on a mostly-zero Dense: DENSIFY)
and ``legacy_uint8`` (the TF1 fully-uint8 per-tensor model of ``user_models``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import user_models

DENSE_UNITS = 64  # 6*6*8 x 64 weights: over the 1024 elements dynamic-range quantizes


def _model(with_sin: bool = False):
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(11)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(DENSE_UNITS, activation="relu", name="hidden")(x)
    if with_sin:
        x = keras.layers.Lambda(tf.math.sin, name="sin")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="scores")(x))


def _calibration() -> np.ndarray:
    return np.random.default_rng(12).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)


def _converter(model, optimizations=()):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = list(optimizations)
    return converter


def _sparse_model():
    import tf_keras as keras

    keras.utils.set_random_seed(13)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(3)])
    weights, bias = model.layers[0].get_weights()
    weights[:] = 0.0
    weights[::8, :] = 1.0  # 7 rows in 8 are zero: the converter keeps the weight sparse
    model.layers[0].set_weights([weights, bias])
    return model


def build_all() -> dict[str, bytes]:
    import tensorflow as tf

    model, calib = _model(), _calibration()
    default = [tf.lite.Optimize.DEFAULT]
    fp16 = _converter(model, default)
    fp16.target_spec.supported_types = [tf.float16]
    per_tensor = _converter(model, default)
    per_tensor.representative_dataset = user_models._representative(calib)
    per_tensor.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    per_tensor.inference_input_type = per_tensor.inference_output_type = tf.int8
    per_tensor._experimental_disable_per_channel = True
    sparse = _converter(_sparse_model(), [tf.lite.Optimize.EXPERIMENTAL_SPARSITY])
    int16 = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return {
        "float32": user_models.convert(model),
        "fp16_weights": fp16.convert(),
        "dynamic_range": _converter(model, default).convert(),
        "int8": user_models.convert(model, calibration=calib, input_type=tf.int8, output_type=tf.int8),
        "int8_float_io": user_models.convert(model, calibration=calib),
        "uint8_io": user_models.convert(model, calibration=calib, input_type=tf.uint8, output_type=tf.uint8),
        "int16x8": user_models.convert(model, calibration=calib, supported_ops=int16),
        "int8_per_tensor": per_tensor.convert(),
        "mixed": user_models.convert(_model(with_sin=True), calibration=calib,
                                     supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS]),
        "sparse": sparse.convert(),
        "legacy_uint8": user_models.legacy_uint8_tflite(),
    }


def int4_weights(float_path: Path, out: Path) -> Path:
    """ai-edge-quantizer's weight-only int4 recipe applied to a float file (the ``quantizer`` extra)."""
    from ai_edge_quantizer import quantizer, recipe

    out.write_bytes(quantizer.Quantizer(str(float_path), recipe.weight_only_wi4_afp32()).quantize().quantized_model)
    return out


@pytest.fixture(scope="session")
def scheme_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scheme-files")
    paths = {}
    for name, data in build_all().items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths
