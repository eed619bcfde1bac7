"""Every output is classified from the file: class scores only where top-1 means something."""
import numpy as np
import pytest

from qat_harness.core.tflite import inspect_model
from qat_harness.measure.output_kinds import OutputKind, Task, classify_outputs


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("heads")
    x = tf.keras.Input((8,))
    hidden = tf.keras.layers.Dense(6, activation="relu")(x)
    models = {
        "softmax": tf.keras.Model(x, tf.keras.layers.Dense(5, activation="softmax")(hidden)),
        "box": tf.keras.Model(x, tf.keras.layers.Dense(4)(hidden)),
        "score": tf.keras.Model(x, tf.keras.layers.Dense(1)(hidden)),
    }
    img = tf.keras.Input((6, 6, 2))
    models["mask"] = tf.keras.Model(img, tf.keras.layers.Conv2D(1, 3, padding="same")(img))
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 8)).astype(np.float32)
    paths = {}
    for name, model in models.items():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if name == "softmax":  # int8 with int8 io: the SOFTMAX sits behind nothing but the output
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([c[None]] for c in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(converter.convert())
    return {name: inspect_model(path) for name, path in paths.items()}


def _kind(info, **kwargs):
    return classify_outputs(info, **kwargs)[0].kind


def test_a_softmax_head_is_class_scores_even_quantized(heads):
    assert _kind(heads["softmax"]) is OutputKind.CLASS_SCORES


def test_a_linear_box_is_regression_unless_the_user_says_otherwise(heads):
    assert _kind(heads["box"]) is OutputKind.REGRESSION
    assert "give --task classification" in classify_outputs(heads["box"])[0].why
    assert _kind(heads["box"], task=Task.CLASSIFICATION) is OutputKind.CLASS_SCORES
    assert _kind(heads["box"], label_classes=4) is OutputKind.CLASS_SCORES   # labels of 4 classes fit it


def test_one_value_and_maps(heads):
    assert _kind(heads["score"]) is OutputKind.REGRESSION
    assert _kind(heads["mask"]) is OutputKind.DENSE
