"""The layer support matrix: verdict logic on made-up inputs (fast, no TensorFlow), what is
read from tfmot's registry, and one real run of a handful of probes on the CPU: a supported
probe (Conv2D/DepthwiseConv2D + BatchNorm, folded), unsupported ones (LSTM,
LayerNormalization, a subclassed model), user probes (plain, with a custom QuantizeConfig)
and user probes that abort, hang or raise, which must become ERRORs while the rest goes on.
The full matrix is in test_layers_full.py (slow)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qat_harness.claims import judge_layer_matrix
from qat_harness.claims.layer_matrix import LayerMatrix
from qat_harness.core.errors import UsageError
from qat_harness.core.tflite import TensorInfo
from qat_harness.devices.base import Delegation, Role
from qat_harness.layers import matrix as layers
from qat_harness.layers import report as layers_report
from qat_harness.layers import stages, tree
from qat_harness.layers.cells import StepDistance
from qat_harness.layers.tasks import available_probes
from qat_harness.layers.tree import ProbeEntry
from qat_harness.results import Verdict

TESTS = Path(__file__).resolve().parents[2]
HANG_TIMEOUT_S = 25
BUILTIN = ["conv2d_bn", "depthwise_conv2d_bn", "lstm", "layer_normalization", "subclassed_model"]
USER = [f"probes_user_example:{f}" for f in
        ("abort_probe", "dense_probe", "hang_probe", "custom_layer_probe", "broken_probe",
         "custom_layer_without_config")]


def _out_tensor(scale=0.05, zp=0, dtype="int8"):
    return TensorInfo(index=0, name="out", dtype=dtype, shape=[1, 4], is_constant=False,
                      scales=[scale] if dtype == "int8" else None,
                      zero_points=[zp] if dtype == "int8" else None, quantized_dimension=0)


# -- numeric verdicts -----------------------------------------------------------------------------
def test_numeric_identical_outputs_pass():
    keras_out = (np.arange(8, dtype=np.float32).reshape(2, 4) - 4) * 0.05
    q = np.round(keras_out / 0.05).astype(np.int8)
    cell = stages.numeric_stage(Role.HOST_CPU, q, q.copy(), "", keras_out, _out_tensor())
    assert cell.verdict is Verdict.PASS
    assert cell.details.vs_keras.max_steps == 0 and cell.details.vs_keras.within_1_step == 1.0
    assert cell.details.vs_reference.max_steps == 0
    assert cell.to_json()["details"]["vs_reference"] == {"max_steps": 0, "mean_steps": 0.0}


@pytest.mark.parametrize("offset,verdict", [(2, "PASS"), (5, "WARN"), (20, "FAIL")])
def test_numeric_distance_to_keras_sets_the_verdict(offset, verdict):
    keras_out = np.zeros((3, 4), np.float32)
    q = np.full((3, 4), offset, np.int8)
    cell = stages.numeric_stage(Role.HOST_CPU, q, q.copy(), "", keras_out, _out_tensor())
    assert cell.verdict.value == verdict
    assert cell.details.vs_keras.max_steps == offset


def test_numeric_reference_outlier_is_named_not_failed():
    keras_out = np.zeros((2, 4), np.float32)
    device = np.zeros((2, 4), np.int8)           # agrees with Keras
    reference = np.full((2, 4), 5, np.int8)      # the reference kernel is off by 5
    cell = stages.numeric_stage(Role.HOST_CPU, device, reference, "", keras_out, _out_tensor())
    assert cell.verdict is Verdict.WARN
    assert "reference kernels are the further" in cell.reason
    assert cell.details.reference_vs_keras == StepDistance(5, 5.0)


def test_numeric_device_far_from_both_fails():
    keras_out = np.zeros((2, 4), np.float32)
    device = np.full((2, 4), 9, np.int8)
    reference = np.zeros((2, 4), np.int8)
    cell = stages.numeric_stage(Role.ACCELERATOR, device, reference, "", keras_out, _out_tensor())
    assert cell.verdict is Verdict.FAIL
    assert "max 9 step" in cell.reason


def test_numeric_float_output_is_skipped():
    cell = stages.numeric_stage(Role.HOST_CPU, np.zeros((1, 4), np.float32), None, "", np.zeros((1, 4)),
                                _out_tensor(dtype="float32"))
    assert cell.verdict is Verdict.SKIP and "float32" in cell.reason


# -- delegation verdicts --------------------------------------------------------------------------
def test_delegation_verdicts():
    full = Delegation("xnnpack", ops_total=3, ops_delegated=3)
    part = Delegation("xnnpack", ops_total=4, ops_delegated=1, fallback=[("SOFTMAX", "builtin")])
    none_cpu = Delegation("xnnpack", ops_total=2, ops_delegated=0, fallback=[("TRANSPOSE_CONV", "x")])
    none_tpu = Delegation("edgetpu", ops_total=2, ops_delegated=0, fallback=[("LOGISTIC", "x")])
    assert stages.delegated_stage(Role.HOST_CPU, full).verdict is Verdict.PASS
    cell = stages.delegated_stage(Role.HOST_CPU, part)
    assert cell.verdict is Verdict.WARN and "SOFTMAX" in cell.reason and "1/4" in cell.reason
    assert stages.delegated_stage(Role.HOST_CPU, none_cpu).verdict is Verdict.WARN
    assert stages.delegated_stage(Role.ACCELERATOR, none_tpu).verdict is Verdict.FAIL
    assert stages.delegated_stage(Role.ORACLE, None).verdict is Verdict.SKIP


# -- documentation comparison ----------------------------------------------------------------------
def _entry(stages: dict, status="supported", predicts="PASS", claims=(), name="p"):
    return {"name": name, "layer": name, "claims": list(claims),
            "stages": {k: {"verdict": v, "reason": f"{k} said {v}"} for k, v in stages.items()},
            "documented": {"status": status, "summary": "s", "predicts": {"qat": predicts}}}


def _compare(entry: dict):
    loaded = ProbeEntry.load(entry)
    return stages.compare_with_documentation(loaded.documented, loaded.stages)


def test_documentation_mismatch_is_explicit():
    went_through = _entry({"qat": "WARN", "convert": "PASS"}, "not in registry", "FAIL")
    m = _compare(went_through)
    assert m.agrees is False and m.note.startswith("DIFFERS") and "(WARN: qat said WARN)" in m.note
    broken_later = _entry({"qat": "PASS", "convert": "PASS", "int8": "FAIL"})
    m = _compare(broken_later)
    assert m.agrees is False and "int8 is FAIL" in m.note
    refused = _entry({"qat": "FAIL"}, "not in registry", "FAIL")
    assert _compare(refused).agrees is True
    errored = _entry({"qat": "ERROR"})
    assert _compare(errored).agrees is None


# -- claims ---------------------------------------------------------------------------------------
_ALL_PASS = {"qat": "PASS", "convert": "PASS", "int8": "PASS", "cpu:runs": "PASS",
             "cpu:delegated": "PASS", "cpu:numeric": "PASS"}


def _m_claims(matrix: dict) -> list[dict]:
    return [c.to_dict() for c in judge_layer_matrix(LayerMatrix.from_json(matrix))]


def _matrix(*entries):
    return {"devices": {"cpu": {"available": True}}, "probes": list(entries)}


def test_m2_fails_when_an_allow_listed_layer_breaks():
    ok = _entry(_ALL_PASS, claims=["M2"], name="conv2d")
    bad = _entry({**_ALL_PASS, "int8": "FAIL"}, claims=["M2"], name="average_pooling2d")
    (m2,) = [c for c in _m_claims(_matrix(ok, bad)) if c["id"] == "M2-layers"]
    assert m2["verdict"] == "FAIL" and m2["device"] == "cpu"
    assert m2["measured"]["passing"] == 1 and "average_pooling2d" in m2["reason"]


def test_m4_reports_limits_and_m5_outdated_documentation():
    basic = _entry(_ALL_PASS, claims=["M4"], name="concat_channels")
    scaled = _entry({**_ALL_PASS, "cpu:numeric": "FAIL"}, claims=["M4"], name="concat_scaled_inputs")
    lstm = _entry(_ALL_PASS, claims=["M5"], name="lstm")
    claims = {c["id"]: c for c in _m_claims(_matrix(basic, scaled, lstm))}
    assert claims["M4-concat"]["verdict"] == "WARN" and "concat_scaled_inputs" in claims["M4-concat"]["reason"]
    assert claims["M5-rnn"]["verdict"] == "WARN" and "pessimistic" in claims["M5-rnn"]["reason"]
    for c in claims.values():
        assert set(c) >= {"id", "model", "device", "verdict", "measured", "expected", "reason"}
        assert c["model"] == "layer-probes"


def test_device_claims_skip_an_unavailable_device():
    ok = _entry(_ALL_PASS, claims=["M2"], name="conv2d")
    matrix = {"devices": {"cpu": {"available": True},
                          "nnapi": {"available": False, "reason": "no adb server"}},
              "probes": [ok]}
    m2 = {c["device"]: c for c in _m_claims(matrix) if c["id"] == "M2-layers"}
    assert m2["cpu"]["verdict"] == "PASS"
    assert m2["nnapi"]["verdict"] == "SKIP" and "no adb server" in m2["nnapi"]["reason"]


def test_m1_error_when_subclassed_crashes():
    seq = _entry(_ALL_PASS, claims=["M1"], name="sequential_model")
    sub = _entry({"qat": "ERROR"}, claims=["M1"], name="subclassed_model")
    (m1,) = [c for c in _m_claims(_matrix(seq, sub)) if c["id"] == "M1-api"]
    assert m1["verdict"] == "ERROR"


# -- input validation -------------------------------------------------------------------------------
def test_probe_catalogue_covers_the_issue():
    names = available_probes()
    assert len(names) >= 30
    for required in ("conv2d", "depthwise_conv2d", "separable_conv2d", "conv2d_transpose", "dense",
                     "relu", "relu6", "softmax", "add", "concat_channels", "average_pooling2d",
                     "max_pooling2d", "global_average_pooling2d", "upsampling2d_nearest", "reshape",
                     "flatten", "zero_padding2d", "conv2d_bn", "depthwise_conv2d_bn", "batchnorm_alone",
                     "concat_height", "concat_scaled_inputs", "lstm", "gru", "conv1d",
                     "layer_normalization", "multi_head_attention", "prelu", "elu", "embedding",
                     "subclassed_model", "nested_model", "lambda_layer"):
        assert required in names


@pytest.mark.parametrize("kwargs,message", [
    ({"layers": ["no_such_probe"]}, "unknown probe"),
    ({"layers": [], "user_probes": ["nocolon"]}, "MODULE:FUNCTION"),
    ({"layers": [], "user_probes": ["no_such_module_qat_xyz:f"]}, "cannot find module"),
    ({"layers": [], "devices": ["no-such-device"]}, "unknown device"),
])
def test_bad_input_is_a_usage_error(tmp_path, kwargs, message):
    args = {"devices": ["cpu"], "out_dir": tmp_path, **kwargs}
    with pytest.raises(UsageError, match=message):
        layers.run_layers(**args)


# -- what tfmot documents ----------------------------------------------------------------------------
def test_registry_is_read_from_tfmot():
    import tf_keras as keras

    from qat_harness.build import tfmot_registry as reg

    table = reg.registry_table()
    assert {"Conv2D", "DepthwiseConv2D", "Dense", "Concatenate", "MaxPooling2D"} <= set(table)
    assert not {"LSTM", "BatchNormalization", "LayerNormalization", "Conv1D"} & set(table)
    assert table["Conv2D"]["weights"] == ["kernel"]
    assert any(t["transform"] == "Conv2DBatchNormQuantize" for t in reg.layout_transforms())

    def doc(*layers_, shape=(8, 8, 3)):
        return reg.document_model(keras.Sequential([keras.Input(shape), *layers_]))

    folded = doc(keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization())
    assert folded["status"] == reg.CAVEAT and "Conv2DBatchNormQuantize" in folded["summary"]
    assert folded["predicts"]["qat"] == "PASS"
    alone = doc(keras.layers.BatchNormalization())
    assert alone["status"] == reg.NOT_IN_REGISTRY and alone["predicts"]["qat"] == "FAIL"
    rnn = doc(keras.layers.LSTM(4), shape=(5, 3))
    assert rnn["status"] == reg.NOT_IN_REGISTRY and "LSTMCell" in rnn["summary"]
    assert doc(keras.layers.Flatten(), keras.layers.Dense(3))["status"] == reg.SUPPORTED


# -- a real run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Five built-in and six user probes on the CPU, two children at a time."""
    out = tmp_path_factory.mktemp("layers")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), old]))
    messages = []
    try:
        report = layers.run_layers(BUILTIN, ["cpu"], out, user_probes=USER, progress=messages.append,
                                   timeout_s=HANG_TIMEOUT_S)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    matrix = report.to_json()
    return {"report": report, "matrix": matrix, "out": out, "messages": messages,
            "by_name": {p["name"]: p for p in matrix["probes"]}}


def _verdicts(entry):
    return {k: c["verdict"] for k, c in entry["stages"].items()}


def test_supported_probe_passes_everywhere_with_bn_folded(run):
    for name, op in (("conv2d_bn", "CONV_2D"), ("depthwise_conv2d_bn", "DEPTHWISE_CONV_2D")):
        entry = run["by_name"][name]
        assert set(_verdicts(entry).values()) == {"PASS"}, entry["stages"]
        assert set(entry["stages"]) >= {"qat", "convert", "int8", "bn_fold", "cpu:runs",
                                        "cpu:delegated", "cpu:numeric"}
        assert entry["details"]["tflite"]["ops"] == {op: 1}  # no MUL / ADD left of the BN
        assert entry["documented"]["status"] == "supported with caveat"
        assert entry["matches_documentation"]["agrees"] is True


@pytest.mark.parametrize("name,cls", [("lstm", "LSTM"), ("layer_normalization", "LayerNormalization")])
def test_unsupported_probe_fails_at_qat_with_reason(run, name, cls):
    entry = run["by_name"][name]
    assert entry["stages"]["qat"]["verdict"] == "FAIL"
    assert cls in entry["stages"]["qat"]["reason"] and "not supported" in entry["stages"]["qat"]["reason"]
    assert entry["first_failure"] == "qat"
    assert entry["stages"]["convert"]["verdict"] == "SKIP"
    assert entry["stages"]["cpu:runs"]["verdict"] == "SKIP"
    assert entry["documented"]["status"] == "not in registry"
    assert entry["matches_documentation"]["agrees"] is True


def test_subclassed_model_is_refused_cleanly(run):
    qat = run["by_name"]["subclassed_model"]["stages"]["qat"]
    assert qat["verdict"] == "FAIL" and "subclassed" in qat["reason"]


def test_user_probe_runs_through_every_stage(run):
    entry = run["by_name"]["probes_user_example:dense_probe"]
    assert entry["source"] == "user" and entry["layer"] == "Dense (user)"
    assert set(_verdicts(entry).values()) == {"PASS"}, entry["stages"]


def test_user_probe_with_custom_quantize_config(run):
    entry = run["by_name"]["probes_user_example:custom_layer_probe"]
    v = _verdicts(entry)
    assert v["qat"] == "PASS" and v["convert"] == "PASS" and v["int8"] == "PASS", entry["stages"]
    assert v["cpu:runs"] == "PASS"
    assert entry["details"]["custom_quantize_configs"] == ["ScaledDense"]
    assert "QuantizeConfig" in json.dumps(entry["documented"])
    without = run["by_name"]["probes_user_example:custom_layer_without_config"]
    assert without["stages"]["qat"]["verdict"] == "FAIL"
    assert "ScaledDense" in without["stages"]["qat"]["reason"]


def test_crashing_hanging_and_broken_probes_are_errors_and_the_matrix_goes_on(run):
    by = run["by_name"]
    assert len(by) == len(BUILTIN) + len(USER)
    abort = by["probes_user_example:abort_probe"]["stages"]["qat"]
    assert abort["verdict"] == "ERROR" and "SIGABRT" in abort["reason"] and "stage qat" in abort["reason"]
    hang = by["probes_user_example:hang_probe"]["stages"]["qat"]
    assert hang["verdict"] == "ERROR" and f"timed out after {HANG_TIMEOUT_S} s" in hang["reason"]
    broken = by["probes_user_example:broken_probe"]["stages"]["qat"]
    assert broken["verdict"] == "ERROR" and "ValueError" in broken["reason"]
    for name in ("probes_user_example:abort_probe", "probes_user_example:hang_probe"):
        assert by[name]["stages"]["cpu:numeric"]["verdict"] == "SKIP"
    # a probe queued after the abort still ran in a fresh child
    assert by["probes_user_example:dense_probe"]["stages"]["qat"]["verdict"] == "PASS"


def test_files_and_claims(run):
    out, matrix = run["out"], run["matrix"]
    on_disk = json.loads((out / "layers.json").read_text())
    assert on_disk == json.loads(json.dumps(matrix))      # the file is the typed matrix's to_json
    assert tree.load(on_disk).to_json() == on_disk        # ...and types again without a loss
    assert stages.error_cells(on_disk) == stages.error_cells(run["report"]) != []
    assert on_disk["status"] == "complete" and len(on_disk["probes"]) == len(matrix["probes"])
    for entry in on_disk["probes"]:
        assert {"layer", "stages", "documented", "matches_documentation"} <= set(entry)
        for cell in entry["stages"].values():
            assert cell["verdict"] in {"PASS", "WARN", "FAIL", "SKIP", "ERROR"} and cell["reason"]
    md = (out / "layers.md").read_text()
    assert "| probe | layer | documented | qat |" in md
    for entry in matrix["probes"]:
        assert f"| {entry['name']} |" in md
    assert "SIGABRT" in md and "## Where the measurement differs" in md
    claims = {c["id"]: c for c in matrix["claims"]}
    assert set(claims) == {"M1-api", "M2-layers", "M3-bn-fold", "M4-concat", "M5-rnn"}
    assert claims["M3-bn-fold"]["verdict"] == "PASS"
    assert claims["M5-rnn"]["verdict"] == "PASS"            # LSTM refused cleanly
    assert claims["M1-api"]["verdict"] == "PASS"            # subclassed refused cleanly
    assert claims["M4-concat"]["verdict"] == "SKIP"         # no concat probe in this run
    table = layers_report.render_table(run["report"])
    assert "conv2d_bn" in table and "M3-bn-fold" in table
    assert any("probes in" in m for m in run["messages"])


@pytest.mark.simulated
def test_accelerator_adapter_plugs_in_through_the_registry(tmp_path, monkeypatch):
    """The Edge TPU adapter, driven by the test suite's fake compiler, fills its own cells;
    an operator the fake leaves on the CPU shows up as partial delegation."""
    from simulators.edgetpu.support import write_launcher

    launcher = write_launcher(tmp_path / "bin")  # the fake compiler, on this interpreter
    monkeypatch.setenv("PATH", f"{launcher.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("QAT_EDGETPU_SIM_UNMAPPABLE", "LOGISTIC")
    m = layers.run_layers(["conv2d", "activation_sigmoid"], ["edgetpu"], tmp_path).to_json()
    if not m["devices"]["edgetpu"]["available"]:
        pytest.skip(f"edgetpu adapter not usable here: {m['devices']['edgetpu']['reason']}")
    by = {p["name"]: p["stages"] for p in m["probes"]}
    assert by["conv2d"]["edgetpu:runs"]["verdict"] == "PASS"
    assert by["conv2d"]["edgetpu:delegated"]["verdict"] == "PASS"
    sig = by["activation_sigmoid"]["edgetpu:delegated"]
    assert sig["verdict"] == "WARN" and "LOGISTIC" in sig["reason"]
    assert all(by[p][k].get("simulated") for p in by for k in by[p] if k.startswith("edgetpu:"))
    (m2,) = [c for c in m["claims"] if c["id"] == "M2-layers"]
    assert m2["device"] == "edgetpu" and m2["simulated"] is True
