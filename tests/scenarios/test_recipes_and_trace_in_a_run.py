"""The recipe axis and the per-layer trace as a user meets them: through `qat-harness run`
and `qat-harness trace`."""
import json

import pytest

from qat_harness import cli

pytest_plugins = ["user_models"]
FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1", "--fail-on", "never"]


def _claims(report, cid):
    return {c["device"]: c for c in report["claims"] if c["id"] == cid}


@pytest.mark.slow
def test_run_with_recipes_finds_the_blockwise_reference_kernel_disagreement(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["run", "--models", "digits_cnn", "--devices", "cpu,cpu-ref", "--out", str(out),
                     "--recipes", "int4-weight,int4-blockwise", *FAST])
    assert code == 0, capsys.readouterr().err[-2000:]
    report = json.loads((out / "report.json").read_text())
    k1 = _claims(report, "K1-cross-kernel")
    assert k1["recipe:int4-weight"]["verdict"] == "PASS"
    blockwise = k1["recipe:int4-blockwise"]
    assert blockwise["verdict"] == "FAIL" and "cpu-ref" in blockwise["reason"], blockwise["reason"]
    c6 = [c for c in report["claims"] if c["id"] == "C6-8bit-only" and c["model"] == "digits_cnn"]
    assert len(c6) == 1 and "dated" in c6[0]["reason"]
    md = (out / "report.md").read_text()
    assert "Quantization recipes" in md and "int4-blockwise" in md


def test_unknown_recipe_is_a_one_line_usage_error(tmp_path, capsys):
    code = cli.main(["run", "--models", "digits_cnn", "--recipes", "int3-magic", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_USAGE and err[-1].startswith("qat-harness: error: --recipes") and "int4-weight" in err[-1]


def _unrelated_float_model(folder):
    """A float model with the classifier's signature but other (untrained) weights: its answers
    and the int8 classifier's part ways, so agreement fails and the run traces it."""
    import tf_keras as keras
    from user_models import IMAGE_SHAPE, NUM_OUTPUTS

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input(IMAGE_SHAPE), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(NUM_OUTPUTS, activation="softmax")])
    path = folder / "unrelated_float.tflite"
    path.write_bytes(to_tflite(model, full_int8=False))
    return path


def test_a_run_traces_a_model_whose_int8_and_float_part_ways(user_models, tmp_path, capsys):
    int8, _, _ = user_models.classifier_pair()
    flt = _unrelated_float_model(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["run", "--models", f"{int8}={flt}", "--devices", "cpu", "--out", str(out),
                     "--dataset", str(user_models.classifier_dataset_npz()), *FAST])
    assert code == 0, capsys.readouterr().err[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert _claims(report, "A2-agreement")["cpu"]["verdict"] in ("WARN", "FAIL")
    trace = report["models"][int8.name]["devices"]["cpu"]["trace"]
    assert trace["markdown"].endswith("trace.md") and (out / "trace").is_dir()
    assert "Per-layer trace" in (out / "report.md").read_text()


def test_trace_command_writes_its_files(user_models, tmp_path, capsys):
    int8, flt, _ = user_models.classifier_pair()
    out = tmp_path / "trace"
    code = cli.main(["trace", "--models", f"{int8}={flt}", "--devices", "cpu", "--out", str(out)])
    assert code in (0, 1), capsys.readouterr().err[-2000:]
    folder = out / int8.name
    data = json.loads((folder / "trace.json").read_text())
    assert data["ops"] and (folder / "trace.md").exists()
