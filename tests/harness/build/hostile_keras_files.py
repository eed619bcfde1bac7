"""Hostile Keras model files, for the model-file security tests and the config fuzz benchmark.

Every file starts from a real model saved by tf_keras or Keras 3 (``wrapper_model``: every
kind of place a layer can nest: TimeDistributed, Bidirectional's forward and backward layers,
an RNN cell, StackedRNNCells' cells, a nested Sequential, the top level) and is then edited as
data: a layer's entry replaced by a Lambda whose function would create a canary file, or a
``module`` field that names a module whose import would create a canary file. A test then
asserts the refusal line and that no canary exists: the code never ran, the module was never
imported.

Needs Keras 2 selected before TensorFlow loads (tests/conftest.py, benchmarks/conftest.py).
"""
from __future__ import annotations

import copy
import importlib
import json
import shutil
import uuid
import zipfile
from pathlib import Path

#: Layer names in ``wrapper_model``, by where the layer sits.
NESTED_LAYERS = {
    "top_dense": "top level of the model",
    "td_inner": "TimeDistributed.layer",
    "bi_forward": "Bidirectional.layer",
    "bi_backward": "Bidirectional.backward_layer",
    "rnn_cell": "RNN.cell",
    "stacked_cell": "StackedRNNCells.cells",
    "nested_dense": "a layer of a nested Sequential",
}
FORMS = ("h5", "keras", "saved_model", "keras3")


def wrapper_model(k):
    """A small Functional model with a layer in every nesting place, built with ``k``
    (``tf_keras`` or Keras 3's ``keras``)."""
    layers = k.layers
    inputs = k.Input((4, 3), name="seq")
    x = layers.TimeDistributed(layers.Dense(3, name="td_inner"), name="td")(inputs)
    x = layers.Bidirectional(layers.LSTM(2, return_sequences=True, name="bi_forward"),
                             backward_layer=layers.GRU(2, return_sequences=True, go_backwards=True,
                                                       name="bi_backward"), name="bi")(x)
    x = layers.RNN(layers.SimpleRNNCell(3, name="rnn_cell"), return_sequences=True, name="rnn")(x)
    x = layers.RNN([layers.SimpleRNNCell(3, name="stacked_cell"),
                    layers.SimpleRNNCell(3, name="stacked_cell_2")], return_sequences=True,
                   name="stacked")(x)
    x = k.Sequential([k.Input((4, 3)), layers.Dense(3, name="nested_dense")], name="nested")(x)
    outputs = layers.Dense(2, name="top_dense")(x)
    return k.Model(inputs, outputs, name="wrapped")


# -- canaries ---------------------------------------------------------------------------------------
def canary_function(canary: Path):
    """A lambda that creates ``canary`` when called (its path is a default argument, so it
    travels inside the marshalled code)."""
    return lambda t, _canary=str(canary): (open(_canary, "a").close(), t)[1]


def canary_module(folder: Path, canary: Path) -> str:
    """Write a module into ``folder`` whose import creates ``canary``; returns its (unique)
    name. It also defines ``Canary`` (a class) and ``canary_fn`` (a function)."""
    name = f"qat_canary_{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        f"open({str(canary)!r}, 'a').close()\n"
        "class Canary:\n"
        "    @classmethod\n"
        "    def from_config(cls, config):\n"
        "        return cls()\n"
        "    def __call__(self, *args, **kwargs):\n"
        "        return args[0] if args else None\n"
        "def canary_fn(x):\n"
        "    return x\n")
    importlib.invalidate_caches()  # a folder listed a moment ago must show the new module
    return name


def lambda_entry(k, canary: Path, name: str) -> dict:
    """How ``k`` serialises a Lambda layer named ``name`` whose function creates ``canary``."""
    layer = k.layers.Lambda(canary_function(canary), name=name)
    if k.__name__ == "tf_keras":
        return json.loads(json.dumps(k.layers.serialize(layer)))
    return json.loads(json.dumps(k.saving.serialize_keras_object(layer)))


# -- editing configs --------------------------------------------------------------------------------
def layer_entries(config, name: str):
    """Every layer entry (a dict with a class_name) named ``name``, at any depth (Keras 3
    names Bidirectional's forward layer ``forward_<name>``)."""
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            inner = value.get("config") if isinstance(value.get("config"), dict) else {}
            names = {value.get("name"), inner.get("name")}
            if "class_name" in value and (name in names or f"forward_{name}" in names):
                yield value
            stack.extend(value.values())


def replace_layer(config, name: str, entry: dict) -> int:
    """Make every entry named ``name`` the layer ``entry`` (same name; its call wiring,
    ``inbound_nodes``, kept). Returns how many entries changed."""
    found = list(layer_entries(config, name))
    for old in found:
        new = copy.deepcopy(entry)
        new["config"]["name"] = name
        for key in ("module", "registered_name", "class_name", "config"):
            old.pop(key, None)
            if key in new:
                old[key] = new[key]
    return len(found)


def set_on_model(config, fields: dict) -> int:
    """Merge ``fields`` into the model's own entry (a SavedModel's root node included)."""
    if isinstance(config, dict) and config.get("class_name") in ("Functional", "Sequential"):
        config.update(copy.deepcopy(fields))
        return 1
    return 0


def set_object(config, name: str, key: str, value) -> int:
    """Put ``value`` under ``key`` in the config of every layer named ``name`` (``key`` None:
    merge ``value`` into the layer entry itself)."""
    found = list(layer_entries(config, name))
    for entry in found:
        if key is None:
            entry.update(copy.deepcopy(value))
        else:
            entry.setdefault("config", {})[key] = copy.deepcopy(value)
    return len(found)


# -- writing files ----------------------------------------------------------------------------------
class ModelFiles:
    """The legitimate ``wrapper_model`` in each form, saved once into ``folder``; ``edited``
    copies one with its config changed by a function of the config (JSON data)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._saved: dict[str, Path] = {}

    def base(self, form: str) -> Path:
        if form not in self._saved:
            self._saved[form] = self._save(form)
        return self._saved[form]

    def _save(self, form: str) -> Path:
        if form == "keras3":
            import keras

            keras.utils.set_random_seed(0)
            path = self.folder / "base_keras3.keras"
            wrapper_model(keras).save(path)
            return path
        import tf_keras

        tf_keras.utils.set_random_seed(0)
        model = wrapper_model(tf_keras)
        path = self.folder / {"h5": "base.h5", "keras": "base.keras", "saved_model": "base_saved_model"}[form]
        model.save(path)
        return path

    def edited(self, form: str, edit, name: str) -> Path:
        """A copy of the ``form`` file (named ``<form>-<name>``) whose stored config went
        through ``edit`` (a function changing the JSON data in place)."""
        base, name = self.base(form), f"{form}-{name}"
        if form in ("keras", "keras3"):
            return write_archive_config(base, self.folder / f"{name}.keras", edit)
        if form == "h5":
            return write_h5_config(base, self.folder / f"{name}.h5", edit)
        return write_saved_model_metadata(base, self.folder / name, edit)


def write_archive_config(base: Path, path: Path, edit) -> Path:
    with zipfile.ZipFile(base) as source, zipfile.ZipFile(path, "w") as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            target.writestr(member, data)
    return path


def write_h5_config(base: Path, path: Path, edit) -> Path:
    import h5py

    shutil.copyfile(base, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return path


def write_saved_model_metadata(base: Path, folder: Path, edit) -> Path:
    """Every Keras object's metadata in keras_metadata.pb goes through ``edit``."""
    from tf_keras.protobuf import saved_metadata_pb2

    shutil.copytree(base, folder)
    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((folder / "keras_metadata.pb").read_bytes())
    for node in meta.nodes:
        data = json.loads(node.metadata)
        edit(data)
        node.metadata = json.dumps(data)
    (folder / "keras_metadata.pb").write_bytes(meta.SerializeToString())
    return folder
