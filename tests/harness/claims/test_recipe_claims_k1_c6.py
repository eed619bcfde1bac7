"""K1 and C6 on recipe results (issue 20, items 11 and 12): a recipe that quantized nothing is no
deployment path and no kernel comparison; a file no kernel loads is an ERROR naming the kernel's
check once, in one line."""
from __future__ import annotations

from qat_harness.claims import CrossKernelAgreement, EightBitOnly, KernelComparison, OtherWidthRecipe
from qat_harness.results import Verdict

CONV_REFUSAL = ("RuntimeError: tflite/kernels/conv.cc:390 affine_quantization->zero_point->data[i] != 0 "
                "(37 != 0)Node number 0 (CONV_2D) failed to prepare.")


def _recipe(name: str, bits: str, *, runs: bool = True, nothing: bool = False, agreement: float = 0.99,
            error: str | None = None) -> OtherWidthRecipe:
    return OtherWidthRecipe("m", name, bits, True, ["cpu"] if runs else [], 1.0 if nothing else 0.15,
                            agreement if runs else None, None, None, error, quantized_nothing=nothing)


def test_c6_never_counts_a_recipe_that_quantized_nothing():
    only_nothing = EightBitOnly.judge_recipes("m", {"int4-weight": _recipe("int4-weight", "quantized nothing",
                                                                           nothing=True)})
    assert only_nothing.verdict is Verdict.SKIP
    assert "int4-weight quantized nothing (1.00x float size)" in only_nothing.reason
    mixed = EightBitOnly.judge_recipes("m", {
        "int4-weight": _recipe("int4-weight", "quantized nothing", nothing=True),
        "16x8": _recipe("16x8", "W8A16", runs=False, error="no kernel loads the file: conv.cc:390 ... (cpu)"),
    })
    assert mixed.verdict is Verdict.PASS, mixed.reason
    assert "16x8 (W8A16) converts, but no kernel loads the file" in mixed.reason
    assert mixed.reason.endswith("not counted, the file is the float model: int4-weight quantized nothing "
                                 "(1.00x float size)")
    assert mixed.measured == {"16x8": "converts, does not run", "int4-weight": "quantized nothing"}


def test_k1_on_a_file_no_kernel_loads_names_the_kernels_line_once():
    failed = {k: ("failed", CONV_REFUSAL) for k in ("cpu", "cpu-builtin", "cpu-ref")}
    failed["openvino"] = ("crash", "runtime crashed with SIGSEGV\nstack ...")
    claim = CrossKernelAgreement.judge("m", KernelComparison("int8-static", [], [], [], {}, {}, failed))
    assert claim.verdict is Verdict.ERROR
    assert claim.reason == ("int8-static: no kernel loads the file: tflite/kernels/conv.cc:390 "
                            "affine_quantization->zero_point->data[i] != 0 (37 != 0); Node number 0 (CONV_2D) "
                            "failed to prepare (cpu, cpu-builtin, cpu-ref); crash: runtime crashed with SIGSEGV "
                            "(openvino)")


def test_k1_is_not_compared_on_a_recipe_without_a_file_of_its_own():
    claim = CrossKernelAgreement.not_compared("m", "fp16-weights", "fp16-weights quantized nothing")
    assert claim.verdict is Verdict.SKIP and claim.device == "recipe:fp16-weights"
    assert claim.details == {"recipe": "fp16-weights"}
