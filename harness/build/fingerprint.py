"""Child side: a digest of what a built tf_keras model *is*, for the artifact cache's key.

A model file's name, or a factory's module file, says where a model came from, not what it
is: a module the factory imports can change the architecture, and a file can be replaced by
another of the same name. The digest reads the model that was actually built: its
architecture (the config), its parameters (every weight's dtype, shape and bytes) and the
source of every module that defines one of its classes outside the Keras and TensorFlow
libraries (a custom layer's ``call`` is code, not config)."""
from __future__ import annotations

import hashlib
import inspect
import json

import numpy as np

from qat_harness.core.files import file_digest

#: Classes from these packages are defined by the pinned library versions, which the cache key
#: already holds.
LIBRARY_PACKAGES = frozenset({"tf_keras", "keras", "tensorflow", "tensorflow_model_optimization"})


def model_digest(model) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(_config(model), sort_keys=True, default=_stable).encode())
    for value in model.get_weights():  # one batched read, in ``model.weights`` order
        value = np.ascontiguousarray(value)
        h.update(f"|{value.dtype.str}{value.shape}".encode())
        h.update(value)
    for name, digest in sorted(_user_class_sources(model).items()):
        h.update(f"|{name}:{digest}".encode())
    return h.hexdigest()


def _config(model):
    """The model's config, or (a subclassed model that has none) the class of every layer in
    order: the weights and the classes' sources then say the rest."""
    try:
        return model.get_config()
    except (NotImplementedError, TypeError, ValueError):
        return [f"{type(layer).__module__}.{type(layer).__qualname__}" for layer in _layers(model)]


def _layers(model) -> list:
    return [model, *(m for m in model.submodules if hasattr(m, "get_config"))]


def _user_class_sources(model) -> dict[str, str]:
    """Source file digest of each module outside the libraries that defines a class of the model."""
    out = {}
    for layer in _layers(model):
        cls = type(layer)
        if cls.__module__.partition(".")[0] in LIBRARY_PACKAGES:
            continue
        try:
            out[cls.__module__] = file_digest(inspect.getsourcefile(cls))
        except (TypeError, OSError):  # defined in no file: its config and weights stand alone
            out[cls.__module__] = "no source file"
    return out


def _stable(value):
    """A config value JSON cannot write, as text that is the same in every process (never a
    repr with a memory address)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    kind = value if isinstance(value, type) or callable(value) else type(value)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__name__)}"
