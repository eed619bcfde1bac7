"""K1 (issue 20, item 9): when kernels disagree on one file, the kernel blamed is the one further
from float (or, without float, from the reference kernels), never the one the majority leaves
out. Real case: on a 16x8 model K1 blamed OpenVINO, the one kernel that matched float."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.claims import CrossKernelAgreement
from qat_harness.devices.base import RunResult
from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice
from qat_harness.recipes import catalog
from qat_harness.recipes.stage import cross_kernel_claim, judge_recipes
from qat_harness.results import Verdict


def _float_logits(n=200, classes=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, classes))


def _shifted(a):
    """Other answers: every class score moved one class along."""
    return np.roll(a, 1, axis=1)


def test_two_kernels_that_agree_with_each_other_but_not_with_float_are_blamed_not_the_one_that_matches():
    flt = _float_logits()
    near = flt + np.random.default_rng(1).normal(scale=1e-3, size=flt.shape)   # quantization-sized error
    claim, cross = cross_kernel_claim("m", "16x8", {"cpu": _shifted(flt), "cpu-builtin": _shifted(flt),
                                                    "openvino": near},
                                      float_outputs=flt, float_on="cpu-ref", oracle="cpu-ref")
    assert claim.verdict is Verdict.FAIL
    assert cross.odd == ["cpu", "cpu-builtin"], claim.reason
    assert claim.details["odd"] == ["cpu", "cpu-builtin"]
    assert claim.details["blamed_against"] == "float (on cpu-ref)"
    assert "cpu disagrees with openvino" in claim.reason and "openvino disagrees" not in claim.reason
    assert "further from float (on cpu-ref)" in claim.reason and "openvino SQNR" in claim.reason


def test_without_float_the_reference_kernels_decide():
    flt = _float_logits()
    _, cross = cross_kernel_claim("m", "int4-weight", {"cpu": _shifted(flt), "cpu-builtin": _shifted(flt),
                                                       "cpu-ref": flt}, oracle="cpu-ref")
    assert cross.odd == ["cpu", "cpu-builtin"]


def test_the_reference_kernels_are_blamed_when_they_are_the_further_from_float():
    """The measured INT4 case: the reference kernels return one class for every input while
    XNNPACK and the built-in kernels agree with float."""
    flt = _float_logits()
    collapsed = np.zeros_like(flt)
    collapsed[:, 8] = 1.0
    claim, cross = cross_kernel_claim("m", "int4-blockwise", {"cpu": flt, "cpu-builtin": flt, "cpu-ref": collapsed},
                                      float_outputs=flt, float_on="cpu", oracle="cpu-ref")
    assert cross.odd == ["cpu-ref"] and "returns class 8 for every input" in claim.reason


def test_two_kernels_alone_are_told_apart_by_float_and_not_when_equally_far():
    flt = _float_logits()
    _, told = cross_kernel_claim("m", "r", {"cpu": flt + 1e-4, "openvino": _shifted(flt)}, float_outputs=flt)
    assert told.odd == ["openvino"]
    both_off = {"cpu": _shifted(flt), "openvino": np.roll(flt, 2, axis=1)}
    untold, cross = cross_kernel_claim("m", "r", both_off, float_outputs=flt)
    assert untold.verdict is Verdict.FAIL and cross.odd == []
    assert "both as far from float" in untold.reason and "cannot be told" in untold.reason


def test_with_no_reference_at_all_the_majority_decides_and_says_so():
    flt = _float_logits()
    claim, cross = cross_kernel_claim("m", "r", {"x": flt, "y": flt, "z": _shifted(flt)})
    assert cross.odd == ["z"] and claim.details["blamed_against"] == "majority of the kernels"


def test_a_kernel_with_nan_is_the_furthest():
    flt = _float_logits()
    nan = flt.copy()
    nan[0, 0] = np.nan
    nan[:, :] = _shifted(nan)
    _, cross = cross_kernel_claim("m", "r", {"cpu": flt, "cpu-ref": nan}, float_outputs=flt)
    assert cross.odd == ["cpu-ref"]


class ShiftingDevice(CpuDevice):
    """A kernel that runs the file on XNNPACK and moves every class score one class along: it
    loads the file and silently answers otherwise (two of them agree with each other)."""

    def run(self, model_path, inputs, timeout_s=300.0) -> RunResult:
        result = super().run(model_path, inputs, timeout_s)
        result.outputs = _shifted(result.outputs)
        return result


@pytest.mark.skipif(catalog.quantizer_version() is None,
                    reason="ai-edge-quantizer is not installed (extra 'quantizer')")
def test_judge_recipes_blames_the_two_kernels_far_from_float_not_the_oracle_that_matches(tmp_path):
    """Two kernels agree with each other and not with float, the reference kernels match float:
    the majority would blame the reference kernels; float blames the two."""
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite
    from qat_harness.devices.base import BenchSettings

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    path = tmp_path / "float.tflite"
    path.write_bytes(to_tflite(model, full_int8=False))
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    devices = {"shift-a": ShiftingDevice(1), "shift-b": ShiftingDevice(1), "cpu-ref": CpuRefDevice()}
    res = judge_recipes("tiny", path, ["int8-dynamic"], devices, x, tmp_path, 1, add_builtin=False,
                        timing=BenchSettings(warmup_runs=1, min_runs=3, min_seconds=0.01, max_runs=5, num_threads=1))
    k1 = next(c for c in res.claims if c.id == CrossKernelAgreement.id)
    assert k1.verdict is Verdict.FAIL, k1.reason
    assert k1.details["odd"] == ["shift-a", "shift-b"], k1.reason
    assert k1.details["blamed_against"] == "float (on cpu-ref)"
    assert "cpu-ref disagrees" not in k1.reason
