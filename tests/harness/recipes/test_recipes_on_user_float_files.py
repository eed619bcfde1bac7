"""Recipes on a user's own float .tflite (issue 20, items 11 and 12): the bits and the claims come
from what each recipe's file stores; a float file with fp16 weights or without a serving signature
is quantized all the same; ``int8-static`` answers "what would int8 do to my model?"; a recipe's
file that no kernel loads is an ERROR with the kernel's line."""
from __future__ import annotations

import numpy as np
import pytest
import user_models as fixtures

from qat_harness.claims import CrossKernelAgreement, EightBitOnly
from qat_harness.core import tflite
from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice
from qat_harness.measure.output_kinds import Task
from qat_harness.recipes import catalog, stage
from qat_harness.recipes.catalog import RecipeArtifact, apply_recipe
from qat_harness.recipes.prepare import SIGNATURE_KEY, prepare
from qat_harness.recipes.stage import judge_recipes
from qat_harness.results import Verdict

pytest_plugins = ["user_models"]  # the session fixture `user_models`
pytestmark = pytest.mark.skipif(catalog.quantizer_version() is None,
                                reason="ai-edge-quantizer is not installed (extra 'quantizer')")

FAST = BenchSettings(warmup_runs=1, min_runs=3, min_seconds=0.02, max_runs=10, num_threads=1)


@pytest.fixture(scope="module")
def float_files(tmp_path_factory):
    """One small classifier as a user brings it: fp32, fp16 weights (DEQUANTIZE before each
    weighted op, the converter's float16 option) and fp32 without a serving signature."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    folder = tmp_path_factory.mktemp("user-float")
    fp32 = folder / "fp32.tflite"
    fp32.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    fp16 = folder / "fp16.tflite"
    fp16.write_bytes(converter.convert())
    unsigned = folder / "no-signature.tflite"
    unsigned.write_bytes(_without_signature(fp32.read_bytes()))
    x = np.random.default_rng(0).random((48, 8, 8, 1), dtype=np.float32)
    return {"fp32": fp32, "fp16": fp16, "unsigned": unsigned, "x": x, "folder": folder}


def _without_signature(model: bytes) -> bytes:
    schema = tflite.load_schema("test_recipes_schema")
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    m.signatureDefs = None
    return fixtures._pack(m)


def _with_filter_zero_point(model: bytes, zero_point: int) -> bytes:
    """The first CONV_2D's int8 filter given a non-zero zero point: what ai-edge-quantizer 0.10's
    static recipe wrote for two real float models, a file no LiteRT kernel prepares."""
    schema = tflite.load_schema("test_recipes_schema")
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    graph = m.subgraphs[0]
    conv = next(op for op in graph.operators
                if max(m.operatorCodes[op.opcodeIndex].builtinCode,
                       m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D)
    quant = graph.tensors[conv.inputs[1]].quantization
    quant.zeroPoint = [zero_point] * len(quant.zeroPoint)
    return fixtures._pack(m)


def _devices():
    return {"cpu": CpuDevice(1), "cpu-ref": CpuRefDevice()}


def _claim(results, claim_id: str, recipe: str | None = None):
    return next(c for c in results.claims if c.id == claim_id
                and (recipe is None or c.details.get("recipe") == recipe))


# -- item 11: the file, not the recipe's name ------------------------------------------------------
def test_a_recipe_that_quantized_nothing_is_no_deployment_path_nor_a_kernel_comparison(float_files, tmp_path):
    """On a float file whose weights are float16 already, the fp16-weights recipe returns the
    float model (1.00x): it is reported as such, is not run, is no C6 deployment path and no K1
    comparison. The int4-weight recipe really stores int4 (the fp16 weights are widened first;
    before, it returned a 1.00x file too and C6 counted it as a 4-bit path), and the bits shown
    are the file's."""
    res = judge_recipes("fp16-user", float_files["fp16"], ["int4-weight", "fp16-weights"], _devices(),
                        float_files["x"], tmp_path, 1, timing=FAST)
    k1 = _claim(res, CrossKernelAgreement.id, "fp16-weights")
    assert k1.verdict is Verdict.SKIP and "quantized nothing" in k1.reason, k1.reason
    nothing = res.recipes["fp16-weights"]
    assert nothing.artifact.converted and nothing.stored is not None and nothing.stored.quantized_nothing
    assert nothing.devices == {}                          # not run: it is the float model
    int4 = res.recipes["int4-weight"]
    assert int4.stored.weights.get("int4", 0) > 0 and int4.bits == "W4Afp32"
    assert int4.size_ratio < 0.6
    assert "widened" in " ".join(int4.artifact.details["prepared"])
    c6 = _claim(res, EightBitOnly.id)
    assert c6.details["recipes"]["fp16-weights"].quantized_nothing
    assert "fp16-weights" not in c6.reason.split("not counted")[0]   # never a deployment path
    assert c6.measured["fp16-weights"] == "quantized nothing"
    rows = {r["recipe"]: r for r in res.c6_table.rows}
    assert rows["fp16-weights"]["bits"] == "quantized nothing" and rows["int4-weight"]["bits"] == "W4Afp32"
    assert "quantized nothing" in rows["fp16-weights"]["converts"]


def test_c6_judges_no_deployment_path_when_every_recipe_quantized_nothing(float_files, tmp_path):
    res = judge_recipes("fp16-user", float_files["fp16"], ["fp16-weights"], _devices(),
                        float_files["x"], tmp_path, 1, timing=FAST)
    c6 = _claim(res, EightBitOnly.id)
    assert c6.verdict is Verdict.SKIP, c6.reason
    assert "quantized anything" in c6.reason and "fp16-weights quantized nothing" in c6.reason


# -- item 12: a float .tflite in --------------------------------------------------------------------
def test_prepare_adds_a_serving_signature_the_runtime_calls():
    from ai_edge_litert import interpreter as litert

    model = _without_signature(_tiny_float())
    prepared = prepare(model)
    assert prepared.added_signature and not prepared.widened_weights
    interp = litert.Interpreter(model_content=prepared.model)
    signatures = interp.get_signature_list()
    assert list(signatures) == [SIGNATURE_KEY]
    runner = interp.get_signature_runner(SIGNATURE_KEY)
    (name,) = signatures[SIGNATURE_KEY]["inputs"]
    out = runner(**{name: np.ones((1, 4), np.float32)})
    assert len(out) == 1
    assert prepare(prepared.model).model == prepared.model     # nothing left to add


def _tiny_float() -> bytes:
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.mark.parametrize("recipe", ["16x8", "int8-static"])
def test_static_recipes_quantize_a_float_file_without_a_signature(float_files, recipe):
    """Before, 16x8 was refused ('no serving signature to calibrate through') and there was no
    int8-static recipe."""
    art = apply_recipe(float_files["unsigned"], recipe, float_files["folder"] / "cache", calibration=float_files["x"])
    assert art.converted, art.error
    assert any("serving signature" in change for change in art.details["prepared"])
    dtypes = {t.dtype for t in tflite.inspect_model(art.path).tensors if not t.is_constant and t.scales}
    assert ("int16" if recipe == "16x8" else "int8") in dtypes


def test_int8_static_on_a_user_float_file_answers_what_int8_does(float_files, tmp_path):
    """judge_recipes given the user's float .tflite (fp16 weights): int8-static is calibrated on
    the run's data, stored W8A8, runs on every kernel, and agrees with float."""
    res = judge_recipes("fp16-user", float_files["fp16"], ["int8-static"], _devices(), float_files["x"],
                        tmp_path, 1, calibration=float_files["x"][:16], timing=FAST,
                        task=Task.CLASSIFICATION)  # a classifier whose head has no softmax
    rr = res.recipes["int8-static"]
    assert rr.artifact.converted, rr.artifact.error
    assert rr.bits == "W8A8"
    assert set(rr.devices) >= {"cpu", "cpu-ref"} and all(d.ran for d in rr.devices.values())
    assert rr.devices["cpu"].agreement.rate >= 0.8
    assert _claim(res, CrossKernelAgreement.id, "int8-static").verdict in (Verdict.PASS, Verdict.WARN)


def test_static_recipes_calibrate_a_multi_input_float_file(user_models, tmp_path):
    """A two-input float .tflite: the calibration arrays come one per input, in the file's input
    order (before: 'static recipes are calibrated on one-input models')."""
    _, float_path = user_models.multi_io_pair()
    info = tflite.inspect_model(float_path)
    rng = np.random.default_rng(0)
    x = [rng.random((16, *info.tensor(i).shape[1:]), dtype=np.float32) for i in info.inputs]
    art = apply_recipe(float_path, "int8-static", tmp_path / "cache", calibration=x)
    assert art.converted, art.error
    assert "int8" in {t.dtype for t in tflite.inspect_model(art.path).tensors if not t.is_constant and t.scales}


def test_a_recipe_file_no_kernel_loads_is_an_error_with_the_kernels_line(float_files, tmp_path, monkeypatch):
    good = apply_recipe(float_files["fp32"], "int8-static", float_files["folder"] / "cache",
                        calibration=float_files["x"])
    assert good.converted, good.error
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_with_filter_zero_point(good.path.read_bytes(), 37))
    monkeypatch.setattr(stage, "apply_recipe",
                        lambda *a, **k: RecipeArtifact("int8-static", broken, None, details={"prepared": []}))
    res = judge_recipes("user", float_files["fp32"], ["int8-static"], _devices(), float_files["x"][:8],
                        tmp_path, 1, timing=FAST)
    k1 = _claim(res, CrossKernelAgreement.id, "int8-static")
    assert k1.verdict is Verdict.ERROR
    assert "\n" not in k1.reason and k1.reason.count("37 != 0") == 1, k1.reason
    assert "conv.cc:" in k1.reason and "no kernel loads the file" in k1.reason
    assert "(cpu, cpu-ref, cpu-builtin)" in k1.reason
