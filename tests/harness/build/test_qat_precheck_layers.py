"""The parent's early refusal of Keras 3 layers tfmot cannot quantize (harness/build/qat_precheck.py):
it names every such layer with advice a user of a .keras file can follow, without TensorFlow,
and it agrees with tfmot's own ``quantize_model`` on every model below (what it refuses,
tfmot refuses; what it lets through, tfmot quantizes).

conftest.py selected Keras 2, so `tf_keras` is Keras 2 here while `import keras` is Keras 3."""
from __future__ import annotations

import subprocess
import sys

import pytest

from qat_harness.build import keras3, qat_precheck
from qat_harness.build.artifacts import NotBuildable

pytest_plugins = ["user_models"]

IMAGE = (8, 8, 3)


def _image_model(*layers, name: str):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(IMAGE, name="image")
    y = x
    for layer in layers:
        y = layer(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax", name="scores")(y), name=name)


def _models():
    """name -> (Keras 3 model factory, the layer the precheck must name, or None)."""
    import keras

    L = keras.layers
    conv = lambda activation=None: L.Conv2D(4, 3, padding="same", activation=activation, name="conv")  # noqa: E731

    def nested():
        inner_in = keras.Input(IMAGE)
        inner = keras.Model(inner_in, L.Conv2D(4, 1)(inner_in), name="backbone")
        return _image_model(inner, name="nested")

    def sequence(layer):
        x = keras.Input((8, 3))
        y = L.GlobalAveragePooling1D()(layer(x))
        return keras.Model(x, L.Dense(3, activation="softmax")(y))

    def flat_dense_bn():
        x = keras.Input((6,))
        y = L.BatchNormalization(name="dense_bn")(L.Dense(5, name="fc")(x))
        return keras.Model(x, L.Dense(3, activation="softmax")(L.ReLU()(y)))

    return {
        "batchnorm_after_input": (lambda: _image_model(L.BatchNormalization(name="lone_bn"), conv(), name="a"),
                                  "lone_bn"),
        "batchnorm_after_relu_conv": (lambda: _image_model(conv("relu"), L.BatchNormalization(name="bn"), name="b"),
                                      "bn"),
        "batchnorm_after_relu_layer": (lambda: _image_model(conv(), L.ReLU(), L.BatchNormalization(name="bn"),
                                                            name="c"), "bn"),
        "batchnorm_folded_into_conv": (lambda: _image_model(conv(), L.BatchNormalization(), L.ReLU(), name="d"),
                                       None),
        "batchnorm_folded_into_dense": (flat_dense_bn, None),
        "rescaling_in_the_middle": (lambda: _image_model(conv(), L.Rescaling(0.5, name="mid_scale"), name="e"),
                                    "mid_scale"),
        "normalization_in_the_middle": (lambda: _image_model(
            conv(), L.Normalization(mean=[0.0] * 4, variance=[2.0] * 4, name="mid_norm"), name="f"), "mid_norm"),
        "preprocessing_at_the_start": (lambda: _image_model(
            L.Rescaling(1 / 255.0), L.Normalization(mean=[0.5] * 3, variance=[0.25] * 3), conv(), name="g"), None),
        "relu6_activation_argument": (lambda: _image_model(conv("relu6"), name="h"), "conv"),
        "silu_activation_argument": (lambda: _image_model(conv("silu"), name="i"), None),
        "elu_activation_layer": (lambda: _image_model(conv(), L.Activation("elu", name="elu"), name="j"), "elu"),
        "conv1d": (lambda: sequence(L.Conv1D(4, 3, name="conv1d")), "conv1d"),
        "nested_model": (nested, "backbone"),
    }


def _save(model, tmp_path, name: str):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


def _tfmot_refuses(path) -> str | None:
    import tensorflow_model_optimization as tfmot

    try:
        tfmot.quantization.keras.quantize_model(keras3.translate(path).model)
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    return None


def test_the_precheck_agrees_with_tfmot_on_every_model(tmp_path):
    disagree = {}
    for name, (make, layer) in _models().items():
        path = _save(make(), tmp_path, name)
        named = [u.path for u in qat_precheck.unquantizable_layers(keras3.read_keras_archive(path))]
        assert named == ([layer] if layer else []), (name, named)
        refusal = _tfmot_refuses(path)
        if (refusal is not None) != bool(named):
            disagree[name] = (named, refusal)
    assert not disagree, disagree


def test_a_standalone_batchnorm_is_refused_with_advice_for_a_keras_file(tmp_path):
    import keras

    path = _save(_image_model(keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.BatchNormalization(name="lone_bn"), name="k"), tmp_path, "lone_bn")
    with pytest.raises(NotBuildable) as caught:
        qat_precheck.refuse_unbuildable(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("lone_bn.keras: ")
    assert "'lone_bn' (BatchNormalization)" in message and "follows 'conv' (Conv2D)" in message
    assert "move it right after" in message and "or remove it" in message and "module:function" in message


def test_an_untranslatable_layer_is_a_not_buildable_model(user_models):
    with pytest.raises(NotBuildable, match="'times_two' \\(Lambda\\) cannot be translated"):
        qat_precheck.refuse_unbuildable(user_models.keras3_untranslatable())


def test_the_precheck_runs_without_tensorflow(tmp_path):
    import keras

    path = _save(_image_model(keras.layers.BatchNormalization(name="lone_bn"), name="m"), tmp_path, "no_tf")
    code = ("import sys; from pathlib import Path; from qat_harness.build import qat_precheck\n"
            f"try:\n    qat_precheck.refuse_unbuildable(Path({str(path)!r}))\n"
            "except Exception as exc:\n    print(type(exc).__name__)\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.split() == ["NotBuildable", "[]"]


TABLES_CHECK = """
import tf_keras
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry import (
    Default8BitActivationQuantizeConfig,
)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
    QuantizeAwareActivation,
)
from qat_harness.build import keras3, qat_precheck, tfmot_registry

assert set(tfmot_registry.registry_table()) == qat_precheck.REGISTRY_LAYERS
single = {t["transform"]: t["pattern"] for t in tfmot_registry.layout_transforms() if not t["pattern"].inputs}
assert qat_precheck.REWRITTEN_LAYERS <= {p.class_name for p in single.values()}
assert qat_precheck.LAYER_ACTIVATIONS == (QuantizeAwareActivation._PRE_QUANT_ACTIVATIONS
                                          | QuantizeAwareActivation._POST_QUANT_ACTIVATIONS)
config = Default8BitActivationQuantizeConfig()
accepted = set()
for name in keras3.SAME_ACTIVATIONS:
    try:
        config.get_output_quantizers(tf_keras.layers.Activation(name))
        accepted.add(qat_precheck.TF_KERAS_ACTIVATION_NAMES.get(name, name))
    except ValueError:
        pass
assert accepted == qat_precheck.ACTIVATION_LAYER_ACTIVATIONS, accepted
renamed = {n: tf_keras.activations.get(n).__name__ for n in keras3.SAME_ACTIVATIONS}
assert {k: v for k, v in renamed.items() if k != v} == qat_precheck.TF_KERAS_ACTIVATION_NAMES, renamed
print("tables match")
"""


def test_the_tables_are_tfmots_own():
    """The precheck's tables, read from the installed tfmot (so an upgrade that changes them fails
    here), in a Keras 2 process of their own as the harness's builder is: tfmot imported earlier in
    this process, under another Keras, would answer for that one."""
    import os

    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    out = subprocess.run([sys.executable, "-c", TABLES_CHECK], capture_output=True, text=True, timeout=300,
                         check=False, env=env)
    assert out.returncode == 0 and "tables match" in out.stdout, out.stderr[-1500:]
