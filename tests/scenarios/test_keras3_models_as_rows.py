"""Keras 3 models in a run of several (issue 20, items 13 and 14): a model the harness cannot
build (a layer it cannot translate, a standalone BatchNormalization tfmot cannot quantize) is
its own error row, named before anything is built, and the run goes on with the others; a
model that starts with Rescaling and Normalization is built with them outside the quantized
graph, as float pre-processing the report names."""
import json

from qat_harness import cli

pytest_plugins = ["user_models"]

FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1", "--eval-limit", "16",
        "--fail-on", "never"]
IMAGE = (8, 8, 3)


def _preprocessing_cnn(path):
    """pixels -> Rescaling(1/255) -> Normalization -> Conv2D+BN+ReLU -> GAP -> Dense softmax."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input(IMAGE, name="image")
    y = L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.05, 0.06, 0.07], name="normalization")(
        L.Rescaling(1 / 255.0, name="rescaling")(x))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(y)))
    keras.Model(x, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(y))).save(path)
    return path


def _standalone_batchnorm(path):
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input(IMAGE)
    y = L.BatchNormalization(name="lone_bn")(L.Conv2D(4, 3, activation="relu", name="conv")(x))
    keras.Model(x, L.Dense(3)(L.GlobalAveragePooling2D()(y))).save(path)
    return path


def _claims(report, model):
    return {c["id"]: c for c in report["claims"] if c["model"] == model}


def test_unbuildable_keras3_models_are_rows_and_the_run_goes_on(user_models, capsys, tmp_path):
    good = _preprocessing_cnn(tmp_path / "preprocessing_cnn.keras")
    lone_bn = _standalone_batchnorm(tmp_path / "lone_bn.keras")
    untranslatable = user_models.keras3_untranslatable()
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", "cpu", "--out", str(out), *FAST,
                     "--models", f"{untranslatable},{lone_bn},{good}"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and code == 0, err[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"

    models = report["models"]
    assert "'times_two' (Lambda) cannot be translated" in models[untranslatable.name]["error"]
    refusal = models[lone_bn.name]["error"]
    assert "\n" not in refusal and "'lone_bn' (BatchNormalization)" in refusal and "move it right after" in refusal
    assert "quantize_annotate_layer" not in refusal.split("; to keep it")[0]
    for name in (untranslatable.name, lone_bn.name):
        assert _claims(report, name)["C1-size"]["verdict"] == "ERROR"
        assert not (out / "work" / name / "describe").exists()  # refused before the model was loaded
    assert [e["usage"] for e in report["errors"]] == [False, False]

    built = models[good.name]
    assert built["error"] is None and "qat_int8" in built["tflite"]
    assert "after float pre-processing outside the quantized graph: Rescaling 'rescaling'" in built["description"]
    assert any(n["model"] == good.name and "outside the quantized graph" in n["text"] for n in report["notes"])
    assert _claims(report, good.name)["C4-full-int"]["verdict"] == "PASS"
