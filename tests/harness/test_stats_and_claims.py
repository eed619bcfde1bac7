"""The statistics the claims are judged on (the judges themselves: tests/harness/claims/)."""
import numpy as np
import pytest

from qat_harness import stats
from qat_harness.measure.difference import OutputTensor, output_difference


def test_ratio_of_medians_interval_contains_the_true_ratio():
    rng = np.random.default_rng(3)
    slow, fast = rng.normal(10, 1, 300), rng.normal(4, 0.4, 300)
    r = stats.ratio_of_medians_ci(slow, fast)
    assert r.ci_low < 2.5 < r.ci_high
    assert r.ci_high - r.ci_low < 0.3


def test_ratio_with_too_few_pairs_has_no_interval():
    r = stats.ratio_of_medians_ci([2.0, 2.0], [1.0, 1.0])
    assert r.ratio == 2.0 and r.ci_low is None


def _rounds(rng, base_ms: float, loads, per_block: int = 9) -> list[list[float]]:
    return [list(base_ms * load * rng.lognormal(0, 0.05, per_block)) for load in loads]


def test_paired_rounds_cancel_a_load_that_moves_from_round_to_round():
    rng = np.random.default_rng(5)
    loads = rng.uniform(1.0, 3.0, 40)      # every round meets a load of its own, both files alike
    slow, fast = _rounds(rng, 2.4, loads), _rounds(rng, 2.0, loads)
    paired = stats.paired_block_ratio_ci(slow, fast)
    pooled = stats.block_ratio_ci(slow, fast)
    assert paired.ratio == pytest.approx(1.2, rel=0.02) and paired.n_pairs == 40
    assert paired.ci_high - paired.ci_low < 0.5 * (pooled.ci_high - pooled.ci_low)
    assert paired.ci_low > 1.15


def test_paired_rounds_with_too_few_rounds_have_no_interval():
    r = stats.paired_block_ratio_ci([[2.0] * 9] * 3, [[1.0] * 9] * 3)
    assert r.ratio == pytest.approx(2.0) and r.ci_low is None and r.n_pairs == 3


def test_wilson_interval_is_inside_unit_range_and_brackets_rate():
    w = stats.wilson_interval(99, 100)
    assert 0 < w.ci_low < 0.99 < w.ci_high <= 1
    assert stats.wilson_interval(0, 0).rate is None


def test_quantized_outputs_differ_in_steps_and_float_outputs_in_range_and_sqnr():
    a = np.array([[1, 2, 3]], dtype=np.int8)
    b = np.array([[1, 4, -3]], dtype=np.int8)
    d = output_difference(a, b, OutputTensor("logits", "int8", [0.1]))
    assert d.domain == "int8 steps" and d.max_steps == 6 and d.fraction_exact == pytest.approx(1 / 3)
    f = output_difference(np.array([1.0, 2.0, 2.9]), np.array([1.0, 2.0, 3.0]))
    assert f.domain == "float" and f.max_abs == pytest.approx(0.1) and f.max_rel == pytest.approx(0.1 / 3)
    assert f.sqnr_db == pytest.approx(10 * np.log10(14 / 0.01))
    assert output_difference(b, b, OutputTensor("ids", "int64")).domain == "ids"
