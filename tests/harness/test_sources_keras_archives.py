"""Resolving ``--models``: a tf_keras ``.keras`` archive whose config would run or import code
is refused in one line by the parent, which reads the archive as data and imports neither
TensorFlow nor Keras (the builder child checks again before loading)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from qat_harness import sources
from qat_harness.core.errors import UsageError


def tf_keras_archive(path, inner_layer: dict, **root) -> str:
    """A tf_keras-written archive (metadata says 2.21) whose TimeDistributed wraps ``inner_layer``."""
    config = {"module": "tf_keras.src.engine.sequential", "class_name": "Sequential", **root,
              "config": {"name": "seq", "layers": [
                  {"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"name": "in", "batch_input_shape": [None, 4, 3]}},
                  {"module": "keras.layers", "class_name": "TimeDistributed",
                   "config": {"name": "td", "layer": inner_layer}}]}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    return str(path)


LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
          "config": {"name": "times_two", "function": ["4wEAAAAAAAAA", None, None],
                     "function_type": "lambda"}}
DENSE_WITH_FOREIGN_INITIALIZER = {
    "module": "keras.layers", "class_name": "Dense", "registered_name": None,
    "config": {"name": "dense", "units": 2, "kernel_initializer": {
        "module": "antigravity", "class_name": "Fly", "config": {}, "registered_name": None}}}


@pytest.mark.parametrize("inner,words", [
    (LAMBDA, "layer 'td/times_two' is a Lambda layer"),
    (DENSE_WITH_FOREIGN_INITIALIZER, "layer 'td/dense' names module 'antigravity'"),
])
def test_code_nested_in_a_tf_keras_archive_is_refused_while_resolving(tmp_path, inner, words):
    path = tf_keras_archive(tmp_path / "model.keras", inner)
    with pytest.raises(UsageError) as caught:
        sources.parse_entry(path)
    message = str(caught.value)
    assert message.startswith(f"model.keras: {words}") and "module:function" in message
    assert "\n" not in message


def test_the_check_imports_neither_tensorflow_nor_keras(tmp_path):
    path = tf_keras_archive(tmp_path / "model.keras", LAMBDA)
    code = ("import sys\nfrom qat_harness import sources\nfrom qat_harness.core.errors import UsageError\n"
            f"try:\n    sources.parse_entry({path!r})\nexcept UsageError as exc:\n    print(exc)\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'antigravity') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-800:]
    refusal, imported = out.stdout.strip().splitlines()[-2:]
    assert "is a Lambda layer" in refusal and imported == "[]"


def test_a_clean_tf_keras_archive_resolves_to_a_keras_file(tmp_path):
    dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "dense", "units": 2}}
    source = sources.parse_entry(tf_keras_archive(tmp_path / "ok.keras", dense))
    assert source.kind is sources.SourceKind.KERAS_FILE and source.label == "ok.keras"
