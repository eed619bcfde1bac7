"""Builders of the reference models. All are tf_keras (Keras 2) models: tfmot quantizes
nothing else."""
from __future__ import annotations

from qat_harness.core import keras2

keras2.enter()  # Keras 2 before TensorFlow loads (this module runs in harness children)


def digits_cnn(input_size: int = 32, n_classes: int = 10, seed: int = 0):
    """A small CNN that exercises what the QAT guide talks about: Conv2D+BN+ReLU and
    DepthwiseConv2D+BN (both must fold, claim M3), pooling and a Dense head.

    BatchNorm momentum is 0.9, not Keras' 0.99: with the default and a few hundred steps the
    moving statistics never catch up with the batch statistics, and the model scored 22.7% on
    the test split while 99.8% on train (measured)."""
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(128, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(128, activation="relu")(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="digits_cnn")


def application(arch: str, input_size: int, weights: str | None, n_classes: int = 1000):
    """A tf_keras.applications model. ``weights`` is None (random init) or the path of a
    user-supplied weights file; nothing is downloaded."""
    import tf_keras as keras

    builders = {
        "mobilenet_v1": keras.applications.MobileNet,
        "mobilenet_v2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
    }
    keras.utils.set_random_seed(0)
    model = builders[arch](input_shape=(input_size, input_size, 3), weights=None,
                           classes=n_classes)
    if weights:
        load_weights_safely(model, weights)
    return model


def load_weights_safely(model, path: str) -> None:
    """Load a weights file into an already-built model. Only weights (HDF5 / TF checkpoint) are
    read: no architecture is deserialised, so no user code or pickle is ever executed."""
    from pathlib import Path

    from qat_harness.core.errors import UsageError

    p = Path(path)
    if not (p.exists() or Path(str(p) + ".index").exists()):
        raise UsageError(f"weights file not found: {path}")
    if p.suffix == ".keras":
        raise UsageError(f"{path}: give a weights file (.h5 / .weights.h5 or a TF checkpoint), "
                         "not a whole saved model")
    try:
        model.load_weights(str(p))
    except Exception as exc:  # noqa: BLE001 - any mismatch is the user's file, not our bug
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"weights file {path} does not match {model.name}: {first[:300]}") from None
