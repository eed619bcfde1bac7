"""digits_cnn with one layer made to quantize badly on purpose, for the sensitivity tests and
benchmark: trained on scikit-learn's digits, then one channel of the last convolution's
output is made dead (its BatchNorm scale 0, shift -1: ReLU gives 0 for every input) and the
Dense layer that reads it (``SABOTAGED``) gets, on that dead input, weights a thousand times
its largest. The float model computes exactly what it did (the weights multiply 0), but
tfmot quantizes Dense weights per tensor: the outlier sets the scale, and every real weight
of the layer rounds to 0. A real pattern: a dead channel's weights, which no gradient ever
pulls back, left large.

Needs Keras 2 selected before TensorFlow loads (tests/conftest.py, benchmarks/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SABOTAGED = "dense"
OUTLIER_FACTOR = 1000.0


def sabotaged_digits(folder: Path, epochs: int = 6) -> tuple[Path, Path]:
    """(the model as a tf_keras .h5, the digits as an .npz of ``x`` and ``y``) in ``folder``."""
    import tf_keras as keras

    from qat_harness.models.datasets import digits
    from qat_harness.models.reference import digits_cnn

    data = digits(32)
    model = digits_cnn(32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    last_bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    gamma, beta, mean, var = last_bn.get_weights()
    gamma[0], beta[0] = 0.0, -1.0
    last_bn.set_weights([gamma, beta, mean, var])
    dense = model.get_layer(SABOTAGED)
    kernel, bias = dense.get_weights()
    signs = np.where(np.arange(kernel.shape[1]) % 2 == 0, 1.0, -1.0)
    kernel[0, :] = OUTLIER_FACTOR * np.abs(kernel).max() * signs
    dense.set_weights([kernel, bias])
    folder.mkdir(parents=True, exist_ok=True)
    model_path, data_path = folder / "sabotaged_digits.h5", folder / "digits.npz"
    model.save(model_path)
    x = np.concatenate([data.x_train, data.x_eval])
    y = np.concatenate([data.y_train, data.y_eval])
    np.savez(data_path, x=x, y=y)
    return model_path, data_path
