"""A user's Keras model file never runs or imports code (issue 19, items 1, 2 and 11).

In every form the harness takes (tf_keras ``.h5``, tf_keras ``.keras``, a SavedModel folder, a
Keras 3 ``.keras`` through the translator), a Lambda in every place a layer can nest, and a
``module`` / ``registered_name`` in every kind of object, are refused in one line naming the
layer, before any Keras loader sees the file; canaries prove that the Lambda's function never
ran and the named module was never imported. The loading runs here in-process, as the builder
child runs it (``keras_loading.load_model``), after the parent's own check
(``sources.parse_entry``); the last tests go through the real child and the CLI."""
from __future__ import annotations

import json
import os
import re
import sys

import pytest
from hostile_keras_files import (
    FORMS,
    NESTED_LAYERS,
    ModelFiles,
    canary_module,
    lambda_entry,
    replace_layer,
    set_object,
    set_on_model,
)

from qat_harness import cli, sources
from qat_harness.build import artifacts, keras_loading
from qat_harness.core.errors import UsageError

pytest_plugins = ["user_models"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("hostile-keras"))


@pytest.fixture
def canary_path(tmp_path, monkeypatch):
    """(module folder on sys.path, canary file that must never exist)."""
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder, tmp_path / "canary"


def keras_module(form: str):
    import keras
    import tf_keras

    return keras if form == "keras3" else tf_keras


def refusal(path) -> str:
    """The one-line refusal of the parent (resolving ``--models``) or, when the parent lets
    the file through, of the builder child's loading."""
    with pytest.raises(UsageError) as caught:
        keras_loading.load_model(sources.parse_entry(str(path)).request())
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def names_layer(message: str, layer: str) -> bool:
    """The message names ``layer`` by its path (``outer/td/td_inner``)."""
    return re.search(rf"layer '([^']+/)?(forward_)?{layer}'", message) is not None


# -- 1. a Lambda anywhere --------------------------------------------------------------------------
@pytest.mark.parametrize("layer", NESTED_LAYERS)
@pytest.mark.parametrize("form", FORMS)
def test_a_lambda_in_any_nesting_place_is_refused_by_name_and_never_runs(files, tmp_path, form, layer):
    canary = tmp_path / "lambda-ran"
    entry = lambda_entry(keras_module(form), canary, layer)
    replaced = []
    path = files.edited(form, lambda config: replaced.append(replace_layer(config, layer, entry)),
                        f"lambda-{layer}")
    assert sum(replaced) >= 1  # the Lambda is in the file
    message = refusal(path)
    assert names_layer(message, layer) and "Lambda" in message and "module:function" in message, message
    assert not canary.exists()


@pytest.mark.parametrize("layer", NESTED_LAYERS)
def test_the_builder_child_checks_a_tf_keras_archive_again(files, tmp_path, layer):
    """Defence in depth: the child's loader refuses what the parent's check would have."""
    canary = tmp_path / "lambda-ran"
    entry = lambda_entry(keras_module("keras"), canary, layer)
    path = files.edited("keras", lambda config: replace_layer(config, layer, entry), f"child-lambda-{layer}")
    with pytest.raises(UsageError, match="is a Lambda layer") as caught:
        keras_loading.load_keras_file(path)
    assert names_layer(str(caught.value), layer)
    assert not canary.exists()


@pytest.mark.parametrize("form", ["h5", "saved_model"])
def test_the_legacy_loaders_run_in_tf_keras_safe_mode(files, tmp_path, monkeypatch, form):
    """Were the config check to miss a Lambda, tf_keras itself would not run it: the legacy
    .h5 and SavedModel loaders get the safe-mode scope they do not set up themselves (without
    it, the Lambda inside a TimeDistributed runs while either loads). The .h5 loader then
    refuses; the SavedModel loader falls back to the layer's traced graph."""
    import numpy as np

    canary = tmp_path / "lambda-ran"
    entry = lambda_entry(keras_module(form), canary, "td_inner")
    path = files.edited(form, lambda config: replace_layer(config, "td_inner", entry), "unchecked-lambda")
    monkeypatch.setattr(keras_loading, "refuse_code_in_config", lambda config, where: None)
    if form == "h5":
        with pytest.raises(UsageError, match="tf_keras cannot load it") as caught:
            keras_loading.load_keras_file(path)
        assert "\n" not in str(caught.value)
    else:
        keras_loading.load_keras_file(path)(np.zeros((1, 4, 3), "float32"))
    assert not canary.exists()


# -- 2. module / registered_name anywhere ----------------------------------------------------------
OBJECT_PLACES = [  # (layer, config key; None: the layer entry itself)
    ("top_dense", None),
    ("td_inner", "kernel_initializer"),
    ("bi_forward", "kernel_constraint"),
    ("bi_backward", "recurrent_initializer"),
    ("rnn_cell", "activation"),
    ("stacked_cell", "kernel_regularizer"),
    ("nested_dense", "dtype"),
]


def foreign_object(module: str, key: str | None) -> dict:
    if key is None:
        return {"module": module}
    if key == "activation":
        return {"module": module, "class_name": "function", "config": "canary_fn",
                "registered_name": "canary_fn"}
    return {"module": module, "class_name": "Canary", "config": {"name": "float32"},
            "registered_name": None}


@pytest.mark.parametrize("layer,key", OBJECT_PLACES)
@pytest.mark.parametrize("form", FORMS)
def test_a_module_outside_keras_anywhere_is_refused_and_never_imported(files, canary_path, form, layer, key):
    folder, canary = canary_path
    module = canary_module(folder, canary)
    changed = []
    path = files.edited(form, lambda config: changed.append(set_object(config, layer, key,
                                                                        foreign_object(module, key))),
                        f"module-{layer}-{key}")
    assert sum(changed) >= 1
    message = refusal(path)
    assert names_layer(message, layer), message
    assert module in message or (form == "keras3" and "custom class" in message), message
    assert not canary.exists() and module not in sys.modules


@pytest.mark.parametrize("form", FORMS)
def test_the_models_own_module_is_refused_and_never_imported(files, canary_path, form):
    """tf_keras imports the module of the model's own entry (before: the canary was made)."""
    folder, canary = canary_path
    module = canary_module(folder, canary)
    changed = []
    path = files.edited(form, lambda config: changed.append(set_on_model(config, {"module": module})),
                        "module-root")
    assert sum(changed) >= 1
    message = refusal(path)
    assert module in message or (form == "keras3" and "subclassed" in message), message
    assert not canary.exists() and module not in sys.modules


def test_a_stdlib_module_with_a_side_effect_is_not_imported(files):
    """``this`` prints the Zen of Python when imported (``antigravity`` opens a browser)."""
    if "this" in sys.modules:
        pytest.skip("`this` was imported by something else in this process")
    path = files.edited("keras", lambda config: set_on_model(config, {"module": "this"}), "module-this")
    assert "names module 'this'" in refusal(path)
    assert "this" not in sys.modules


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("value,words", [
    ({"module": "keras.initializers", "class_name": "GlorotUniform", "config": {},
      "registered_name": "evil_pkg>Thing"}, "registered as 'evil_pkg>Thing'"),
    ({"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "eval"},
     "Python built-in function 'eval'"),
    ({"module": "keras.src.saving.serialization_lib", "class_name": "function",
      "config": "enable_unsafe_deserialization", "registered_name": "enable_unsafe_deserialization"},
     "outside Keras's public API"),
    ({"class_name": "__lambda__", "config": {"value": "not really bytecode"}}, "Python lambda"),
])
def test_registered_names_builtins_private_functions_and_lambdas_are_refused(files, form, value, words):
    key = "kernel_initializer" if value["class_name"] != "function" else "activation"
    path = files.edited(form, lambda config: set_object(config, "td_inner", key, value),
                        f"object-{abs(hash(json.dumps(value)))}")
    message = refusal(path)
    assert words in message and names_layer(message, "td_inner"), message


@pytest.mark.parametrize("form", ["h5", "keras", "saved_model"])
def test_a_legitimate_model_with_every_wrapper_and_cell_still_loads(files, form):
    model, _, _ = keras_loading.load_model(sources.parse_entry(str(files.base(form))).request())
    assert model.output_shape == (None, 4, 2)
    assert {"TimeDistributed", "Bidirectional", "RNN", "Sequential", "Dense"} <= {
        type(layer).__name__ for layer in model.layers}


# -- through the real builder child and the CLI ----------------------------------------------------
def test_the_builder_child_never_imports_a_module_named_by_the_file(files, canary_path, tmp_path, monkeypatch):
    """The real child (its own interpreter, ``-P``): the canary module is importable there too
    (PYTHONPATH), and the child refuses the file before tf_keras would import it."""
    folder, canary = canary_path
    module = canary_module(folder, canary)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    path = files.edited("keras", lambda config: set_on_model(config, {"module": module}), "child-module-root")
    source = sources.ModelSource(sources.SourceKind.KERAS_FILE, path.name, str(path), path=path)
    with pytest.raises(UsageError, match=rf"names module '{module}'"):
        artifacts.describe_model(source.request(), tmp_path / "work")
    assert not canary.exists()


FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1",
        "--fail-on", "never"]


@pytest.mark.slow
def test_a_saved_model_goes_through_the_cli_and_one_with_a_lambda_is_refused(user_models, files, tmp_path,
                                                                             capsys):
    """Item 11: a tf_keras SavedModel folder reaches a full report; a SavedModel with a Lambda
    in a TimeDistributed is refused in one line naming it, the other model still measured."""
    canary = tmp_path / "lambda-ran"
    entry = lambda_entry(keras_module("saved_model"), canary, "td_inner")
    hostile = files.edited("saved_model", lambda config: replace_layer(config, "td_inner", entry), "cli-lambda")
    good = user_models.saved_model_dir()
    out = tmp_path / "out"
    code = cli.main(["run", "--models", f"{good},{hostile}", "--devices", "cpu", "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("qat-harness: error:")]
    assert code == cli.EXIT_USAGE and lines and "layer 'td/td_inner' is a Lambda layer" in lines[-1], err
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"][good.name]["artifacts"]["files"]) == {"float", "ptq_int8", "qat_int8"}
    verdicts = {c["id"]: c["verdict"] for c in report["claims"] if c["model"] == good.name}
    assert verdicts["C4-full-int"] == "PASS" and verdicts["C5-per-axis"] == "PASS"
    assert "Lambda layer" in report["models"][hostile.name]["error"]
    assert not canary.exists()


def test_a_saved_model_whose_keras_metadata_lists_nothing_is_refused(files, tmp_path):
    """tf_keras would hand such a folder to TensorFlow's generic loader."""
    import shutil

    from tf_keras.protobuf import saved_metadata_pb2

    folder = tmp_path / "no_keras_objects"
    shutil.copytree(files.base("saved_model"), folder)
    (folder / "keras_metadata.pb").write_bytes(saved_metadata_pb2.SavedMetadata().SerializeToString())
    with pytest.raises(UsageError, match=r"^no_keras_objects: its keras_metadata\.pb describes no Keras model$"):
        keras_loading.load_model(sources.parse_entry(str(folder)).request())
