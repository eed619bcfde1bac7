"""User probes for the layer-matrix tests, written the way a user writes theirs:
``qat-harness layers --probe probes_user_example:custom_layer_probe``.

A probe function takes no argument and returns either a tf_keras model, or
``(model, {"LayerClassName": QuantizeConfig()})`` when a custom layer needs its own
QuantizeConfig (the function may instead carry the dict as a ``quantize_configs``
attribute). An optional ``probe_layer`` attribute names the layer in the report.

Some probes here misbehave on purpose (abort, hang, raise): the matrix must record an ERROR
for them and go on with the others.
"""
from __future__ import annotations

import os
import time

from qat_harness.core import keras2

keras2.enter()  # Keras 2 before TensorFlow loads (this module runs in harness children)


def dense_probe():
    import tf_keras as keras
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(6, activation="relu"),
                             keras.layers.Dense(3)])


dense_probe.probe_layer = "Dense (user)"


def _scaled_dense_class():
    import tensorflow as tf
    import tf_keras as keras

    class ScaledDense(keras.layers.Layer):
        """A custom layer outside tfmot's registry: x @ kernel * 0.5 + bias."""

        def __init__(self, units: int = 4, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.units),
                                          initializer="glorot_uniform")
            self.bias = self.add_weight("bias", (self.units,), initializer="zeros")

        def call(self, inputs):
            return tf.matmul(inputs, self.kernel) * 0.5 + self.bias

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return ScaledDense


def _scaled_dense_config_class():
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class ScaledDenseQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """8-bit kernel (per-tensor, symmetric) and 8-bit output, as tfmot's guide shows."""

        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, quantizers.LastValueQuantizer(
                num_bits=8, symmetric=True, narrow_range=False, per_axis=False))]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return ScaledDenseQuantizeConfig


def _scaled_dense_model():
    import tf_keras as keras
    return keras.Sequential([keras.Input((12,)), _scaled_dense_class()(4, name="scaled_dense")])


def custom_layer_probe():
    """A custom layer with its own QuantizeConfig: goes through QAT."""
    return _scaled_dense_model(), {"ScaledDense": _scaled_dense_config_class()()}


custom_layer_probe.probe_layer = "ScaledDense (custom QuantizeConfig)"


def custom_layer_without_config():
    """The same custom layer without a QuantizeConfig: tfmot refuses it."""
    return _scaled_dense_model()


def abort_probe():
    """Kills its process the way a native crash does."""
    os.abort()


def hang_probe():
    """Never returns."""
    time.sleep(3600)


def broken_probe():
    raise ValueError("this probe is broken on purpose")


def not_a_model_probe():
    return "a string, not a model"
