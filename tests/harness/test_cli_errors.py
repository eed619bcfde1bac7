"""Bad input gets one clear line and a non-zero exit, never a traceback."""
import json

from qat_harness import cli


def _run(capsys, *argv):
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _assert_one_line(err: str, *needles: str):
    lines = [l for l in err.strip().splitlines() if l.startswith("qat-harness:")]
    assert lines, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[-1], lines[-1]


def test_unknown_model(capsys, tmp_path):
    code, err = _run(capsys, "run", "--models", "no_such_model", "--out", str(tmp_path))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "unknown model 'no_such_model'", "digits_cnn")


def test_unknown_device(capsys, tmp_path):
    code, err = _run(capsys, "run", "--models", "digits_cnn", "--devices", "tpu9000", "--out", str(tmp_path))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "unknown device 'tpu9000'")


def test_missing_dataset_folder(capsys, tmp_path):
    code, err = _run(capsys, "run", "--models", "mobilenet_v2", "--dataset", str(tmp_path / "nope"),
                     "--out", str(tmp_path))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "dataset folder not found")


def test_missing_weights_file(capsys, tmp_path):
    code, err = _run(capsys, "run", "--models", "mobilenet_v2", "--weights", str(tmp_path / "w.h5"),
                     "--out", str(tmp_path))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "weights file not found")


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = _run(capsys, "run", "--models", "digits_cnn", "--out", str(blocker / "out"))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "not writable")


def test_weights_that_do_not_match_the_model(capsys, tmp_path):
    import tf_keras as keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    weights = tmp_path / "other.weights.h5"
    other.save_weights(str(weights))
    out = tmp_path / "out"
    code, err = _run(capsys, "run", "--models", "mobilenet_v1", "--input-size", "32",
                     "--weights", str(weights), "--out", str(out), "--skip-bitwidth")
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "does not match")
    report = json.loads((out / "report.json").read_text())
    assert "does not match" in report["models"]["mobilenet_v1"]["error"]
    assert report["status"] == "complete"


def test_image_folder_without_classes(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    code, err = _run(capsys, "run", "--models", "mobilenet_v2", "--input-size", "32",
                     "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "out"))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "no class sub-folders")


def test_compare_rejects_a_file_that_is_not_a_report(capsys, tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{\"hello\": 1}")
    code, err = _run(capsys, "compare", str(bad), str(bad))
    assert code == cli.EXIT_USAGE
    _assert_one_line(err, "not a qat-harness report")
