"""Issue 20, what is judged: a verdict is computed only on the outputs it applies to. Top-1 on
class scores, fidelity (A3) on a regression head, a degenerate answer never a PASS, and the
top-1 of a quantized file given alone."""
import json

import numpy as np
import pytest

from qat_harness import cli

pytest_plugins = ["user_models"]

FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1",
        "--fail-on", "never", "--no-trace"]


def run(capsys, tmp_path, *args, devices="cpu"):
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", devices, "--out", str(out), *FAST, *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def claim(report, cid, device="cpu"):
    found = [c for c in report["claims"] if c["id"] == cid and c["device"] == device]
    assert len(found) == 1, (cid, [(c["id"], c["device"]) for c in report["claims"]])
    return found[0]


def test_class_scores_on_top1_and_the_box_on_fidelity(user_models, capsys, tmp_path):
    int8, flt = user_models.multi_io_pair()
    rng = np.random.default_rng(5)  # the file's input order: aux_features [4], then image [16,16,3]
    npz = tmp_path / "two_inputs.npz"
    np.savez(npz, x_0=rng.uniform(-1, 1, (48, 4)).astype(np.float32),
             x_1=rng.uniform(0, 1, (48, 16, 16, 3)).astype(np.float32))
    code, report, md = run(capsys, tmp_path, "--models", f"{int8}={flt}", "--dataset", str(npz))
    assert code == 0
    kinds = {o["name"]: o["kind"] for o in report["models"][int8.name]["outputs"]}
    assert sorted(kinds.values()) == ["class scores", "regression"], kinds
    a2, a3 = claim(report, "A2-agreement"), claim(report, "A3-output-fidelity")
    assert a2["verdict"] in ("PASS", "WARN", "FAIL") and a2["measured"] is not None
    assert a3["verdict"] in ("PASS", "WARN", "FAIL") and isinstance(a3["measured"], float), a3
    box = next(name for name, kind in kinds.items() if kind == "regression")
    assert box in a3["reason"] and "SQNR" in a3["reason"]
    vs_float = report["models"][int8.name]["devices"]["cpu"]["vs_float"]
    assert [d["output"] for d in vs_float] == [box] and vs_float[0]["domain"] == "float"
    assert "regression" in md and "SQNR" in md


@pytest.fixture(scope="module")
def one_answer_pair(tmp_path_factory):
    """A classifier that answers class 0 whatever it is given (its weights are zero)."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("degenerate")
    x = tf.keras.Input((6,))
    head = tf.keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros",
                                 bias_initializer=tf.keras.initializers.Constant([2.0, 0.0, -1.0]))
    model = tf.keras.Model(x, head(tf.keras.layers.Dense(4, activation="relu")(x)))
    data = np.random.default_rng(1).uniform(-1, 1, (120, 6)).astype(np.float32)
    paths = {}
    for name in ("int8", "float"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if name == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([d[None]] for d in data[:32])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        paths[name] = folder / f"one_answer_{name}.tflite"
        paths[name].write_bytes(converter.convert())
    npz = folder / "data.npz"
    np.savez(npz, x=data, y=np.arange(len(data)) % 3)
    return paths["int8"], paths["float"], npz


def test_one_answer_for_every_input_is_degenerate_not_a_pass(one_answer_pair, capsys, tmp_path):
    int8, flt, npz = one_answer_pair
    code, report, _ = run(capsys, tmp_path, "--models", f"{int8}={flt}", "--dataset", str(npz))
    assert code == 0
    a2 = claim(report, "A2-agreement")
    assert a2["verdict"] == "WARN" and "degenerate" in a2["reason"] and "class 0" in a2["reason"], a2
    assert claim(report, "A3-output-fidelity")["verdict"] == "SKIP"


def test_an_int8_file_alone_with_labels_gets_its_top1_with_an_interval(user_models, capsys, tmp_path):
    int8, _, _ = user_models.classifier_pair()
    code, report, md = run(capsys, tmp_path, "--models", str(int8),
                           "--dataset", str(user_models.classifier_dataset_npz()))
    assert code == 0
    top1 = report["models"][int8.name]["devices"]["cpu"]["accuracy"]["int8"]
    assert top1["n"] == 200 and 0.5 < top1["rate"] <= 1 and top1["ci_low"] < top1["rate"] <= top1["ci_high"]
    a1 = claim(report, "A1-accuracy")
    assert a1["verdict"] == "SKIP" and "top-1 is" in a1["reason"] and "no float reference" in a1["reason"]
    assert claim(report, "A2-agreement")["verdict"] == "SKIP"
    assert "Top-1 against the labels on this device: int8" in md


def test_a_float_file_is_never_called_int8(user_models, capsys, tmp_path):
    _, flt, _ = user_models.classifier_pair()
    code, report, md = run(capsys, tmp_path, "--models", str(flt))
    assert code == 0
    assert set(report["models"][flt.name]["schemes"].values()) == {"float32"}
    for cid in ("C4-full-int", "C5-per-axis"):
        c = claim(report, cid, device="any")
        assert c["verdict"] == "SKIP" and "float32 file" in c["reason"], c
    assert "read from the file: **float32**" in md


def test_a_users_file_is_not_judged_with_the_guides_bit_width_probe(user_models, capsys, tmp_path):
    int8, flt, _ = user_models.classifier_pair()
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", "cpu", "--out", str(out), "--models", f"{int8}={flt}",
                     *[a for a in FAST if a != "--skip-bitwidth"]])
    report = json.loads((out / "report.json").read_text())
    assert code == 0
    assert not [c for c in report["claims"] if c["model"] == "bitwidth-probe" or c["id"] == "C6-8bit-only"]


def test_a_uint8_classifier_fed_its_own_bytes_gets_the_raw_runtimes_top1_on_every_device(
        user_models, capsys, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = user_models.uint8_io_model()
    x, y = (np.load(user_models.classifier_dataset_npz())[k] for k in ("x", "y"))
    interpreter = Interpreter(model_path=str(model))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = inp["quantization"]
    raw = np.clip(np.round(x / scale) + zero, 0, 255).astype(np.uint8)   # the model's own input bytes
    npz = tmp_path / "bytes.npz"
    np.savez(npz, x=raw, y=y)
    interpreter.resize_tensor_input(inp["index"], [len(raw), *raw.shape[1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], raw)
    interpreter.invoke()
    raw_top1 = float(np.mean(np.argmax(interpreter.get_tensor(out["index"]), axis=-1) == y))

    code, report, _ = run(capsys, tmp_path, "--models", str(model), "--dataset", str(npz), devices="cpu,cpu-ref")
    assert code == 0
    section = report["models"][model.name]
    assert [f["scheme"] for f in section["dataset"]["feeds"]] == ["native"]
    for device in ("cpu", "cpu-ref"):
        accuracy = section["devices"][device]["accuracy"]["int8"]
        assert accuracy["n"] == len(y) and accuracy["rate"] == pytest.approx(raw_top1, abs=1 / len(y)), device
