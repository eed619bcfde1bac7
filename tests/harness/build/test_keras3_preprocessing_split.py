"""A Keras 3 model's leading Rescaling/Normalization layers stay outside the quantized graph
(harness/build/keras3_preprocessing.py): the translation leaves them out, the data goes
through them in float, and tfmot quantizes the rest, which it refused whole before.

conftest.py selected Keras 2, so `tf_keras` is Keras 2 here while `import keras` is Keras 3."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.build import keras3, keras3_preprocessing
from qat_harness.build.keras3_preprocessing import FloatPreprocessing

IMAGE = (8, 8, 3)
PIXELS = np.random.default_rng(5).uniform(0, 255, (16, *IMAGE)).astype("float32")


def _save(model, tmp_path, name: str):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


def _body(keras, y):
    L = keras.layers
    y = L.Conv2D(4, 3, padding="same", name="conv")(y)
    y = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(y))
    return L.Dense(3, activation="softmax", name="scores")(L.GlobalAveragePooling2D(name="gap")(y))


def functional_with_preprocessing():
    """An application model's start: pixels 0..255 -> Rescaling(1/255) -> Normalization adapted
    on the rescaled data (its statistics in the weights, not in the config)."""
    import keras

    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization(name="normalization")
    norm.adapt(PIXELS / 255.0)
    x = keras.Input(IMAGE, name="image")
    return keras.Model(x, _body(keras, norm(keras.layers.Rescaling(1 / 255.0, name="rescaling")(x))))


def sequential_with_inverted_normalization():
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    return keras.Sequential([keras.Input(IMAGE), L.Normalization(mean=[0.5] * 3, variance=[4.0] * 3, invert=True,
                                                                 name="denormalize"),
                             L.Conv2D(4, 3, name="conv"), L.GlobalAveragePooling2D(), L.Dense(3)])


@pytest.mark.parametrize("build,taken", [(functional_with_preprocessing, ("rescaling", "normalization")),
                                         (sequential_with_inverted_normalization, ("denormalize",))],
                         ids=lambda value: getattr(value, "__name__", ""))
def test_leading_preprocessing_is_left_out_and_the_rest_quantizes(build, taken, tmp_path):
    import tensorflow_model_optimization as tfmot

    keras3_model = build()
    path = _save(keras3_model, tmp_path, build.__name__)
    result = keras3.translate(path)
    assert tuple(step.layer for step in result.preprocessing.steps) == taken
    assert not {"Rescaling", "Normalization"} & {type(layer).__name__ for layer in result.model.layers}
    assert result.max_abs_diff <= 1e-5
    # what the run does: the float steps on the data, then the translated model
    expected = np.asarray(keras3_model(PIXELS, training=False))
    assert np.allclose(result.model(result.preprocessing.apply(PIXELS), training=False), expected, atol=1e-5)
    assert any("outside the quantized graph" in note and taken[0] in note for note in result.notes)
    tfmot.quantization.keras.quantize_model(result.model)  # raised "Layer rescaling ... is not supported"


def test_the_steps_go_through_json_unchanged(tmp_path):
    result = keras3.translate(_save(functional_with_preprocessing(), tmp_path, "json"))
    again = FloatPreprocessing.from_json(result.preprocessing.to_json())
    assert again.text == result.preprocessing.text
    assert np.array_equal(again.apply(PIXELS), result.preprocessing.apply(PIXELS))


def _archive_config(model) -> dict:
    """What a .keras archive's config.json holds (Keras 3's saving writes this very dict)."""
    import json

    import keras

    return json.loads(json.dumps(keras.saving.serialize_keras_object(model)))


def test_preprocessing_that_is_not_the_models_start_stays_in_the_model():
    import keras

    L = keras.layers
    x = keras.Input(IMAGE)
    middle = keras.Model(x, L.Dense(2)(L.Rescaling(0.5)(L.Conv2D(4, 3)(x))))
    only_layer = keras.Model(x, L.Rescaling(0.5)(x))  # nothing after it: it is the model
    shared_input = keras.Model(x, L.Add()([L.Rescaling(0.5)(x), x]))  # the raw input is read elsewhere too
    scaled = L.Rescaling(0.5)(x)
    read_twice = keras.Model(x, [L.Dense(2)(scaled), scaled])  # also an output
    for model in (middle, only_layer, shared_input, read_twice):
        split = keras3_preprocessing.split_config(_archive_config(model))
        assert split.taken == () and split.model == _archive_config(model), model.name
