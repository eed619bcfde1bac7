"""Float training and quantization-aware training (tfmot) of a reference model."""
from __future__ import annotations

import numpy as np

from qat_harness.core import keras2

keras2.enter()  # Keras 2 before TensorFlow loads (this module runs in harness children)
from qat_harness.core.errors import UsageError  # noqa: E402 - after keras2.enter(), on purpose


def check_supported_model(model) -> None:
    """QAT applies to Keras Sequential and Functional models only (claim M1-api)."""
    import tf_keras as keras

    if not isinstance(model, keras.Model):
        raise UsageError(f"{type(model).__name__} is not a tf_keras model (tfmot needs Keras 2: "
                         "build it with `import tf_keras as keras`)")
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UsageError(f"{type(model).__name__} is a subclassed Keras model: QAT supports "
                         "Sequential and Functional models only (claim M1-api)")


def _compile(model, lr: float, from_logits: bool = False) -> None:
    import tf_keras as keras

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                  metrics=["accuracy"])


def outputs_are_logits(model, x) -> bool:
    """Does a classifier end in scores rather than probabilities (a softmax)? Decides the
    fine-tuning loss of a user's model."""
    p = np.asarray(first_output(model.predict(x, verbose=0)))
    return not (p.min() >= 0 and p.max() <= 1 and np.allclose(p.sum(axis=-1), 1, atol=1e-3))


def first_output(pred):
    return pred[0] if isinstance(pred, list) else pred


def train_float(model, x, y, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    _compile(model, lr)
    hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return float(hist.history["accuracy"][-1])


def quantize(model):
    """Annotate and apply tfmot's default 8-bit QAT scheme to the whole model."""
    import tensorflow_model_optimization as tfmot

    check_supported_model(model)
    return tfmot.quantization.keras.quantize_model(model)


def fine_tune(model, x, y, epochs: int, batch_size: int, lr: float, seed: int,
              from_logits: bool = False) -> float:
    """Fine-tune ``model`` in place (Adam at ``lr``, seeded); its last training accuracy."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    _compile(model, lr, from_logits)
    hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return float(hist.history["accuracy"][-1])


def fine_tune_qat(qat_model, x, y, epochs: int, batch_size: int, lr: float, seed: int,
                  from_logits: bool = False) -> float:
    return fine_tune(qat_model, x, y, epochs, batch_size, lr, seed, from_logits)


def copy_model(model):
    """An independent float copy (same architecture and weights) of a Functional or
    Sequential model: the control arm fine-tunes it while the float model stays as trained."""
    import tf_keras as keras

    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def calibrate_qat_ranges(qat_model, x, batch_size: int = 8) -> None:
    """Set the QAT fake-quant ranges from data without changing any trainable weight: one
    epoch of training-mode passes with a zero learning rate (the moving-average range
    trackers, and BatchNorm's moving statistics, update; the weights don't). Used only for
    untrained models, where there is nothing to preserve."""
    import tf_keras as keras

    y = np.argmax(qat_model.predict(x, verbose=0, batch_size=batch_size), axis=-1)
    qat_model.compile(optimizer=keras.optimizers.SGD(0.0),
                      loss=keras.losses.SparseCategoricalCrossentropy())
    qat_model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)


def accuracy(model, x, y, batch_size: int = 64) -> float:
    pred = np.argmax(first_output(model.predict(x, verbose=0, batch_size=batch_size)), axis=-1)
    return float(np.mean(pred == y))
