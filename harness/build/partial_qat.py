"""Quantization-aware training with some layers kept in float (Keras 2, harness children only).

A model's quantizable *units* are its layers with a kernel (Conv2D, DepthwiseConv2D, Dense,
...) together with the BatchNormalization / activation layers tfmot fuses after them: a unit
is quantized, or kept in float, whole. ``quantize_except(model, keep)`` annotates every layer
tfmot's default 8-bit registry supports except the kept units' layers, which get a
quantize config that quantizes nothing (the tfmot guide's way of skipping a layer), and
applies tfmot's scheme; ``to_mixed_tflite`` converts the result.

Why the conversion differs from ``build.convert``'s full-integer one: with a representative
dataset the converter calibrates and quantizes every op it can, the kept layers included
(measured: a kept Dense came out FULLY_CONNECTED int8). Without one it quantizes only the
tensors QAT recorded ranges for and leaves the others float (measured on digits_cnn: every
BatchNorm's MUL/ADD and the op after a kept layer stayed float too). So the converter only
calibrates, and its quantizer then runs with the kept layers' ops denylisted: those, and only
those, stay float32 with float32 weights, the input and output stay float32."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from qat_harness.core import keras2
from qat_harness.sensitivity.plan import UnitInfo as Unit

keras2.enter()  # Keras 2 before TensorFlow loads (this module runs in harness children)

#: layers tfmot fuses into the quantized op before them (Conv+BN+ReLU): they follow their unit
_FUSED_FOLLOWERS = ("BatchNormalization", "ReLU", "Activation")
#: how many training examples set a configuration's ranges in ``calibrate``
CALIBRATION_EXAMPLES = 256


def _outbound(layer) -> list:
    return [node.outbound_layer for node in getattr(layer, "_outbound_nodes", [])]


def units(model) -> list[Unit]:
    """The model's quantizable units in graph order: layers with a kernel that tfmot's
    default registry quantizes."""
    from qat_harness.build import tfmot_registry

    registry = tfmot_registry.registry()
    found = []
    for layer in model.layers:
        if not any(hasattr(layer, attr) for attr in ("kernel", "depthwise_kernel")) or not registry.supports(layer):
            continue
        chain, current = [layer.name], layer
        while True:
            after = _outbound(current)
            if len(after) != 1 or type(after[0]).__name__ not in _FUSED_FOLLOWERS:
                break
            current = after[0]
            chain.append(current.name)
        found.append(Unit(layer.name, type(layer).__name__, tuple(chain)))
    return found


def _no_quantization():
    import tensorflow_model_optimization as tfmot

    class KeepFloat(tfmot.quantization.keras.QuantizeConfig):
        """Quantizes nothing: the layer stays float inside the QAT model."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return KeepFloat


def quantize_except(model, keep: Iterable[str], all_units: list[Unit] | None = None,
                    quantize_others: bool = True):
    """``model`` under tfmot's default 8-bit QAT scheme with the units named in ``keep``
    left in float; ``quantize_others=False`` leaves the layers outside every unit (pooling,
    reshapes, additions) in float too, so that only the units not kept are quantized. The
    float model is not changed (quantize_apply copies its weights)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from qat_harness.build import tfmot_registry, training

    training.check_supported_model(model)
    keep = set(keep)
    every_unit = all_units or units(model)
    floating = {name for u in every_unit if u.name in keep for name in u.layers}
    in_units = {name for u in every_unit for name in u.layers}
    keep_float = _no_quantization()
    registry = tfmot_registry.registry()
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def clone(layer):
        if layer.name in floating:
            return annotate(layer, keep_float())
        if registry.supports(layer) and (quantize_others or layer.name in in_units):
            return annotate(layer)
        return layer

    annotated = keras.models.clone_model(model, clone_function=clone)
    with tfmot.quantization.keras.quantize_scope({"KeepFloat": keep_float}):
        return tfmot.quantization.keras.quantize_apply(annotated)


def calibrate(qat_model, x, batch_size: int = 32) -> None:
    """Set the fake-quant ranges from training-mode passes over ``x`` (no weight is trained;
    tfmot's weight ranges follow the weights at once, its activation ranges move by their
    moving average). Works for any output kind: no loss is involved."""
    inputs = x if isinstance(x, list) else [x]
    n = min(len(inputs[0]), CALIBRATION_EXAMPLES)
    for start in range(0, n, batch_size):
        batch = [a[start:start + batch_size] for a in inputs]
        qat_model(batch if len(batch) > 1 else batch[0], training=True)


def to_mixed_tflite(qat_model, calibration, keep_layers: Iterable[str]) -> bytes:
    """int8 everywhere except the ops of ``keep_layers`` (Keras layer names), which stay
    float32 with float32 weights between a DEQUANTIZE and a QUANTIZE (see the module
    docstring): the converter only calibrates, then its quantizer runs with those ops
    denylisted, as LiteRT's ``QuantizationDebugger`` does for selective quantization."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    from qat_harness.build.convert import ConversionError, representative
    from qat_harness.core.errors import one_line

    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(calibration,
                                                      names=list(getattr(qat_model, "input_names", None) or []))
    converter._experimental_calibrate_only = True  # the public API has no per-op denylist
    try:
        calibrated = converter.convert()
        return mlir_quantize(calibrated, denylisted_nodes=_op_names(calibrated, keep_layers))
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ConversionError(one_line(exc)) from None


def _op_names(model: bytes, layers: Iterable[str]) -> list[str]:
    """The converted ops that compute ``layers``: their output tensors are named after the
    Keras layer (``.../quant_<layer>/...``), fused ops with ``;`` between the names."""
    from qat_harness.core import tflite

    marks = tuple(f"/{prefix}{name}/" for name in layers for prefix in ("quant_", ""))
    info = tflite.inspect_model(model)
    names = []
    for op in info.ops:
        for index in op.outputs:
            name = info.tensor(index).name
            if any(mark in part for part in name.split(";") for mark in marks):
                names.append(name)
    return names


def predict(model, x, batch_size: int = 64) -> list[np.ndarray]:
    """Every output of ``model`` on ``x``, as a list."""
    out = model.predict(x, verbose=0, batch_size=batch_size)
    return [np.asarray(o) for o in out] if isinstance(out, list) else [np.asarray(out)]
