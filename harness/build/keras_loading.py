"""Child side: a user's model as a tf_keras model, from a file or a factory.

- ``.h5`` full models, ``.keras`` archives written by tf_keras and SavedModel folders are
  loaded without running or importing code from the file: their configs are read first as
  data (HDF5 attributes, the archive's config.json, the SavedModel's keras metadata) and
  ``build.config_guard`` refuses, at any depth, a Lambda or lambda (Python bytecode in the
  file), a ``module`` outside Keras, a registered custom object and a layer class that is not
  a tf_keras built-in, in one line; then ``load_model(..., safe_mode=True)`` runs inside
  tf_keras's safe-mode scope;
- ``module:function`` imports the user's module (from the folder they run the harness in)
  and calls the function: this runs their code, by their request;
- a Keras 3 ``.keras`` is translated by ``build.keras3``.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from qat_harness.build import config_guard
from qat_harness.build.keras3_preprocessing import FloatPreprocessing
from qat_harness.core import keras2
from qat_harness.core.errors import UsageError, one_line

#: set by the parent to the user's working folder when a factory is to be imported
USER_DIR_ENV = "QAT_HARNESS_USER_PATH"


@dataclasses.dataclass
class LoadedModel:
    model: Any  # a tf_keras.Model
    dataset: dict | None = None  # what a factory returned with the model
    notes: list[str] = dataclasses.field(default_factory=list)
    # a Keras 3 model's leading preprocessing, left out of ``model``: the data goes through it first
    float_preprocessing: FloatPreprocessing = FloatPreprocessing()


def load_model(source: dict):
    """(tf_keras model, dataset or None, notes) for a builder-child source request."""
    loaded = load(source)
    return loaded.model, loaded.dataset, loaded.notes


def load(source: dict) -> LoadedModel:
    """A builder-child source request's model, with what came with it."""
    keras2.enter()
    kind, path = source["kind"], Path(source["path"]) if source.get("path") else None
    if kind == "keras_file":
        return LoadedModel(load_keras_file(path))
    if kind == "keras3_file":
        from qat_harness.build import keras3

        translation = keras3.translate(path)
        notes = [f"translated from Keras 3: {translation.n_layers} layers, outputs agree within "
                 f"{translation.max_abs_diff:.2g} (max abs difference on a seeded batch)",
                 *translation.notes]
        return LoadedModel(translation.model, None, notes, translation.preprocessing)
    if kind == "factory":
        return LoadedModel(*call_factory(source["ref"]))
    raise UsageError(f"unknown model source kind {kind!r}")


# -- files ----------------------------------------------------------------------------------------
def load_keras_file(path: Path):
    import tf_keras as keras

    # tf_keras's public API has no safe-mode scope; the package is pinned (pyproject.toml)
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    refuse_code_in_config(_stored_config(path), path.name)
    try:
        # The legacy .h5 and SavedModel loaders do not pass safe_mode on to the layers they
        # rebuild (a Lambda's bytecode ran): the scope makes every nested rebuild safe.
        with SafeModeScope(True):
            model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's file
        raise UsageError(f"{path.name}: tf_keras cannot load it: {one_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"{path.name}: tf_keras loaded a {type(model).__name__}, not a Keras model")
    return model


def _stored_config(path: Path) -> dict | list:
    """The model config stored in the file, read as data: the model's entry, or for a
    SavedModel the entries of its Keras objects."""
    if path.is_dir():
        return _saved_model_config(path)
    if path.suffix.lower() == ".keras":
        from qat_harness.build import keras3

        return keras3.read_keras_archive(path).config  # members and sizes checked too
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except (OSError, ValueError) as exc:  # not HDF5, truncated, an unreadable attribute
        raise UsageError(f"{path.name}: not a readable HDF5 model ({one_line(exc)})") from None
    if raw is None:
        raise UsageError(f"{path.name} holds weights only, not a model: give the full model "
                         "(model.save('model.h5')), or use the registry model with --weights")
    return _json(path.name, "model_config", raw.decode() if isinstance(raw, bytes) else raw)


def _json(file: str, what: str, text):
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UsageError(f"{file}: its {what} is not a JSON model config ({one_line(exc)})") from None


def _saved_model_config(folder: Path) -> list:
    metadata = folder / "keras_metadata.pb"
    if not metadata.is_file():
        raise UsageError(f"{folder.name} is a SavedModel without Keras metadata: the harness needs "
                         "a Keras model to apply QAT (save it with tf_keras model.save(folder))")
    from google.protobuf.message import DecodeError
    from tf_keras.protobuf import saved_metadata_pb2

    meta = saved_metadata_pb2.SavedMetadata()
    try:
        meta.ParseFromString(metadata.read_bytes())
    except DecodeError as exc:
        raise UsageError(f"{folder.name}: keras_metadata.pb is not Keras metadata ({one_line(exc)})") from None
    layers, others = [], []
    for node in meta.nodes:
        entry = _json(folder.name, f"metadata of {node.node_path!r}", node.metadata)
        (others if node.identifier == "_tf_keras_metric" else layers).append(entry)
    if not layers:  # tf_keras would fall back to TensorFlow's own loader: no Keras model
        raise UsageError(f"{folder.name}: its keras_metadata.pb describes no Keras model")
    # every node is checked; metrics are Keras objects but not layers
    return [*layers, {"metrics": others}]


def refuse_code_in_config(config: dict | list, where: str) -> None:
    """Anything that loading would run or import (a Lambda, a lambda, a module outside Keras,
    a registered custom object, a layer class tf_keras does not know), wherever it is nested,
    is refused in one line naming the layer."""
    found = config_guard.find_code(config, layer_classes=_tf_keras_layer_classes())
    if found is not None:
        raise UsageError(found.message(where))


def _tf_keras_layer_classes() -> frozenset[str]:
    import inspect

    import tf_keras as keras

    return frozenset(name for name, value in vars(keras.layers).items()
                     if inspect.isclass(value) and issubclass(value, keras.layers.Layer))


# -- factories ------------------------------------------------------------------------------------
def call_user_function(ref: str, error: type[Exception] = UsageError):
    """Import the module of ``module:function`` and call the function with no argument: the
    user's own code, run at the user's request. Returns ``(function, what it returned)``; any
    failure is one line, raised as ``error``."""
    module_name, _, func_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module, by the user's request
        raise error(f"{ref}: cannot import {module_name}: {one_line(exc)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise error(f"{ref}: {module_name} has no function {func_name}")
    try:
        return func, func()
    except Exception as exc:  # noqa: BLE001
        raise error(f"{ref} raised {one_line(exc)}") from None


def call_factory(ref: str):
    """Import ``module`` and call ``function()``: a tf_keras model, or (model, dataset) where
    the dataset is a dict with ``x`` (and optionally ``y``) arrays."""
    import tf_keras as keras

    user_dir = os.environ.get(USER_DIR_ENV)
    if user_dir and user_dir not in sys.path:
        sys.path.append(user_dir)  # after the standard library: a json.py there shadows nothing
    _, returned = call_user_function(ref)
    model, dataset = (returned if isinstance(returned, tuple) and len(returned) == 2 else (returned, None))
    if not isinstance(model, keras.Model):
        raise UsageError(f"{ref} returned {type(model).__name__}, not a tf_keras model "
                         "(build it with `import tf_keras as keras`)")
    if dataset is not None and not (isinstance(dataset, dict) and "x" in dataset):
        raise UsageError(f"{ref}: the dataset it returns must be a dict with an 'x' array (and 'y')")
    origin = getattr(sys.modules.get(ref.partition(":")[0]), "__file__", None)
    notes = [f"built by {ref} ({origin})"]
    return model, dataset, notes


def signature(model) -> dict[str, Any]:
    """Input and output shapes and dtypes, and the layer classes, of a tf_keras model."""
    def spec(tensors):
        return [{"shape": [None if d is None else int(d) for d in t.shape], "dtype": t.dtype.name}
                for t in tensors]
    classes = sorted({type(layer).__name__ for layer in model.submodules
                      if hasattr(layer, "get_config")})
    return {"inputs": spec(model.inputs), "outputs": spec(model.outputs), "layer_classes": classes,
            "input_names": list(getattr(model, "input_names", []) or []),
            "n_params": int(model.count_params())}
