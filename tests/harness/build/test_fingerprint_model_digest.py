"""build.fingerprint: the digest that keys a user's model follows its architecture, its weights
and the code of its custom classes, and nothing that differs between two loads of one model."""
from __future__ import annotations

import importlib
import sys

import pytest

from qat_harness.build.fingerprint import model_digest


def _model(units: int = 3, seed: int = 0, head=None):
    import tf_keras

    tf_keras.backend.clear_session()  # layer names count up per process; a child builds one model
    tf_keras.utils.set_random_seed(seed)
    inputs = tf_keras.Input((4,))
    x = tf_keras.layers.Dense(units)(inputs)
    if head is not None:
        x = head(x)
    return tf_keras.Model(inputs, x)


def test_same_model_same_digest_and_each_part_changes_it():
    base = model_digest(_model())
    assert model_digest(_model()) == base                 # rebuilt: same config, weights
    assert model_digest(_model(units=7)) != base          # architecture
    assert model_digest(_model(seed=1)) != base           # weights
    twin = _model()
    twin.set_weights([w * 0 for w in twin.get_weights()])
    assert model_digest(twin) != base


CUSTOM = '''
import tf_keras


class Scale(tf_keras.layers.Layer):
    def call(self, x):
        return x * {factor}
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(factor: float):
        (tmp_path / "fingerprint_custom_layer.py").write_text(CUSTOM.format(factor=factor))
        sys.modules.pop("fingerprint_custom_layer", None)
        importlib.invalidate_caches()
        return importlib.import_module("fingerprint_custom_layer").Scale
    yield write
    sys.modules.pop("fingerprint_custom_layer", None)


def test_a_custom_layers_code_is_part_of_the_digest(custom_module):
    # config and weights are the same; only what call() computes differs
    twice = model_digest(_model(head=custom_module(2.0)()))
    thrice = model_digest(_model(head=custom_module(3.0)()))
    assert twice != thrice
    assert model_digest(_model(head=custom_module(2.0)())) == twice
