"""Your own model through every claim: a .tflite (int8, with or without its float pair, uint8,
int16, several inputs and outputs, float or class-id outputs, an Edge-TPU-compiled one), a
tf_keras .h5, a Keras 3 .keras, a factory; and the bad inputs, each a one-line error with
nothing measured lost."""
import json

import pytest

from qat_harness import cli

pytest_plugins = ["user_models", "pytester"]

FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1",
        "--fail-on", "never"]


def run(capsys, tmp_path, *args, devices="cpu,cpu-ref"):
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", devices, "--out", str(out), *FAST, *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, err, report


def claim(report, cid, device="any", model=None):
    found = [c for c in report["claims"] if c["id"] == cid and c["device"] == device
             and (model is None or c["model"] == model)]
    assert len(found) == 1, (cid, device, [(c["id"], c["model"], c["device"]) for c in report["claims"]])
    return found[0]


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("qat-harness: error:")]
    assert lines, err
    return lines[-1]


# -- .tflite files ---------------------------------------------------------------------------------
def test_int8_and_float_pair_with_npz_gets_every_claim(user_models, capsys, tmp_path):
    int8, flt, _ = user_models.classifier_pair()
    code, _, report = run(capsys, tmp_path, "--models", f"{int8}={flt}",
                          "--dataset", str(user_models.classifier_dataset_npz()))
    assert code == 0 and report["status"] == "complete"
    name = int8.name
    c1 = claim(report, "C1-size")  # a model this small is mostly flatbuffer overhead: judged as it is
    assert c1["measured"] > 1 and " int8 " in c1["reason"] and "QAT" not in c1["reason"]
    assert claim(report, "C4-full-int")["verdict"] == "PASS"
    assert claim(report, "C5-per-axis")["verdict"] == "PASS"
    a2 = claim(report, "A2-agreement", "cpu")
    assert a2["verdict"] == "PASS" and a2["details"]["wilson"]["n"] == 200  # nothing trains: all are evaluated
    a1 = claim(report, "A1-accuracy", "cpu")
    assert a1["details"]["int8_top1"] >= 0.9, a1["reason"]
    assert claim(report, "C2-cpu-latency", "cpu")["verdict"] in ("PASS", "WARN", "FAIL")
    diff = report["models"][name]["devices"]["cpu"]["vs_reference_kernels"]
    assert diff["domain"] == "int8 steps" and diff["max_steps"] <= 3
    assert report["models"][name]["artifacts"]["folder"] is None  # run as given, nothing built


def test_int8_alone_measures_what_it_can_and_says_how_to_give_the_float(user_models, capsys, tmp_path):
    int8, _, _ = user_models.classifier_pair()
    code, _, report = run(capsys, tmp_path, "--models", str(int8))
    assert code == 0
    for cid, dev in (("C1-size", "any"), ("A1-accuracy", "cpu"), ("A2-agreement", "cpu"),
                     ("C2-cpu-latency", "cpu")):
        c = claim(report, cid, dev)
        assert c["verdict"] == "SKIP" and "--float-model" in c["reason"], c
    assert claim(report, "C4-full-int")["verdict"] == "PASS"
    cpu = report["models"][int8.name]["devices"]["cpu"]
    assert cpu["latency"]["int8"]["n"] >= 5 and "float" not in cpu["latency"]
    assert cpu["vs_reference_kernels"]["fraction_exact"] > 0.9


def test_float_model_option_pairs_a_single_entry(user_models, capsys, tmp_path):
    int8, flt, _ = user_models.classifier_pair()
    code, _, report = run(capsys, tmp_path, "--models", str(int8), "--float-model", str(flt),
                          devices="cpu")
    assert code == 0 and claim(report, "C1-size")["measured"] > 1


def test_image_folder_is_scored_through_the_labels_file(user_models, capsys, tmp_path):
    int8, flt, _ = user_models.classifier_pair()
    folder, labels = user_models.classifier_image_folder()
    code, _, report = run(capsys, tmp_path, "--models", f"{int8}={flt}", "--dataset", str(folder),
                          "--labels", str(labels), "--preprocess", "unit", devices="cpu")
    assert code == 0
    a1 = claim(report, "A1-accuracy", "cpu")
    assert a1["details"]["int8_top1"] >= 0.9, a1["reason"]
    described = report["models"][int8.name]["dataset"]["description"]
    assert "[0, 1]" in described and labels.name in described
    # the same folder scored by sorted folder order is wrong: the labels file is what fixes it
    code, _, wrong = run(capsys, tmp_path / "sorted", "--models", f"{int8}={flt}", "--dataset", str(folder),
                         "--preprocess", "unit", devices="cpu")
    assert claim(wrong, "A1-accuracy", "cpu")["details"]["int8_top1"] < 0.5


@pytest.mark.parametrize("maker,dtype", [("uint8_io_model", "uint8"), ("int16_model", "int16")])
def test_other_integer_io_types_are_fed_and_compared_in_their_own_steps(user_models, capsys, tmp_path,
                                                                       maker, dtype):
    path = getattr(user_models, maker)()
    code, _, report = run(capsys, tmp_path, "--models", str(path))
    assert code == 0
    c4 = claim(report, "C4-full-int")
    # uint8 io around an int8 body is full-integer; int16 io is not the 8-bit io C4 asks for: it says what it found
    assert c4["verdict"] == ("PASS" if dtype == "uint8" else "FAIL") and dtype in c4["reason"], c4
    cpu = report["models"][path.name]["devices"]["cpu"]
    assert not cpu.get("errors"), cpu.get("errors")
    assert cpu["vs_reference_kernels"]["domain"] == f"{dtype} steps"


def test_legacy_uint8_per_tensor_model_is_measured_and_called_what_it_is(user_models, capsys, tmp_path):
    path = user_models.legacy_uint8_model()
    code, _, report = run(capsys, tmp_path, "--models", str(path))
    assert code == 0
    c4 = claim(report, "C4-full-int")
    assert c4["verdict"] == "PASS" and "uint8" in c4["reason"], c4
    c5 = claim(report, "C5-per-axis")  # the legacy uint8 spec has no per-axis form: a WARN, said plainly
    assert c5["verdict"] == "WARN" and "per-tensor" in c5["reason"], c5
    assert report["models"][path.name]["devices"]["cpu"]["latency"]["int8"]["n"] >= 5


def test_every_input_fed_and_every_output_compared(user_models, capsys, tmp_path):
    int8, flt = user_models.multi_io_pair()
    code, _, report = run(capsys, tmp_path, "--models", f"{int8}={flt}")
    assert code == 0
    cpu = report["models"][int8.name]["devices"]["cpu"]
    assert not cpu.get("errors"), cpu.get("errors")
    diffs = cpu["vs_reference_kernels_outputs"]
    assert len(diffs) == 2 and all(d["domain"] == "int8 steps" for d in diffs)
    assert cpu["latency"]["float"]["n"] >= 5 and cpu["latency"]["int8"]["n"] >= 5


def test_float_and_class_id_outputs_are_compared_in_their_domain(user_models, capsys, tmp_path):
    code, _, report = run(capsys, tmp_path, "--models",
                          f"{user_models.float_output_model()},{user_models.argmax_int64_model()}")
    assert code == 0
    float_out = report["models"][user_models.float_output_model().name]["devices"]["cpu"]
    assert float_out["vs_reference_kernels"]["domain"] == "float"
    assert "max_abs" in float_out["vs_reference_kernels"]
    ids = report["models"][user_models.argmax_int64_model().name]["devices"]["cpu"]
    assert ids["vs_reference_kernels"]["domain"] == "ids" and "max_steps" not in ids["vs_reference_kernels"]


def test_an_edgetpu_compiled_model_is_recognised_not_vacuously_passed(user_models, capsys, tmp_path):
    path = user_models.edgetpu_compiled_model()
    code, _, report = run(capsys, tmp_path, "--models", str(path), devices="cpu")
    for cid in ("C4-full-int", "C5-per-axis", "M3-bn-fold"):
        c = claim(report, cid)
        assert c["verdict"] == "SKIP" and "edgetpu-custom-op" in c["reason"], c
    error = report["models"][path.name]["devices"]["cpu"]["errors"]["run:int8"]
    assert "edgetpu-custom-op" in error and "--devices edgetpu" in error and "\n" not in error


# -- Keras models ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.heavy   # two QAT builds; each form's loading is test_model_file_security's in CI
def test_tf_keras_h5_and_keras3_file_go_through_qat_to_a_full_report(user_models, capsys, tmp_path):
    h5, keras3 = user_models.keras_h5_and_keras3()
    code, _, report = run(capsys, tmp_path, "--models", f"{h5},{keras3}",
                          "--dataset", str(user_models.classifier_dataset_npz()), devices="cpu")
    assert code == 0, report.get("errors")
    for name in (h5.name, keras3.name):
        assert set(report["models"][name]["artifacts"]["files"]) == {"float", "ptq_int8", "qat_int8"}
        assert claim(report, "C4-full-int", model=name)["verdict"] == "PASS"
        assert claim(report, "C5-per-axis", model=name)["verdict"] == "PASS"
        assert claim(report, "M3-bn-fold", model=name)["verdict"] == "PASS"
        assert claim(report, "A2-agreement", "cpu", model=name)["measured"] >= 0.9
        assert report["models"][name]["keras"]["qat_calibration"].startswith("fine-tuned")
    notes = " ".join(n["text"] for n in report["notes"] if n["model"] == keras3.name)
    assert "translated from Keras 3" in notes and "agree within" in notes


@pytest.mark.slow
@pytest.mark.heavy   # a QAT build of its own; factories are test_user_models_factory's in CI
def test_factory_with_its_own_dataset(user_models, capsys, tmp_path, monkeypatch):
    from user_models import FACTORY_WITH_DATA_FUNCTION

    folder, ref = user_models.factory_module(tmp_path / "user_code")
    monkeypatch.chdir(folder)  # the factory's module is found from the folder the user runs in
    ref = f"{ref.split(':')[0]}:{FACTORY_WITH_DATA_FUNCTION}"
    code, _, report = run(capsys, tmp_path, "--models", ref, devices="cpu")
    assert code == 0, report.get("errors")
    assert report["models"][ref]["dataset"]["name"].startswith("npz:")
    assert claim(report, "C4-full-int", model=ref)["verdict"] == "PASS"


# -- bad input: one line, exit 2, nothing measured lost -------------------------------------------
def test_missing_file_and_not_a_flatbuffer(user_models, capsys, tmp_path):
    code, err, _ = run(capsys, tmp_path, "--models", str(tmp_path / "nope.tflite"))
    assert code == cli.EXIT_USAGE and "model file not found" in one_line_error(err)
    code, err, _ = run(capsys, tmp_path, "--models", str(user_models.not_a_flatbuffer()))
    assert code == cli.EXIT_USAGE and "not a TFLite flatbuffer" in one_line_error(err)


def test_npz_without_x(user_models, capsys, tmp_path):
    int8, _, _ = user_models.classifier_pair()
    code, err, report = run(capsys, tmp_path, "--models", str(int8),
                            "--dataset", str(user_models.npz_without_x()))
    assert code == cli.EXIT_USAGE and "has no 'x' array" in one_line_error(err)
    assert report["status"] == "complete" and "has no 'x' array" in report["models"][int8.name]["error"]


def test_keras3_untranslatable_layer_is_the_models_error_row_before_anything_loads(user_models, capsys, tmp_path):
    path = user_models.keras3_untranslatable()  # a model the harness cannot build, not a wrong entry
    code, _, report = run(capsys, tmp_path, "--models", str(path), devices="cpu")
    assert code == 0 and report["status"] == "complete"  # --fail-on never
    assert "cannot be translated" in report["models"][path.name]["error"]
    assert claim(report, "C1-size", model=path.name)["verdict"] == "ERROR"
    assert not (tmp_path / "out" / "work" / path.name / "describe").exists()


@pytest.mark.parametrize("maker,words", [("keras_with_custom_layer", "custom class"),
                                         ("keras_with_lambda", "Lambda layer")])
def test_keras_files_with_code_are_refused_and_other_models_still_measured(user_models, capsys, tmp_path,
                                                                           maker, words):
    int8, _, _ = user_models.classifier_pair()
    bad = getattr(user_models, maker)()
    code, err, report = run(capsys, tmp_path, "--models", f"{int8},{bad}", devices="cpu")
    line = one_line_error(err)
    assert code == cli.EXIT_USAGE and words in line and "module:function" in line
    assert claim(report, "C4-full-int", model=int8.name)["verdict"] == "PASS"  # measured, kept
    assert words in report["models"][bad.name]["error"]


@pytest.mark.slow
def test_packaged_conformance_tests_run_on_a_users_model_from_any_folder(user_models, pytester):
    int8, flt, _ = user_models.classifier_pair()
    pytester.makeconftest("")  # a user's project of its own, with none of this repository's tests
    result = pytester.runpytest_subprocess(
        "--pyargs", "qat_harness.conformance", "--device=cpu", "-p", "no:cacheprovider", "-rA",
        f"--conformance-models={int8}={flt}", f"--conformance-dataset={user_models.classifier_dataset_npz()}")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 5, result.stdout.str()[-3000:]
    assert outcomes.get("failed", 0) <= 1  # C1 may FAIL for a model this small: its size is mostly overhead
    result.stdout.fnmatch_lines(["PASSED *test_device_claim?cpu-A2-agreement?*", "FAILED *C1-size*"])


def _with_op_version(path, tmp_path, version: int):
    """The same model with its first operator code at a version LiteRT does not have: the
    flatbuffer still parses, but no runtime can load it."""
    import flatbuffers

    from qat_harness.core import tflite

    schema = tflite.load_schema("test_schema_writer")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
    model.operatorCodes[0].version = version
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = tmp_path / "unloadable_int8.tflite"
    out.write_bytes(bytes(builder.Output()))
    return out


def test_a_file_that_parses_but_does_not_load_never_keeps_a_structure_pass(user_models, capsys, tmp_path):
    int8, _, _ = user_models.classifier_pair()
    unloadable = _with_op_version(int8, tmp_path, 99)
    code, _, report = run(capsys, tmp_path, "--models", str(unloadable))
    c4 = claim(report, "C4-full-int")
    assert c4["verdict"] == "ERROR" and "no device could load the file" in c4["reason"], c4
    error = report["models"][unloadable.name]["devices"]["cpu"]["errors"]["run:int8"]
    assert "version" in error and "\n" not in error
