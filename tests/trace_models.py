"""Small digits models the trace tests share: 8x8 digit images (scikit-learn's, shipped with it)
and a classifier with one layer made to quantize badly on purpose."""
from __future__ import annotations

import numpy as np


def digits(n: int = 64) -> np.ndarray:
    from sklearn.datasets import load_digits
    return (load_digits().images[:n, :, :, None] / 16.0).astype(np.float32)


def outlier_classifier(keras):
    """A digits classifier whose 'outlier' layer has one enormous value per example (a bias of
    1000 on one of its 256 units): an int8 range that holds it crushes every other value, one
    that does not clips it."""
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inp)
    h = keras.layers.Flatten(name="flat")(h)
    outlier = keras.layers.Dense(256, name="outlier")
    h = outlier(h)
    k, b = outlier.get_weights()
    b[5] = 1000.0
    outlier.set_weights([k, b])
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(h), name="digits_outlier")
