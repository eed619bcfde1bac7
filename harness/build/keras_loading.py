"""Child side: a user's model as a tf_keras model, from a file or a factory.

- ``.h5`` full models, ``.keras`` archives written by tf_keras and SavedModel folders are
  loaded without running code from the file: their layer configs are read first (HDF5
  attributes, the archive's config.json, the SavedModel's keras metadata) and a Lambda layer
  (Python bytecode in the file) or a class that is not a tf_keras built-in is refused in one
  line, before ``load_model(..., safe_mode=True)`` is called;
- ``module:function`` imports the user's module (from the folder they run the harness in)
  and calls the function: this runs their code, by their request;
- a Keras 3 ``.keras`` is translated by ``build.keras3``.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from qat_harness.core import keras2
from qat_harness.core.errors import UsageError

#: set by the parent to the user's working folder when a factory is to be imported
USER_DIR_ENV = "QAT_HARNESS_USER_PATH"
_FACTORY_HINT = "give the model as module:function (which imports and runs your code)"


def load_model(source: dict):
    """(tf_keras model, dataset or None, notes) for a builder-child source request."""
    keras2.enter()
    kind, path = source["kind"], Path(source["path"]) if source.get("path") else None
    if kind == "keras_file":
        return load_keras_file(path), None, []
    if kind == "keras3_file":
        from qat_harness.build import keras3

        translation = keras3.translate(path)
        notes = [f"translated from Keras 3: {translation.n_layers} layers, outputs agree within "
                 f"{translation.max_abs_diff:.2g} (max abs difference on a seeded batch)",
                 *translation.notes]
        return translation.model, None, notes
    if kind == "factory":
        return call_factory(source["ref"])
    raise UsageError(f"unknown model source kind {kind!r}")


# -- files ----------------------------------------------------------------------------------------
def load_keras_file(path: Path):
    import tf_keras as keras

    config = _stored_config(path)
    if config is not None:
        refuse_code_in_config(config, path.name)
    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        raise UsageError(f"{path.name}: tf_keras cannot load it: {_first_line(exc)}") from None


def _stored_config(path: Path) -> dict | None:
    """The model config stored in the file, read as data."""
    if path.is_dir():
        return _saved_model_config(path)
    if path.suffix.lower() == ".keras":
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        raise UsageError(f"{path.name} holds weights only, not a model: give the full model "
                         "(model.save('model.h5')), or use the registry model with --weights")
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _saved_model_config(folder: Path) -> dict | None:
    metadata = folder / "keras_metadata.pb"
    if not metadata.is_file():
        raise UsageError(f"{folder.name} is a SavedModel without Keras metadata: the harness needs "
                         "a Keras model to apply QAT (save it with tf_keras model.save(folder))")
    from tf_keras.src.protobuf import saved_metadata_pb2

    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString(metadata.read_bytes())
    layers = []
    for node in meta.nodes:
        try:
            info = json.loads(node.metadata)
        except ValueError:
            continue
        if node.identifier == "_tf_keras_model" and node.node_path == "root":
            config = info.get("config")
            if isinstance(config, dict) and config.get("layers"):
                return {"class_name": info.get("class_name"), "config": config}
        if node.identifier.startswith("_tf_keras_layer"):
            layers.append({"class_name": info.get("class_name"), "config": {"name": info.get("name")},
                           "module": info.get("module")})
    return {"class_name": "Model", "config": {"layers": layers}}


def refuse_code_in_config(config: dict, where: str) -> None:
    """A Lambda (marshalled Python) or a class tf_keras does not know is refused by name."""
    import tf_keras as keras

    known = set(dir(keras.layers)) | {"Functional", "Sequential", "Model", "InputLayer"}
    for entry in _layer_entries(config):
        cls, name = entry.get("class_name"), (entry.get("config") or {}).get("name", "?")
        if cls == "Lambda":
            raise UsageError(f"{where}: layer '{name}' is a Lambda layer, whose Python code would "
                             f"have to be run from the file; {_FACTORY_HINT}")
        if cls not in known:
            raise UsageError(f"{where}: layer '{name}' is a custom class '{cls}' that tf_keras does "
                             f"not know; {_FACTORY_HINT}")


def _layer_entries(config: dict):
    stack = [config]
    while stack:
        entry = stack.pop()
        inner = (entry.get("config") or {}) if isinstance(entry, dict) else {}
        for layer in inner.get("layers", []) or []:
            if isinstance(layer, dict):
                yield layer
                stack.append(layer)


# -- factories ------------------------------------------------------------------------------------
def call_user_function(ref: str, error: type[Exception] = UsageError):
    """Import the module of ``module:function`` and call the function with no argument: the
    user's own code, run at the user's request. Returns ``(function, what it returned)``; any
    failure is one line, raised as ``error``."""
    module_name, _, func_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module, by the user's request
        raise error(f"{ref}: cannot import {module_name}: {_first_line(exc)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise error(f"{ref}: {module_name} has no function {func_name}")
    try:
        return func, func()
    except Exception as exc:  # noqa: BLE001
        raise error(f"{ref} raised {_first_line(exc)}") from None


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


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:300]}"
