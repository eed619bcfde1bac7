"""``config_guard.find_code`` reads a stored Keras config as data and finds, at any depth, what
loading would run or import; what Keras writes for its own built-ins passes."""
from __future__ import annotations

import pytest

from qat_harness.build.config_guard import MAX_DEPTH, find_code


def model(*layers, **root) -> dict:
    return {"class_name": "Functional", "config": {"name": "m", "layers": list(layers)}, **root}


def dense(name="d", **config) -> dict:
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "config": {"name": name, "units": 2, **config}}


def function(name: str, module: str, registered: str | None = None) -> dict:
    return {"module": module, "class_name": "function", "config": name,
            "registered_name": name if registered is None else registered}


@pytest.mark.parametrize("config", [
    model(dense(kernel_initializer={"module": "keras.initializers", "class_name": "GlorotUniform",
                                    "config": {"seed": None}, "registered_name": None})),
    model(dense(activation=function("relu", "keras.activations"))),
    model(dense(activation=function("gelu", "builtins"))),  # Keras's own, serialised by name
    model(dense(dtype={"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                       "registered_name": None})),
    model({"module": "keras.src.ops.numpy", "class_name": "Multiply", "registered_name": "Multiply",
           "config": {"name": "multiply"}}),
    model(dense(), module="tf_keras.src.engine.functional", registered_name="Functional"),
])
def test_what_keras_writes_for_its_built_ins_passes(config):
    assert find_code(config) is None


@pytest.mark.parametrize("config,kind,words", [
    (model(dense(activation=function("eval", "builtins"))), "module", "Python built-in function 'eval'"),
    (model(dense(activation=function("breakpoint", "builtins"))), "module", "'breakpoint'"),
    (model(dense(activation=function("func_load", "keras.src.utils.generic_utils"))), "module",
     "outside Keras's public API"),
    (model(dense(activation=function("system", "os"))), "module", "from module 'os'"),
    (model(dense(kernel_initializer={"module": 7, "class_name": "X", "config": {}})), "module",
     "not a name"),
    (model(dense(bias_constraint={"module": "keras.constraints", "class_name": "MaxNorm", "config": {},
                                  "registered_name": "pkg>MaxNorm"})), "registered_name", "'pkg>MaxNorm'"),
    (model(dense(kernel_initializer={"class_name": "Zeros", "config": {}, "registered_name": "Ones"})),
     "registered_name", "'Ones'"),
    (model(dense(kernel_regularizer={"class_name": "__lambda__", "config": {"value": "..."}})), "lambda",
     "Python lambda in its kernel_regularizer"),
    (model({"class_name": "RNN", "config": {"name": "r", "cell": {
        "class_name": "DropoutWrapper", "config": {"name": "w", "dropout_fn_type": "lambda"}}}}),
     "lambda", "Python lambda"),
    (model({"class_name": "Bidirectional", "config": {"name": "b", "backward_layer": {
        "class_name": "Lambda", "config": {"name": "l"}}}}), "lambda_layer", "Lambda layer"),
    (model(dense(), module="this"), "module", "module 'this'"),
])
def test_code_anywhere_is_found_with_its_kind(config, kind, words):
    found = find_code(config)
    assert found is not None and found.kind == kind and words in found.what, found


def test_the_path_names_the_layer_through_wrappers_cells_and_nested_models():
    lam = {"class_name": "Lambda", "config": {"name": "deep"}}
    stacked = {"class_name": "StackedRNNCells", "config": {"name": "cells", "cells": [
        {"class_name": "SimpleRNNCell", "config": {"name": "c0"}}, lam]}}
    inner = {"class_name": "Sequential", "config": {"name": "inner", "layers": [
        {"class_name": "TimeDistributed", "config": {"name": "td", "layer": {
            "class_name": "RNN", "config": {"name": "rnn", "cell": stacked}}}}]}}
    found = find_code(model(dense(), inner))
    assert found.layer == "inner/td/rnn/cells/deep" and found.class_name == "Lambda"
    assert found.message("f.h5").startswith("f.h5: layer 'inner/td/rnn/cells/deep' is a Lambda layer")


def test_layer_classes_outside_the_given_set_are_custom_classes():
    config = model(dense(), {"class_name": "TimeDistributed", "config": {"name": "td", "layer": {
        "class_name": "ScaleByTwo", "config": {"name": "s2"}}}})
    assert find_code(config) is None
    found = find_code(config, layer_classes={"Dense", "TimeDistributed"})
    assert found.kind == "unknown_class" and found.layer == "td/s2" and "'ScaleByTwo'" in found.what


def test_a_custom_loss_in_the_compile_config_is_not_loaded_and_not_refused():
    loss = function("my_loss", "my_package.losses", "my_package>my_loss")
    assert find_code(model(dense(), compile_config={"loss": loss})) is None
    assert find_code(model(dense(compile_config={"loss": loss}))) is not None  # not the root's


def test_nesting_deeper_than_any_model_is_refused_without_recursion():
    deep: dict = {}
    node = deep
    for _ in range(MAX_DEPTH * 50):
        node["x"] = {}
        node = node["x"]
    found = find_code(model(dense(kernel_initializer=deep)))
    assert found is not None and found.kind == "too_deep"


def test_names_from_the_file_print_on_one_line():
    found = find_code(model({"class_name": "Lambda", "config": {"name": "a\nb\x1b[31m" + "x" * 500}}))
    message = found.message("f.keras")
    assert "\n" not in message and "\x1b" not in message and len(message) < 300
