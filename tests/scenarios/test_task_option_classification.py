"""``--task``: the user says what a model does where its outputs do not. A linear 4-value head
with no softmax is read as regression (judged on fidelity to float, A3); ``--task
classification`` makes it class scores, judged on top-1 (A2)."""
import json

import numpy as np
import pytest
from user_models import convert

from qat_harness import cli
from qat_harness.core.errors import UsageError
from qat_harness.options import RunOptions

FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1",
        "--fail-on", "never", "--no-trace", "--devices", "cpu"]


@pytest.fixture(scope="module")
def linear_head_pair(tmp_path_factory):
    """int8 and float files of a model ending in a linear Dense(4), and unlabelled data."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("linear_head")
    tf.keras.utils.set_random_seed(3)
    x = tf.keras.Input((8,))
    model = tf.keras.Model(x, tf.keras.layers.Dense(4)(tf.keras.layers.Dense(6, activation="relu")(x)))
    data = np.random.default_rng(2).uniform(-1, 1, (64, 8)).astype(np.float32)
    paths = {name: folder / f"linear_head_{name}.tflite" for name in ("int8", "float")}
    paths["int8"].write_bytes(convert(model, calibration=data))
    paths["float"].write_bytes(convert(model))
    npz = folder / "data.npz"
    np.savez(npz, x=data)
    return paths["int8"], paths["float"], npz


def _run(tmp_path, capsys, pair, *args):
    int8, flt, npz = pair
    out = tmp_path / "out"
    code = cli.main(["run", "--out", str(out), *FAST, "--models", f"{int8}={flt}", "--dataset", str(npz), *args])
    assert "Traceback" not in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    claims = {c["id"]: c for c in report["claims"] if c["device"] == "cpu"}
    return code, report["models"][int8.name]["outputs"], claims


def test_a_linear_head_is_regression_by_default(linear_head_pair, tmp_path, capsys):
    code, outputs, claims = _run(tmp_path, capsys, linear_head_pair)
    assert code == 0
    assert [o["kind"] for o in outputs] == ["regression"]
    assert claims["A2-agreement"]["verdict"] == "SKIP"
    assert claims["A3-output-fidelity"]["verdict"] in ("PASS", "WARN", "FAIL")


def test_task_classification_judges_the_linear_head_on_top1(linear_head_pair, tmp_path, capsys):
    code, outputs, claims = _run(tmp_path, capsys, linear_head_pair, "--task", "classification")
    assert code == 0
    assert [(o["kind"], o["why"]) for o in outputs] == [("class scores", "--task classification")]
    a2 = claims["A2-agreement"]
    assert a2["verdict"] in ("PASS", "WARN", "FAIL") and isinstance(a2["measured"], float), a2
    assert claims["A3-output-fidelity"]["verdict"] == "SKIP"


def test_an_unknown_task_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(UsageError, match="--task must be one of classification, regression, dense, got 'boxes'"):
        RunOptions(models=["m"], devices=["cpu"], out=tmp_path, task="boxes")
    assert cli.main(["run", "--out", str(tmp_path / "out"), "--models", "digits_cnn", "--task", "boxes"]) == 2
    err = capsys.readouterr().err
    assert "--task must be one of" in err and "Traceback" not in err
