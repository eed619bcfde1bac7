"""Shared fixtures: small real .tflite models made on the spot, and an isolated artifact
cache per test session (so a developer's own cache never makes a test pass)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from qat_harness.core import keras2

keras2.enter()  # the suite trains and converts in-process too


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("artifact-cache")
    old = os.environ.get("QAT_HARNESS_CACHE")
    os.environ["QAT_HARNESS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("QAT_HARNESS_CACHE", None)
    else:
        os.environ["QAT_HARNESS_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny conv classifier as float32 and full-int8 .tflite files, with its calibration
    inputs: {'float': path, 'int8': path, 'x': float inputs}."""
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    folder = tmp_path_factory.mktemp("tiny")
    paths = {"float": folder / "float.tflite", "int8": folder / "int8.tflite"}
    paths["float"].write_bytes(to_tflite(model, full_int8=False))
    paths["int8"].write_bytes(to_tflite(model, full_int8=True, calibration=x))
    return {**paths, "x": x}
