"""Keras → .tflite conversion in the three variants the harness compares:
float32, post-training full-int8 (PTQ) and QAT full-int8.

Full-integer means ``TFLITE_BUILTINS_INT8`` only, int8 input and output, calibrated with a
representative dataset (claim C4)."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from qat_harness.core import keras2
from qat_harness.core.errors import one_line

keras2.enter()  # Keras 2 before TensorFlow loads (this module runs in harness children)

VARIANTS = ("float", "ptq_int8", "qat_int8")


class ConversionError(Exception):
    """The converter refused or failed on a model; the message is its first meaningful line."""


def representative(x, n: int = 100, names: list[str] | None = None) -> Iterable:
    """Calibration examples one at a time; ``x`` is one array or one per model input (in the
    model's declared order). With several inputs each example is a dict keyed by input name:
    the converter feeds the serving signature, whose inputs are sorted by name, so a list in
    declared order would feed one input's data to another."""
    inputs = x if isinstance(x, list) else [x]

    def gen():
        for i in range(min(n, len(inputs[0]))):
            example = [np.asarray(a[i:i + 1]).astype(np.float32) for a in inputs]
            yield dict(zip(names, example)) if names and len(example) > 1 else example
    return gen


def to_tflite(model, full_int8: bool, calibration: np.ndarray | None = None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if full_int8:
        if calibration is None:
            raise ValueError("full-int8 conversion needs calibration data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        names = list(getattr(model, "input_names", None) or [])
        converter.representative_dataset = representative(calibration, names=names)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ConversionError(one_line(exc)) from None

