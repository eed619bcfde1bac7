"""The recipe axis (issue 13): each recipe's conversion through ai-edge-quantizer on a float
model made on the spot, the cross-kernel verdict (K1) on a kernel made to disagree, and C6
re-judged on synthetic results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qat_harness.claims import CrossKernelAgreement, EightBitOnly
from qat_harness.core import tflite
from qat_harness.devices.base import BenchSettings, RunResult
from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice
from qat_harness.measure.output_kinds import Task
from qat_harness.recipes import catalog
from qat_harness.recipes.catalog import (
    RECIPES,
    RecipeArtifact,
    apply_recipe,
    parse_recipes,
)
from qat_harness.recipes.stage import (
    RecipeDeviceResult,
    RecipeResult,
    RecipeResults,
    c6_claim,
    c6_table,
    cross_kernel_claim,
    judge_recipes,
)
from qat_harness.results import Verdict
from qat_harness.stats import RatioCI, wilson_interval

pytestmark = pytest.mark.skipif(catalog.quantizer_version() is None,
                                reason="ai-edge-quantizer is not installed (extra 'quantizer')")

FAST = BenchSettings(warmup_runs=1, min_runs=5, min_seconds=0.05, max_runs=40, num_threads=1)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    """A small trained-looking float classifier: conv + two dense layers whose inputs are
    multiples of 32 (so the blockwise recipe has blocks to make), and its inputs."""
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),                       # 6 * 6 * 8 = 288 = 9 blocks of 32
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    folder = tmp_path_factory.mktemp("recipes")
    path = folder / "float.tflite"
    path.write_bytes(to_tflite(model, full_int8=False))
    return {"path": path, "x": x, "folder": folder}


def _dtypes(path: Path) -> set[str]:
    return {t.dtype for t in tflite.inspect_model(path).tensors}


EXPECTED_DTYPE = {"int4-weight": "int4", "int4-dynamic": "int4", "int4-blockwise": "int4",
                  "16x8": "int16", "int8-static": "int8", "fp16-weights": "float16", "int8-dynamic": "int8"}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_converts_a_float_model(float_model, recipe):
    cache = float_model["folder"] / "cache"
    art = apply_recipe(float_model["path"], recipe, cache, calibration=float_model["x"])
    assert art.converted, art.error
    assert EXPECTED_DTYPE[recipe] in _dtypes(art.path)
    assert art.path.stat().st_size < float_model["path"].stat().st_size
    again = apply_recipe(float_model["path"], recipe, cache, calibration=float_model["x"])
    assert again.from_cache and again.path == art.path


def test_a_refused_recipe_is_a_recorded_reason_not_a_crash(tmp_path, float_model):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all" * 10)
    art = apply_recipe(junk, "int4-weight", tmp_path / "cache")
    assert not art.converted and art.error and "\n" not in art.error
    static = apply_recipe(float_model["path"], "16x8", tmp_path / "cache", calibration=None)
    assert not static.converted and "calibration" in static.error


def test_a_static_recipe_calibrates_an_integer_input_with_integers(tmp_path, monkeypatch):
    """An Embedding model takes int32 token ids: its calibration examples keep their dtype
    (they were once cast to float32, and the quantizer refused). A relative cache folder works
    too (the quantizer child runs in a folder of its own)."""
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(16, 4),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "embedding.tflite"
    path.write_bytes(to_tflite(model, full_int8=False))
    tokens = np.random.default_rng(0).integers(0, 16, (32, 6)).astype(np.int32)
    monkeypatch.chdir(tmp_path)
    art = apply_recipe(path, "16x8", Path("relative-cache"), calibration=tokens)
    assert art.converted, art.error
    assert art.path.is_absolute() and "int16" in _dtypes(art.path)


def test_parse_recipes():
    assert parse_recipes(None) == [] and parse_recipes("none") == []
    assert parse_recipes("default") == list(catalog.DEFAULT_RECIPES)
    assert parse_recipes("all,int4-weight") == list(RECIPES)
    with pytest.raises(ValueError, match="unknown recipe 'int3'"):
        parse_recipes("int4-weight,int3")


class LyingDevice(CpuDevice):
    """A 'kernel' that runs the file on XNNPACK and then shifts every class score by one
    position: a kernel that loads the file and silently gives other answers."""
    name = "cpu-liar"

    def run(self, model_path, inputs, timeout_s=300.0) -> RunResult:
        result = super().run(model_path, inputs, timeout_s)
        result.outputs = np.roll(result.outputs, 1, axis=-1)
        return result


def test_cross_kernel_verdict_names_the_kernel_that_disagrees(float_model, tmp_path):
    devices = {"cpu": CpuDevice(1), "cpu-ref": CpuRefDevice(), "cpu-liar": LyingDevice(1)}
    res = judge_recipes("tiny", float_model["path"], ["int4-weight"], devices, float_model["x"],
                        tmp_path, 1, timing=FAST, task=Task.CLASSIFICATION)  # its head has no softmax
    k1 = next(c for c in res.claims if c.id == CrossKernelAgreement.id)
    assert k1.verdict is Verdict.FAIL, k1.reason
    assert k1.details["odd"] == ["cpu-liar"]
    assert "cpu-liar disagrees with" in k1.reason and "top-1 agreement" in k1.reason
    assert "max abs diff" in k1.reason
    rr = res.recipes["int4-weight"]
    assert set(rr.devices) == {"cpu", "cpu-ref", "cpu-liar", "cpu-builtin"}
    assert rr.size_ratio < 0.5
    assert rr.devices["cpu"].latency is not None and rr.devices["cpu"].latency_ratio is not None
    assert rr.devices["cpu-ref"].latency is None  # the oracle is not timed
    # the same file without the liar: the real kernels agree
    honest = {n: d for n, d in devices.items() if n != "cpu-liar"}
    res2 = judge_recipes("tiny", float_model["path"], ["int4-weight"], honest, float_model["x"],
                         tmp_path, 1, timing=FAST)
    k1b = next(c for c in res2.claims if c.id == CrossKernelAgreement.id)
    assert k1b.verdict is Verdict.PASS, k1b.reason
    assert any(c.id == EightBitOnly.id for c in res2.claims) and res2.c6_table.rows


def _logits(n=200, classes=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, classes))


def test_cross_kernel_pure_paths():
    a = _logits()
    ok, _ = cross_kernel_claim("m", "r", {"x": a, "y": a + 1e-6, "z": a})
    assert ok.verdict is Verdict.PASS
    two, cross = cross_kernel_claim("m", "r", {"x": a, "y": np.roll(a, 1, axis=1)})
    assert two.verdict is Verdict.FAIL and cross.odd == [] and "cannot be told" in two.reason
    collapsed = np.zeros_like(a)
    collapsed[:, 3] = 1.0
    one_class, cross = cross_kernel_claim("m", "r", {"x": a, "y": a, "ref": collapsed})
    assert one_class.verdict is Verdict.FAIL and cross.odd == ["ref"]
    assert "returns class 3 for every input" in one_class.reason
    nan = a.copy()
    nan[0, 0] = np.nan
    assert cross_kernel_claim("m", "r", {"x": a, "y": nan})[0].verdict is Verdict.FAIL
    crash, _ = cross_kernel_claim("m", "r", {"x": a, "y": a}, {"z": ("crash", "runtime crashed with SIGABRT")})
    assert crash.verdict is Verdict.FAIL and "z did not run it" in crash.reason
    refused, _ = cross_kernel_claim("m", "r", {"x": a, "y": a}, {"z": ("unsupported", "no INT4 kernel")})
    assert refused.verdict is Verdict.WARN


def _synthetic(recipes: dict[str, tuple[bool, float | None, float | None]]) -> RecipeResults:
    """recipe -> (converted, agreement with float, latency ratio) on one device 'cpu'."""
    out = {}
    for name, (converted, agreement, ratio) in recipes.items():
        art = RecipeArtifact(name, Path(f"/x/{name}.tflite") if converted else None,
                             None if converted else "ai-edge-quantizer refused: ValueError: no")
        rr = RecipeResult(name, RECIPES[name], art, size_bytes=100 if converted else None,
                          size_ratio=0.15 if converted else None)
        if converted:
            dev = RecipeDeviceResult(name, "cpu", agreement is not None)
            if agreement is not None:
                dev.agreement = wilson_interval(round(agreement * 360), 360)
                dev.latency_ratio = RatioCI(ratio, ratio * 0.9, ratio * 1.1, 50, 0.95)
            rr.devices["cpu"] = dev
        out[name] = rr
    return RecipeResults("m", Path("/x/float.tflite"), 1000, {}, out, [], reference_device="cpu")


def test_c6_rejudged_on_synthetic_results():
    dated = c6_claim(_synthetic({"int4-weight": (True, 0.97, 5.0), "int8-dynamic": (True, 0.99, 1.5)}))
    assert dated.verdict is Verdict.FAIL
    assert dated.reason.startswith("dated") and "int4-weight" in dated.reason
    assert "loads and runs on cpu" in dated.reason and "none of them is faster" in dated.reason
    assert "int8-dynamic" not in dated.details["recipes"]  # 8-bit does not bear on the claim
    lossy = c6_claim(_synthetic({"int4-dynamic": (True, 0.40, 2.0)}))
    assert lossy.verdict is Verdict.WARN
    refused = c6_claim(_synthetic({"int4-weight": (False, None, None)}))
    assert refused.verdict is Verdict.PASS and "refused" in refused.reason
    assert c6_claim(_synthetic({"int8-dynamic": (True, 0.99, 1.5)})).verdict is Verdict.SKIP
    faster = c6_claim(_synthetic({"int4-weight": (True, 0.97, 0.5)}))
    assert "faster than float: int4-weight" in faster.reason
    table = c6_table(_synthetic({"int4-weight": (True, 0.97, 5.0), "16x8": (False, None, None)}))
    assert [r["recipe"] for r in table.rows] == ["int4-weight", "16x8"]
    assert table.rows[0]["size vs float"] == "0.15x" and table.rows[1]["converts"].startswith("no:")
    assert table.markdown().count("\n") == 3


def test_qat4_folds_batchnorm_into_an_equivalent_bn_free_model():
    """The QAT-int4 path (recipes.qat4) trains the BN-free model the .tflite stores."""
    import tf_keras as keras
    from tf_keras import layers

    from qat_harness.recipes.qat4 import _folded

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(3)(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c),
                               rng.uniform(0.5, 2, c)])
    folded = _folded(model)
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in folded.layers)
    x = rng.random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
