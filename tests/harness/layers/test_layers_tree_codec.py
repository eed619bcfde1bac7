"""The layer matrix's typed tree and its codec, without TensorFlow: every kind of cell's
measurements is written as layers.json has always had them and types again from that JSON
without a loss; the probe child's answer crosses the protocol typed both ways."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qat_harness.claims import judge_layer_matrix
from qat_harness.claims.layer_matrix import Cell
from qat_harness.core.tflite import TensorInfo
from qat_harness.devices.base import Delegation, Role
from qat_harness.environment import environment
from qat_harness.layers import report as layers_report
from qat_harness.layers import stages, tree
from qat_harness.layers.cells import (
    BnFoldDetails,
    ConvertDetails,
    Int8Details,
    KernelPairDetails,
    KernelsDetails,
    NumericDetails,
    RecipeDeviceDetails,
    StageCell,
    WeightsDetails,
    WeightTensor,
    cell,
    details_type,
)
from qat_harness.layers.protocol import (
    Documentation,
    FloatModel,
    FloatModelFiles,
    ProbeFiles,
    ProbeLayer,
    ProbeResult,
)
from qat_harness.measure.difference import output_difference
from qat_harness.recipes.catalog import RECIPES
from qat_harness.results import Verdict
from qat_harness.stats import wilson_interval

P, F, S = Verdict.PASS, Verdict.FAIL, Verdict.SKIP


def _tensor() -> TensorInfo:
    return TensorInfo(index=0, name="out", dtype="int8", shape=[1, 4], is_constant=False, scales=[0.05],
                      zero_points=[0], quantized_dimension=0)


def _entry() -> tree.ProbeEntry:
    keras_out = np.zeros((2, 4), np.float32)
    numeric = stages.numeric_stage(Role.HOST_CPU, np.full((2, 4), 5, np.int8), np.zeros((2, 4), np.int8), "",
                                   keras_out, _tensor())
    top1 = wilson_interval(15, 16)
    difference = output_difference(np.ones(4), np.zeros(4))
    cells = {
        "qat": cell(P, "applied"), "convert": cell(P, "full-int8"),
        "int8": cell(F, "1 float op", Int8Details({"CONV_2D": 1}, ["LOGISTIC"], 2)),
        "bn_fold": cell(F, "not folded", BnFoldDetails([3])),
        "cpu:runs": cell(P, "ran 16 inputs"),
        "cpu:delegated": cell(S, "xnnpack: delegation not measurable", Delegation("xnnpack")),
        "cpu:numeric": StageCell(numeric.verdict, numeric.reason, numeric.details, trace="traces/p/cpu/trace.md",
                                 trace_culprit="op 3 LOGISTIC (sigmoid), device"),
    }
    recipe_cells = {
        "recipe:float": cell(P, "float .tflite"),
        "recipe:int4-weight:convert": cell(P, "file", ConvertDetails(10, 0.5, False, 1.5, "/x.tflite", "0.1")),
        "recipe:int4-weight:weights": cell(P, "int4", WeightsDetails(
            "int4", ["dense"], [], [WeightTensor("dense", "dense/MatMul", "FULLY_CONNECTED", (4, 8), "int4")])),
        "cpu:recipe:int4-weight": cell(P, "ran 16 inputs", RecipeDeviceDetails(
            {"cpu-ref": KernelPairDetails(top1, None)}, top1, difference, True)),
        "recipe:int4-weight:kernels": cell(P, "agree", KernelsDetails({"min": 0.9}, ["cpu", "cpu-ref"], [], {})),
    }
    doc = Documentation("supported", "registry", [{"class": "Dense"}], "every layer is in the registry",
                        {"qat": "PASS"})
    entry = tree.ProbeEntry("dense", "Dense", "core", "a Dense layer", ["M2"], "built-in", cells, doc,
                            stages.compare_with_documentation(doc, cells), recipe_stages=recipe_cells)
    entry.details = tree.ProbeDetails(1.5, {"qat_s": 0.5}, ["ScaledDense"], tree.TfliteSummary(1000, {"CONV_2D": 1}),
                                      {"cpu": numeric.details})
    entry.first_failure = stages.first_failure(cells, list(cells))
    return entry


def _matrix() -> tree.MatrixReport:
    from qat_harness.claims import AllowListedLayers
    from qat_harness.layers.recipes import thresholds

    matrix = tree.MatrixReport(
        started="2026-12-06T00:00:00+00:00", status="complete", environment=environment(2),
        devices={"cpu": tree.MatrixDeviceInfo(True, "ok", False, Role.HOST_CPU)},
        stage_keys=["qat", "convert", "int8", "bn_fold", "cpu:runs", "cpu:delegated", "cpu:numeric"],
        thresholds=tree.NumericThresholds(**AllowListedLayers.thresholds()),
        settings=tree.MatrixSettings(16, 2, 300.0), probes=[_entry()],
        recipe_axis=tree.RecipeAxisInfo({"int4-weight": RECIPES["int4-weight"]}, "0.1", ["cpu", "cpu-ref"],
                                        "/cache", [], thresholds()))
    matrix.claims = judge_layer_matrix(matrix.layer_matrix(set()))
    return matrix


def test_every_cell_kind_is_written_as_before_and_types_again():
    matrix = _matrix()
    data = json.loads(json.dumps(matrix.to_json()))
    cells = data["probes"][0]["stages"]
    assert cells["int8"]["details"] == {"ops": {"CONV_2D": 1}, "float_ops": ["LOGISTIC"], "dequantize_ops": 2}
    assert cells["cpu:numeric"]["details"] == {
        "output_scale": 0.05, "output_zero_point": 0, "vs_reference": {"max_steps": 5, "mean_steps": 5.0},
        "vs_keras": {"max_steps": 5, "mean_steps": 5.0, "within_1_step": 0.0},
        "reference_vs_keras": {"max_steps": 0, "mean_steps": 0.0}}
    assert list(cells["cpu:numeric"])[-2:] == ["trace", "trace_culprit"]
    assert cells["cpu:delegated"]["details"]["fraction"] is None
    recipe = data["probes"][0]["recipe_stages"]["cpu:recipe:int4-weight"]["details"]
    assert list(recipe) == ["float_agreement", "float_difference", "kernels", "simulated"]
    assert recipe["kernels"]["cpu-ref"]["max_abs"] is None  # kept, as layers.json always had it
    assert data["probes"][0]["details"]["tflite"] == {"size_bytes": 1000, "ops": {"CONV_2D": 1}}
    assert data["probes"][0]["documented"]["predicts"] == {"qat": "PASS"}
    assert data["devices"]["cpu"]["role"] == Role.HOST_CPU.value
    assert {c["id"] for c in data["claims"]} >= {"M2-layers"}

    loaded = tree.load(data)
    assert loaded.to_json() == data
    entry = loaded.probes[0]
    assert isinstance(entry.stages["cpu:numeric"].details, NumericDetails)
    assert entry.stages["cpu:numeric"].details == matrix.probes[0].stages["cpu:numeric"].details
    assert entry.recipe_stages is not None
    weights = entry.recipe_stages["recipe:int4-weight:weights"].details
    assert isinstance(weights, WeightsDetails) and weights.tensors[0].shape == (4, 8)
    assert layers_report.markdown(loaded) == layers_report.markdown(matrix)


def test_each_stage_key_names_its_measurements():
    assert details_type("int8") is Int8Details
    assert details_type("edgetpu:delegated") is Delegation
    assert details_type("android-cpu:numeric") is NumericDetails
    assert details_type("recipe:16x8:weights") is WeightsDetails
    assert details_type("recipe:16x8:convert") is ConvertDetails
    assert details_type("recipe:16x8:kernels") is KernelsDetails
    assert details_type("cpu-ref:recipe:16x8") is RecipeDeviceDetails
    assert details_type("qat") is None and details_type("cpu:runs") is None


def test_the_probe_childs_answer_crosses_the_protocol_typed():
    answer = ProbeResult(stages={"qat": Cell(P, "applied"), "convert": Cell(F, "refused")}, timings={"qat_s": 1.0},
                         files=ProbeFiles("/m.tflite", "/x.npy", "/k.npy"), layer="Dense",
                         documented=Documentation("unknown", summary="registry not readable"),
                         has_batchnorm=True, single_io=False, custom_configs=["ScaledDense"],
                         float_model=FloatModel(F, "does not convert", FloatModelFiles("/f.tflite"),
                                                [ProbeLayer("dense", "Dense", 2, True)]))
    wire = json.loads(json.dumps({"event": "result", **answer.to_json()}))
    assert wire["documented"] == {"status": "unknown", "summary": "registry not readable"}
    assert ProbeResult.from_json(wire) == answer
    # what a failing child sends: only the error
    assert ProbeResult.from_json({"event": "result", "error": "probe child failed: X"}).stages == {}


def test_error_cells_name_the_probe_and_stage_of_every_error():
    matrix = _matrix()
    entry = matrix.probes[0]
    entry.stages["cpu:runs"] = cell(Verdict.ERROR, "crash: SIGSEGV")
    assert entry.recipe_stages is not None
    entry.recipe_stages["recipe:int4-weight:convert"] = cell(Verdict.ERROR, "the quantizer child died")
    assert stages.error_cells(matrix) == ["dense cpu:runs", "dense recipe:int4-weight:convert"]
    assert stages.error_cells(matrix.to_json()) == stages.error_cells(matrix)


def test_a_layers_json_written_before_the_typed_tree_loads_and_is_written_again_the_same():
    """Recorded with the dict-based engine (five probes on cpu and cpu-ref, the int4-weight
    recipe, a traced numeric WARN): every cell, claim and setting types again and comes back
    unchanged, and layers.md renders from it."""
    recorded = json.loads((Path(__file__).parent / "layers_json_before_typed_tree.json").read_text())
    matrix = tree.load(recorded)
    assert matrix.to_json() == recorded
    sigmoid = {p.name: p for p in matrix.probes}["activation_sigmoid"]
    assert sigmoid.stages["cpu:numeric"].trace is not None
    assert isinstance(sigmoid.stages["cpu:numeric"].details, NumericDetails)
    assert "## Recipes" in layers_report.markdown(matrix)
