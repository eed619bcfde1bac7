"""Keras 3 `.keras` models translated to tf_keras (harness/build/keras3.py): the translation
computes the same function, tfmot's QAT accepts it, and what cannot be translated is refused
in one line naming the layer and why.

conftest.py selected Keras 2, so `tf_keras` is Keras 2 here while `import keras` is Keras 3."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from qat_harness.build import keras3 as translator
from qat_harness.core.errors import UsageError

TOLERANCE = 1e-5


def _save(model, tmp_path, name: str):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


def _randomize_batchnorm(model) -> None:
    """Fresh BatchNormalization layers are the identity (mean 0, variance 1): give them
    statistics so a wrong weight order would show."""
    import keras

    rng = np.random.default_rng(1)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])


def _qat_one_step(model) -> float:
    """QAT applies (tfmot's default 8-bit scheme) and one training step runs."""
    import tensorflow_model_optimization as tfmot

    qat = tfmot.quantization.keras.quantize_model(model)
    inputs = [np.random.default_rng(2).uniform(0, 1, (4, *t.shape[1:])).astype("float32")
              for t in model.inputs]
    targets = qat.predict(inputs, verbose=0)
    qat.compile(optimizer="sgd", loss="mse")
    return float(np.ravel(qat.train_on_batch(inputs, targets))[0])


# --- models --------------------------------------------------------------------------------

def sequential_cnn():
    import keras

    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(6.0),
        keras.layers.MaxPooling2D(),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ], name="seq_cnn")
    _randomize_batchnorm(model)
    return model


def functional_residual_cnn():
    import keras

    x = keras.Input((16, 16, 3), name="image")
    stem = keras.layers.ReLU()(keras.layers.BatchNormalization()(
        keras.layers.Conv2D(8, 3, padding="same")(x)))
    branch = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(stem))
    residual = keras.layers.ReLU()(keras.layers.Add()([stem, branch]))
    merged = keras.layers.Concatenate()([residual, stem])
    pooled = keras.layers.GlobalAveragePooling2D()(merged)
    model = keras.Model(x, keras.layers.Dense(5, activation="softmax")(pooled), name="residual_cnn")
    _randomize_batchnorm(model)
    return model


def two_input_two_output():
    import keras

    image = keras.Input((8, 8, 1), name="image")
    features = keras.Input((6,), name="features")
    conv = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    dense = keras.layers.Dense(4, activation="tanh")(features)
    joined = keras.layers.Concatenate()([conv, dense])
    label = keras.layers.Dense(3, activation="softmax", name="label")(joined)
    score = keras.layers.Dense(1, name="score")(keras.layers.Add()([conv, dense]))
    return keras.Model([image, features], [label, score], name="two_in_two_out")


def nested_and_shared():
    """A nested Functional and a nested Sequential, each called twice, and a shared Dense."""
    import keras

    inner_in = keras.Input((4,))
    inner_functional = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in),
                                   name="inner_functional")
    inner_sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="seq_dense")],
                                        name="inner_sequential")
    inner_sequential.trainable = False  # a frozen backbone
    shared = keras.layers.Dense(4, activation="relu", name="shared")
    x = keras.Input((4,), name="x")
    first = inner_sequential(inner_functional(shared(x)))
    second = shared(first)
    out = inner_sequential(inner_functional(second))
    return keras.Model(x, [out, inner_functional(x)], name="nested")


@pytest.mark.parametrize("build", [sequential_cnn, functional_residual_cnn, two_input_two_output],
                         ids=lambda f: f.__name__)
def test_translation_matches_and_quantizes(build, tmp_path):
    import keras
    import tf_keras

    keras.utils.set_random_seed(0)
    keras3_model = build()
    result = translator.translate(_save(keras3_model, tmp_path, build.__name__))

    print(f"{build.__name__}: max_abs_diff={result.max_abs_diff:.3g}")
    assert result.max_abs_diff <= TOLERANCE
    assert isinstance(result.model, tf_keras.Model)
    assert [layer.name for layer in result.model.layers if "input" not in layer.name] == \
        [layer.name for layer in keras3_model.layers if "input" not in layer.name]
    assert len(result.model.inputs) == len(keras3_model.inputs)
    assert len(result.model.outputs) == len(keras3_model.outputs)
    assert np.isfinite(_qat_one_step(result.model))


def test_nested_models_and_shared_layers(tmp_path):
    import keras
    import tf_keras

    keras.utils.set_random_seed(0)
    result = translator.translate(_save(nested_and_shared(), tmp_path, "nested"))
    assert result.max_abs_diff <= TOLERANCE
    nested = {layer.name: layer for layer in result.model.layers}
    assert isinstance(nested["inner_functional"], tf_keras.Model)
    assert isinstance(nested["inner_sequential"], tf_keras.Sequential)
    assert nested["inner_sequential"].trainable is False and nested["inner_functional"].trainable
    assert len(result.model.outputs) == 2
    assert any("nested Functional model 'inner_functional'" in note for note in result.notes)


# --- every allow-listed layer class, translated alone ----------------------------------------

def _layer_zoo():
    """class name -> (input shape, input dtype, layer factory)."""
    import keras

    L = keras.layers
    image, seq, vec = (8, 8, 3), (10, 3), (6,)
    return {
        "Dense": (vec, "float32", lambda: L.Dense(4, activation="relu", kernel_regularizer="l2")),
        "Conv1D": (seq, "float32", lambda: L.Conv1D(4, 3, dilation_rate=2)),
        "Conv2D": (image, "float32", lambda: L.Conv2D(4, 3, strides=2, padding="same", groups=1)),
        "Conv3D": ((4, 4, 4, 2), "float32", lambda: L.Conv3D(3, 2)),
        "DepthwiseConv1D": (seq, "float32", lambda: L.DepthwiseConv1D(3, depth_multiplier=2)),
        "DepthwiseConv2D": (image, "float32", lambda: L.DepthwiseConv2D(3, depth_multiplier=2)),
        "SeparableConv1D": (seq, "float32", lambda: L.SeparableConv1D(4, 3)),
        "SeparableConv2D": (image, "float32", lambda: L.SeparableConv2D(4, 3, padding="same")),
        "Conv1DTranspose": (seq, "float32", lambda: L.Conv1DTranspose(4, 3, strides=2)),
        "Conv2DTranspose": (image, "float32", lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same")),
        "BatchNormalization": (image, "float32", lambda: L.BatchNormalization(epsilon=1e-3)),
        "LayerNormalization": (seq, "float32", lambda: L.LayerNormalization()),
        "Embedding": ((5,), "int32", lambda: L.Embedding(12, 4)),
        "PReLU": (image, "float32", lambda: L.PReLU(shared_axes=[1, 2])),
        "ReLU": (image, "float32", lambda: L.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2)),
        "LeakyReLU": (image, "float32", lambda: L.LeakyReLU(negative_slope=0.25)),
        "ELU": (image, "float32", lambda: L.ELU(alpha=0.7)),
        "Softmax": (seq, "float32", lambda: L.Softmax(axis=1)),
        "Activation": (image, "float32", lambda: L.Activation("swish")),
        "Dropout": (image, "float32", lambda: L.Dropout(0.5)),
        "SpatialDropout1D": (seq, "float32", lambda: L.SpatialDropout1D(0.5)),
        "SpatialDropout2D": (image, "float32", lambda: L.SpatialDropout2D(0.5)),
        "GaussianNoise": (image, "float32", lambda: L.GaussianNoise(0.3)),
        "GaussianDropout": (image, "float32", lambda: L.GaussianDropout(0.3)),
        "ActivityRegularization": (image, "float32", lambda: L.ActivityRegularization(l1=0.1)),
        "Flatten": (image, "float32", lambda: L.Flatten()),
        "Reshape": (image, "float32", lambda: L.Reshape((16, 12))),
        "Permute": (image, "float32", lambda: L.Permute((3, 1, 2))),
        "RepeatVector": (vec, "float32", lambda: L.RepeatVector(3)),
        "ZeroPadding1D": (seq, "float32", lambda: L.ZeroPadding1D((1, 2))),
        "ZeroPadding2D": (image, "float32", lambda: L.ZeroPadding2D(((1, 0), (2, 1)))),
        "Cropping1D": (seq, "float32", lambda: L.Cropping1D((1, 2))),
        "Cropping2D": (image, "float32", lambda: L.Cropping2D(((1, 0), (2, 1)))),
        "UpSampling1D": (seq, "float32", lambda: L.UpSampling1D(2)),
        "UpSampling2D": (image, "float32", lambda: L.UpSampling2D(2, interpolation="bilinear")),
        "MaxPooling1D": (seq, "float32", lambda: L.MaxPooling1D(2)),
        "MaxPooling2D": (image, "float32", lambda: L.MaxPooling2D(3, strides=2, padding="same")),
        "AveragePooling1D": (seq, "float32", lambda: L.AveragePooling1D(2)),
        "AveragePooling2D": (image, "float32", lambda: L.AveragePooling2D(2, padding="valid")),
        "GlobalAveragePooling1D": (seq, "float32", lambda: L.GlobalAveragePooling1D()),
        "GlobalAveragePooling2D": (image, "float32", lambda: L.GlobalAveragePooling2D(keepdims=True)),
        "GlobalMaxPooling1D": (seq, "float32", lambda: L.GlobalMaxPooling1D()),
        "GlobalMaxPooling2D": (image, "float32", lambda: L.GlobalMaxPooling2D()),
        "Rescaling": (image, "float32", lambda: L.Rescaling(1 / 127.5, offset=-1.0)),
        "Normalization": (image, "float32",
                          lambda: L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 4.0])),
    }


MERGE_LAYERS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")


def test_every_allow_listed_layer_has_a_test_model():
    tested = set(_layer_zoo()) | set(MERGE_LAYERS) | {"InputLayer"}
    assert tested == set(translator.TRANSLATABLE_LAYERS)


def _single_layer_model(class_name: str):
    import keras

    shape, dtype, make_layer = _layer_zoo()[class_name]
    x = keras.Input(shape, dtype=dtype)
    return keras.Model(x, make_layer()(x), name=f"only_{class_name.lower()}")


def _perturb_weights(model) -> None:
    """Non-default values for every weight (BatchNorm statistics, PReLU slopes, ...)."""
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])


def test_every_allow_listed_layer_translates(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    diffs = {}
    for class_name in sorted(_layer_zoo()):
        model = _single_layer_model(class_name)
        _perturb_weights(model)
        diffs[class_name] = translator.translate(_save(model, tmp_path, class_name)).max_abs_diff
    assert max(diffs.values()) <= TOLERANCE, diffs


def test_merge_layers_translate(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    a, b = keras.Input((4, 3), name="a"), keras.Input((4, 3), name="b")
    outputs = [getattr(keras.layers, name)()([a, b]) for name in MERGE_LAYERS]
    result = translator.translate(_save(keras.Model([a, b], outputs), tmp_path, "merges"))
    assert len(result.model.outputs) == len(MERGE_LAYERS)
    assert result.max_abs_diff <= TOLERANCE


def test_every_same_meaning_activation_translates(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    names = sorted(translator.SAME_ACTIVATIONS)
    outputs = [keras.layers.Dense(3, activation=name, name=f"dense_{name}")(x) for name in names]
    result = translator.translate(_save(keras.Model(x, outputs), tmp_path, "activations"))
    assert len(result.model.outputs) == len(names)
    assert result.max_abs_diff <= TOLERANCE


def test_an_adapted_normalization_layer_keeps_its_statistics(tmp_path):
    import keras

    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(4).normal(3.0, 2.0, (64, 5)).astype("float32"))
    x = keras.Input((5,))
    result = translator.translate(_save(keras.Model(x, norm(x)), tmp_path, "adapted"))
    assert result.max_abs_diff <= TOLERANCE
    mean = result.model.layers[-1].get_weights()[0]
    assert np.allclose(mean, norm.get_weights()[0]) and abs(float(np.mean(mean)) - 3.0) < 1.0


# --- reading archives (pure Python) ----------------------------------------------------------

def test_reading_an_archive_gives_typed_data_without_importing_tensorflow(tmp_path):
    import keras

    path = _save(functional_residual_cnn(), tmp_path, "residual")
    code = ("import sys; from qat_harness.build import keras3 as t\n"
            f"a = t.read_keras_archive({str(path)!r}); t.check_translatable(a)\n"
            "print(a.keras_version, a.is_keras3, a.model_class, [l.class_name for l in a.layers][:3])\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr[-800:]
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == f"{keras.__version__} True Functional ['InputLayer', 'Conv2D', 'BatchNormalization']"
    assert second == "[]"

    archive = translator.read_keras_archive(path)
    assert archive.layers[0].name == "image" and archive.layers[1].module == "keras.layers"


# --- refusals --------------------------------------------------------------------------------

def _refusal(path) -> str:
    with pytest.raises(UsageError) as caught:
        translator.check_translatable(translator.read_keras_archive(path))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_lambda_layer_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.Lambda(lambda t: t * 2, name="lambda_1")])
    assert _refusal(_save(model, tmp_path, "my")) == (
        "my.keras: layer 'lambda_1' (Lambda) cannot be translated to tf_keras: Lambda layers "
        "carry Python code; give the model as module:function instead")


def test_a_custom_registered_layer_is_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="my_pkg")
    class MyBlock(keras.layers.Layer):
        def call(self, x):
            return x * 2

    x = keras.Input((4,))
    model = keras.Model(x, MyBlock(name="block")(keras.layers.Dense(4)(x)))
    message = _refusal(_save(model, tmp_path, "custom"))
    assert message.startswith("custom.keras: layer 'block' (my_pkg>MyBlock) cannot be translated")
    assert "custom class" in message


def test_a_custom_layer_inside_a_nested_model_is_named_by_its_path(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="my_pkg")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inner = keras.Sequential([keras.Input((4,)), Doubler(name="double")], name="inner")
    x = keras.Input((4,))
    message = _refusal(_save(keras.Model(x, inner(x)), tmp_path, "nested_custom"))
    assert "layer 'inner/double' (my_pkg>Doubler)" in message


def test_a_keras_ops_call_is_refused(tmp_path):
    import keras

    x = keras.Input((4,))
    message = _refusal(_save(keras.Model(x, keras.ops.relu(x) * 2.0), tmp_path, "ops"))
    assert "keras.ops operation" in message and "'relu'" in message


def test_an_activation_that_differs_in_tf_keras_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="hard_sigmoid", name="hs")])
    assert "layer 'hs' (Dense)" in _refusal(_save(model, tmp_path, "hard_sigmoid"))


def test_a_subclassed_model_is_refused(tmp_path):
    import keras

    class MyModel(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = MyModel()
    model(np.zeros((1, 4), "float32"))
    message = _refusal(_save(model, tmp_path, "sub"))
    assert message.startswith("sub.keras: the model is a subclassed Keras model (MyModel)")
    assert "only Sequential and Functional" in message


def test_a_corrupt_zip_is_refused(tmp_path):
    good = _save(sequential_cnn(), tmp_path, "good")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    not_zip = tmp_path / "text.keras"
    not_zip.write_text("not a model")
    for path in (corrupt, not_zip):
        with pytest.raises(UsageError, match=rf"^{path.name}: (not a \.keras file|corrupt)"):
            translator.read_keras_archive(path)


def test_a_zip_without_config_json_is_refused(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    with pytest.raises(UsageError, match=r"^empty\.keras: not a Keras model archive \(no config\.json"):
        translator.read_keras_archive(path)


def test_an_oversized_config_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", " " * 4096 + "{}")
    monkeypatch.setattr(translator, "MAX_JSON_MEMBER_BYTES", 1024)
    with pytest.raises(UsageError, match=r"'config\.json' declares 4,098 bytes unpacked .*limit 1,024"):
        translator.read_keras_archive(path)


def test_a_tf_keras_archive_is_not_translated(tmp_path):
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
    path = tmp_path / "legacy.keras"
    model.save(path)
    archive = translator.read_keras_archive(path)
    assert archive.is_keras3 is False and archive.keras_version == tf_keras.__version__
    assert "not Keras 3: there is nothing to translate; the harness loads it with tf_keras directly" \
        in _refusal(path)


def test_outputs_beyond_the_tolerance_are_an_error(tmp_path):
    path = _save(two_input_two_output(), tmp_path, "strict")
    with pytest.raises(UsageError, match=r"^strict\.keras: the tf_keras translation differs .* by "):
        translator.translate(path, tolerance=-1.0)  # no real model differs: force the check


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_a_keras3_only_option_in_use_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4, 3)), keras.layers.LayerNormalization(rms_scaling=True, name="rms")])
    path = _save(model, tmp_path, "rms")
    _ = translator.read_keras_archive(path)  # passes the pure-Python check: an option, not a class
    with pytest.raises(UsageError, match=r"^rms\.keras: layer 'rms' \(LayerNormalization\) cannot be "
                                         r"translated to tf_keras: Keras 3 option rms_scaling=True"):
        translator.translate(path)
