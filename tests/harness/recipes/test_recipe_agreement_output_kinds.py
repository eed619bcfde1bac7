"""Issue 20 item 7 for the recipe axis: K1 and the recipes' agreement count top-1 only on class
scores; on any other output (a box, a mask) two runs agree when an input's values are close."""
import numpy as np

from qat_harness.claims.tolerances import KERNEL_VALUES_AGREE_REL
from qat_harness.recipes.stage import compare_kernels, cross_kernel_claim
from qat_harness.results import Verdict


def _boxes():
    rng = np.random.default_rng(3)
    box = rng.uniform(0, 100, (40, 4))  # a crop box: top-1 of it means nothing
    near = box + rng.uniform(-1, 1, box.shape) * KERNEL_VALUES_AGREE_REL * 50   # within 1% of the range
    far = box.copy()
    far[:, 0] += 8.0                                                              # 8% of the range off
    return box, near, far


def test_box_outputs_agree_on_their_values_not_on_their_argmax():
    box, near, far = _boxes()
    same_argmax_far = far.copy()
    comparison = compare_kernels("r", {"a": box, "b": near, "c": same_argmax_far}, class_scores=False)
    rates = {(p.a, p.b): p.agreement.rate for p in comparison.pairs}
    assert rates[("a", "b")] == 1.0 and rates[("a", "c")] == 0.0
    assert comparison.unit.startswith("agreement within 1%") and comparison.classes_predicted == {}


def test_k1_on_a_box_says_what_it_counted():
    box, near, far = _boxes()
    claim, cross = cross_kernel_claim("m", "r", {"a": box, "b": near, "c": far}, class_scores=False,
                                      float_outputs=box, float_on="a")
    assert claim.verdict is Verdict.FAIL and cross.odd == ["c"]
    assert "top-1" not in claim.reason and "within 1% of the output's range" in claim.reason
