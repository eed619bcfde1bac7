"""The recipe axis of the layer matrix (``layers --recipes``): one real run of three probes
(Dense, Conv2D, and ReLU, which has no weights of its own) through ai-edge-quantizer's
int4-weight and 16x8 recipes on XNNPACK and the reference kernels; the same probes' files
judged again with a kernel made to disagree or crash and a quantizer child that aborts; the
command line's refusal of an unknown recipe; and what the matrix asks of the probe child (and
writes) without the quantizer extra and without --recipes, with the child stubbed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qat_harness import cli
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import RunResult
from qat_harness.layers import matrix as layers
from qat_harness.layers import report as layers_report
from qat_harness.layers import tree
from qat_harness.layers.cells import cells_json
from qat_harness.layers.protocol import FloatModel, FloatModelFiles, ProbeLayer
from qat_harness.layers.stages import error_cells
from qat_harness.layers.tasks import make_tasks
from qat_harness.recipes import catalog
from qat_harness.results import Verdict

PROBES = ["dense", "conv2d", "relu"]
RECIPES = ["int4-weight", "16x8"]
DEVICES = ["cpu", "cpu-ref"]
EXTRA = "pip install 'qat-harness[quantizer]'"
needs_quantizer = pytest.mark.skipif(catalog.quantizer_version() is None,
                                     reason="ai-edge-quantizer is not installed (extra 'quantizer')")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if catalog.quantizer_version() is None:
        pytest.skip("ai-edge-quantizer is not installed (extra 'quantizer')")
    out = tmp_path_factory.mktemp("layers-recipes")
    messages: list[str] = []
    report = layers.run_layers(PROBES, DEVICES, out, progress=messages.append, recipes=RECIPES)
    matrix = report.to_json()
    return {"report": report, "matrix": matrix, "out": out, "messages": messages,
            "by_name": {p["name"]: p for p in matrix["probes"]}}


def _cells(run, probe: str) -> dict:
    return run["by_name"][probe]["recipe_stages"]


@needs_quantizer
def test_weights_stage_reads_the_recipe_width_from_the_flatbuffer(run):
    for probe, tensor_rank in (("dense", 2), ("conv2d", 4)):
        cells = _cells(run, probe)
        int4 = cells["recipe:int4-weight:weights"]
        assert int4["verdict"] == "PASS" and int4["reason"].startswith("int4:"), int4
        (tensor,) = int4["details"]["tensors"]
        assert tensor["dtype"] == "int4" and len(tensor["shape"]) == tensor_rank
        assert tensor["op"] == ("FULLY_CONNECTED" if probe == "dense" else "CONV_2D")
        w16x8 = cells["recipe:16x8:weights"]
        assert w16x8["verdict"] == "PASS" and w16x8["details"]["tensors"][0]["dtype"] == "int8", w16x8
        assert cells["recipe:int4-weight:convert"]["details"]["size_ratio"] < 1.0
    relu = _cells(run, "relu")["recipe:int4-weight:weights"]
    assert relu["verdict"] == "SKIP" and relu["reason"].startswith("no weights: ReLU"), relu
    assert "conv2d CONV_2D int4" in relu["reason"]  # the probe's Conv2D in front of it did take int4


@needs_quantizer
def test_every_device_runs_the_recipe_and_agreement_is_a_proportion(run):
    for probe in PROBES:
        cells = _cells(run, probe)
        assert cells["recipe:float"]["verdict"] == "PASS"
        for recipe in RECIPES:
            assert cells[f"recipe:{recipe}:convert"]["verdict"] == "PASS", cells[f"recipe:{recipe}:convert"]
            for device in DEVICES:
                c = cells[f"{device}:recipe:{recipe}"]
                assert c["verdict"] in ("PASS", "WARN") and c["reason"].startswith("ran 16 inputs"), c
                agree = c["details"]["float_agreement"]
                assert 0.0 <= agree["ci_low"] <= agree["rate"] <= agree["ci_high"] <= 1.0 and agree["n"] >= 16
                assert c["details"]["float_difference"]["max_rel"] >= 0.0
                (other,) = [d for d in DEVICES if d != device]
                assert 0.0 <= c["details"]["kernels"][other]["top1_agreement"]["rate"] <= 1.0
            kernels = cells[f"recipe:{recipe}:kernels"]
            assert kernels["verdict"] in ("PASS", "WARN") and kernels["details"]["kernels"] == DEVICES
    # a Conv2D output is judged per output position, not by the arg-max of the whole map
    conv = _cells(run, "conv2d")["cpu:recipe:int4-weight"]["details"]["float_agreement"]
    assert conv["n"] == 16 * 8 * 8


@needs_quantizer
def test_the_matrix_files_keep_the_old_keys_and_add_the_recipe_table(run):
    out = run["out"]
    on_disk = json.loads((out / "layers.json").read_text())
    assert on_disk == json.loads(json.dumps(run["matrix"]))
    axis = on_disk["recipe_axis"]
    assert list(axis["recipes"]) == RECIPES and axis["kernels"] == DEVICES
    assert not any("recipe" in k for k in on_disk["stage_keys"])
    for entry in on_disk["probes"]:
        assert not any("recipe" in k for k in entry["stages"])       # the int8 stages as before
        assert list(entry["recipe_stages"]) == axis["stage_keys"]
        assert entry["stages"]["cpu:numeric"]["verdict"] in ("PASS", "WARN")
    md = (out / "layers.md").read_text()
    assert "## Recipes" in md and "| probe | int4-weight | 16x8 |" in md
    recipes_part = md.split("## Recipes", 1)[1]
    assert "| dense | ✓ int4 · runs · agree" in recipes_part or "| dense | ~ int4 · runs · agree" in recipes_part
    assert "| relu | " in recipes_part and "no weights · runs" in recipes_part
    assert "Wilson interval wholly below 95%" in md and "`recipe:int4-weight:weights`" in md
    assert tree.load(on_disk).to_json() == on_disk  # the recipe cells type again without a loss
    table = layers_report.render_table(run["report"])
    assert "int4-weight" in table and "16x8" in table and "no weights" in table
    assert any("recipes: int4-weight" in m for m in run["messages"])
    assert error_cells(run["report"]) == []


# -- error paths, on the files the run made -------------------------------------------------------
def _axis(run, runner, cache_dir: Path, recipes=("int4-weight",), kernels=("cpu", "cpu-ref")):
    from qat_harness.layers.recipes import RecipeAxis

    return RecipeAxis(list(recipes), list(DEVICES), list(kernels), {}, set(), runner, cache_dir, 120.0)


def _float_result(run, probe: str) -> FloatModel:
    work = run["out"] / "work" / probe
    return FloatModel(Verdict.PASS, "float .tflite",
                      FloatModelFiles(str(work / "float.tflite"), str(work / "float_inputs.npy"),
                                      str(work / "float_outputs.npy")),
                      [ProbeLayer("dense", "Dense", 2, True)])


def _judged(axis, run, tmp_path) -> dict:
    """The recipe cells of the run's dense probe judged again, as layers.json states them."""
    return cells_json(axis.judge("dense", _float_result(run, "dense"), True, tmp_path / "work"))


def _real_runner(overrides: dict):
    from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice

    devices = {"cpu": CpuDevice(1), "cpu-ref": CpuRefDevice(1), "cpu-b": CpuDevice(1)}

    def runner(name, path, inputs, workdir):
        result = devices[name].run(path, inputs)
        return overrides[name](result) if name in overrides else result
    return runner


def _reversed_channels(result: RunResult) -> RunResult:
    return RunResult(np.ascontiguousarray(np.asarray(result.outputs)[..., ::-1]))


@needs_quantizer
def test_a_kernel_that_disagrees_fails_with_the_numbers(run, tmp_path):
    axis = _axis(run, _real_runner({"cpu": _reversed_channels}), tmp_path,
                 kernels=("cpu", "cpu-ref", "cpu-b"))
    typed = axis.judge("dense", _float_result(run, "dense"), True, tmp_path / "work")
    cells = cells_json(typed)
    odd = cells["cpu:recipe:int4-weight"]
    assert odd["verdict"] == "FAIL" and "kernels disagree" in odd["reason"], odd
    assert "top-1 agreement" in odd["reason"] and "max abs diff" in odd["reason"]
    assert odd["details"]["kernels"]["cpu-ref"]["top1_agreement"]["rate"] < 0.95
    ref = cells["cpu-ref:recipe:int4-weight"]
    assert ref["verdict"] == "PASS" and "cpu is the further from float, not this one" in ref["reason"]
    k1 = cells["recipe:int4-weight:kernels"]
    assert k1["verdict"] == "FAIL" and k1["details"]["odd"] == ["cpu"]
    assert "FAIL kernels disagree" in layers_report.recipe_cell(typed, "int4-weight", DEVICES)


@needs_quantizer
def test_a_crashing_kernel_and_an_aborting_quantizer_are_error_cells(run, tmp_path, monkeypatch):
    def crash(_result):
        raise DeviceError("runtime crashed with SIGSEGV", kind="crash")

    cells = _judged(_axis(run, _real_runner({"cpu": crash}), tmp_path), run, tmp_path)
    assert cells["cpu:recipe:int4-weight"] == {"verdict": "ERROR", "reason": "crash: runtime crashed with SIGSEGV"}
    assert cells["cpu-ref:recipe:int4-weight"]["verdict"] == "PASS"   # the other kernel still judged
    assert cells["recipe:int4-weight:kernels"]["verdict"] == "FAIL"  # K1: a crash where another runs it

    # a quantizer child that aborts (a fresh cache: the run's cached file would answer first)
    (tmp_path / "aborting_quantizer.py").write_text("import os\nos.abort()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(catalog, "WORKER", "aborting_quantizer")
    cells = _judged(_axis(run, _real_runner({}), tmp_path / "cache", recipes=("int4-weight", "fp16-weights")),
                    run, tmp_path)
    for recipe in ("int4-weight", "fp16-weights"):  # each recipe its own cell; the matrix goes on
        convert = cells[f"recipe:{recipe}:convert"]
        assert convert["verdict"] == "ERROR" and "SIGABRT" in convert["reason"], convert
        assert "\n" not in convert["reason"]
        assert cells[f"cpu:recipe:{recipe}"]["verdict"] == "SKIP"


# -- the command line and a missing extra -----------------------------------------------------------
def test_an_unknown_recipe_is_one_line_and_exit_2(capsys, tmp_path):
    code = cli.main(["layers", "--layers", "dense", "--recipes", "int4-weight,int5-magic",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown recipe 'int5-magic'" in lines[0] and "int4-weight" in lines[0], err
    assert not (tmp_path / "out").exists()  # refused before any work


class _RecordingChild:
    """Stands in for the probe child (TensorFlow, QAT): only what the matrix asks of it and
    what it does with the answer matter here."""

    def __init__(self):
        self.requests: list[dict] = []

    def run(self, request: dict, timeout_s: float) -> dict:
        self.requests.append(request)
        return {"event": "result", "layer": "ReLU", "single_io": True, "timings": {},
                "stages": {"qat": {"verdict": "FAIL", "reason": "QAT refused: not under test here"}}}


def test_without_the_quantizer_every_recipe_cell_is_a_skip_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "quantizer_version", lambda: None)
    tasks = make_tasks(["relu"], ())
    run = layers.MatrixRun(tasks, ["cpu"], tmp_path, None, 1, 60.0, 16, recipes=RECIPES)
    run.open_devices()
    child = _RecordingChild()
    entry = run.probe(tasks[0], child)
    assert child.requests[0]["float_model"] is False  # the probe child is not asked for the float model
    cells = entry.recipe_stages
    assert list(cells) == run.matrix.recipe_axis.stage_keys and len(cells) == 1 + 2 * 4
    for key, c in cells.items():
        assert c.verdict is Verdict.SKIP and EXTRA in c.reason, (key, c)
    assert run.matrix.recipe_axis.quantizer_version is None
    run.matrix.probes = [entry]
    md = layers_report.markdown(run.matrix)
    assert "| relu | · SKIP quantizer missing | · SKIP quantizer missing |" in md
    assert error_cells(run.matrix) == []


def test_without_recipes_the_matrix_asks_and_writes_nothing_new(tmp_path):
    tasks = make_tasks(["relu"], ())
    run = layers.MatrixRun(tasks, ["cpu"], tmp_path, None, 1, 60.0, 16)
    run.open_devices()
    child = _RecordingChild()
    entry = run.probe(tasks[0], child)
    assert child.requests[0]["float_model"] is False
    run.matrix.probes = [entry]
    assert "recipe_stages" not in entry.to_json() and "recipe_axis" not in run.matrix.to_json()
    assert entry.stages["qat"].verdict is Verdict.FAIL and entry.stages["cpu:runs"].verdict is Verdict.SKIP
    assert "## Recipes" not in layers_report.markdown(run.matrix)
