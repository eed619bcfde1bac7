"""What in a stored Keras model config would run or import code, found by reading it as data.

A Keras config is JSON, but loading it is not inert: a ``Lambda`` layer (or any ``__lambda__``
object, or a cell wrapper with ``function_type: lambda``) holds marshalled Python bytecode
that the loader runs; a ``module`` field is passed to ``importlib.import_module`` (even in safe
mode: Keras CVE-2025-1550 is this class); a ``registered_name`` names an object registered by
some package. Wrappers and cells nest layers anywhere (``TimeDistributed.layer``,
``Bidirectional.backward_layer``, ``RNN.cell``, ``StackedRNNCells.cells``, nested models), and
objects sit inside ``config`` values (initializers, regularizers, constraints, activations,
dtype policies). So every dict at every depth is checked, before any Keras loader sees the file.

Pure Python (no TensorFlow, no Keras): the parent process checks ``.keras`` archives when it
resolves ``--models``; the builder child checks every form again right before loading.
"""
from __future__ import annotations

import builtins
import dataclasses
from typing import Collection

#: Packages whose modules a config may name (tf_keras maps ``keras.*`` to ``tf_keras.*``).
KERAS_PACKAGES = frozenset({"keras", "tf_keras"})
#: Keys whose value is a layer (a dict) or a list of layers.
LAYER_KEYS = frozenset({"layers", "layer", "forward_layer", "backward_layer", "cell", "cells"})
#: Model classes that hold layers; a layer class check accepts these besides the layers.
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
#: Top-level keys no loader reads with ``compile=False`` (both tf_keras's and Keras 3's
#: ``saving_lib.load_model`` set ``compile_config`` to None before deserialising): a custom
#: loss or metric there is not loaded and not a reason to refuse the model.
UNREAD_ROOT_KEYS = frozenset({"compile_config"})
#: Deeper than this is not a model (a real one nests a few tens of levels); the loaders
#: recurse on the config and would end in a RecursionError.
MAX_DEPTH = 200
CODE_HINT = "give the model as module:function (which imports and runs your code)"
_PYTHON_BUILTINS = frozenset(vars(builtins))
KINDS = ("lambda_layer", "lambda", "unknown_class", "module", "registered_name", "too_deep")


@dataclasses.dataclass(frozen=True)
class CodeInConfig:
    """The first thing in a config that loading would run or import."""
    layer: str        # path of layer names to the layer it belongs to ("outer/td/times_two")
    class_name: str   # that layer's class
    kind: str         # one of KINDS
    what: str         # what is wrong, completing "layer '<layer>' ..."
    in_layer_entry: bool  # found in the layer's own entry (not in an object inside its config)
    registered_name: str | None = None  # the layer entry's, when it has one

    @property
    def subject(self) -> str:
        return f"layer '{self.layer}'" if self.layer else "the model"

    def message(self, file: str) -> str:
        """One line for a tf_keras file: names the file and the layer."""
        return f"{file}: {self.subject} {self.what}; {CODE_HINT}"


def shown(text, limit: int = 80) -> str:
    """A name from the file as it may be printed in one line: control characters (and any
    newline) escaped, long names cut."""
    text = repr(str(text))[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def find_code(config, layer_classes: Collection[str] | None = None) -> CodeInConfig | None:
    """The first Lambda, lambda, foreign ``module``, custom ``registered_name`` (and, given
    ``layer_classes``, layer of another class) anywhere in ``config``, or None.

    ``config`` is the model's own entry (``{"class_name": ..., "config": {...}}``) or a list of
    such entries (a SavedModel's nodes): each is a layer position."""
    roots = config if isinstance(config, list) else [config]
    # (value, key it is stored under, path of the enclosing layer, its class, in a layer
    # position, depth)
    stack = [(root, "", "", "", True, 0) for root in reversed(roots)]
    while stack:
        value, key, path, owner, is_layer, depth = stack.pop()
        if depth > MAX_DEPTH:
            return CodeInConfig(path, shown(owner), "too_deep", f"is nested more than {MAX_DEPTH} "
                                "levels deep: not a Keras model config", in_layer_entry=False)
        if isinstance(value, list):
            stack.extend((item, key, path, owner, is_layer, depth + 1) for item in reversed(value))
            continue
        if not isinstance(value, dict):
            continue
        class_name = value.get("class_name")
        if is_layer and isinstance(class_name, str):
            owner = class_name
            if not (depth == 0 and class_name in MODEL_CLASSES):  # the model itself is no layer
                path = f"{path}/{shown(_name(value))}" if path else shown(_name(value))
        found = _check_entry(value, key, class_name, is_layer, layer_classes)
        if found is not None:
            registered = value.get("registered_name") if is_layer else None
            return CodeInConfig(path, shown(owner), *found, in_layer_entry=is_layer,
                                registered_name=shown(registered) if registered else None)
        for child_key, child in reversed(list(value.items())):
            if depth == 0 and child_key in UNREAD_ROOT_KEYS:
                continue
            stack.append((child, str(child_key), path, owner, child_key in LAYER_KEYS, depth + 1))
    return None


def _name(entry: dict) -> str:
    config = entry.get("config")
    return str(entry.get("name") or (config.get("name") if isinstance(config, dict) else None) or "?")


def _check_entry(entry: dict, key: str, class_name, is_layer: bool,
                 layer_classes: Collection[str] | None) -> tuple[str, str] | None:
    """(kind, what) of the first problem in this one dict, or None."""
    where = f" in its {shown(key)}" if key and not is_layer else ""
    if class_name == "Lambda" or entry.get("registered_name") == "Lambda":
        return "lambda_layer", "is a Lambda layer, whose Python code would have to be run from the file"
    if class_name == "__lambda__" or any(isinstance(k, str) and k.endswith("_type") and v == "lambda"
                                         for k, v in entry.items()):
        # Lambda's function_type / output_shape_type, the RNN cell wrappers' dropout_fn_type
        # and residual_fn_type: a marshalled function follows
        return "lambda", f"holds a Python lambda{where}: bytecode that would have to be run from the file"
    if is_layer and layer_classes is not None and isinstance(class_name, str) \
            and class_name not in layer_classes and class_name not in MODEL_CLASSES:
        return "unknown_class", f"is a custom class '{shown(class_name)}' that tf_keras does not know"
    if "module" in entry and entry["module"] is not None:
        why = _foreign_module(entry["module"], class_name, entry.get("config"))
        if why:
            return "module", f"names {why}{where}, which loading would import"
    registered = entry.get("registered_name")
    if registered is not None and not _builtin_registration(registered, class_name, entry.get("config")):
        return "registered_name", f"holds a custom object registered as '{shown(registered)}'{where}"
    return None


def _foreign_module(module, class_name, config) -> str | None:
    """Why ``module`` may not be imported for this entry, or None if it may."""
    if not isinstance(module, str):
        return "a module that is not a name"
    parts = module.split(".")
    if class_name == "function":
        # A function is looked up by name: Keras's public modules, or "builtins" for Keras's
        # own built-in functions, where tf_keras falls back to Python's builtins module
        # (eval, exec, open, breakpoint, ...): those names are never a Keras function.
        if module == "builtins":
            if isinstance(config, str) and config.isidentifier() and config not in _PYTHON_BUILTINS:
                return None
            return f"the Python built-in function '{shown(config)}'"
        if parts[0] in KERAS_PACKAGES and all(p.isidentifier() and not p.startswith("_")
                                              and p != "src" for p in parts):
            return None
        return f"function '{shown(config)}' from module '{shown(module)}' (outside Keras's public API)"
    if parts[0] in KERAS_PACKAGES and all(p.isidentifier() for p in parts):
        return None
    return f"module '{shown(module)}' (outside keras / tf_keras)"


def _builtin_registration(registered, class_name, config) -> bool:
    """Keras writes ``registered_name`` as None, the class name, or a function's own name for
    its built-ins; ``package>Name`` (or anything else) is a registered custom object."""
    if not isinstance(registered, str) or ">" in registered:
        return False
    return registered == class_name or (class_name == "function" and registered == config)
