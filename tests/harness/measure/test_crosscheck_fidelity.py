"""Measurement fidelity (issue 11), the pure parts: block-timing statistics, the paired
accuracy verdicts of A1, the ceiling line and the cross-check's comparison, on synthetic data."""
import numpy as np
import pytest

from qat_harness import claims, stats
from qat_harness.devices.base import Delegation
from qat_harness.measure import crosscheck
from qat_harness.results import Verdict

ROUNDS, RUNS_PER_BLOCK = 60, 9


def _blocks(rng, median_ms: float, drift: np.ndarray) -> list[list[float]]:
    """One block per round: the round's machine speed (``drift``) times lognormal noise."""
    return [list(median_ms * d * rng.lognormal(0, 0.05, RUNS_PER_BLOCK)) for d in drift]


def test_block_ratio_recovers_a_known_ratio_under_drift():
    rng = np.random.default_rng(7)
    drift = 1 + 0.5 * np.sin(np.linspace(0, 6, ROUNDS))   # the machine slows down by up to 50%
    ratio = stats.block_ratio_ci(_blocks(rng, 2.0, drift), _blocks(rng, 0.8, drift))
    assert ratio.ci_low < 2.5 < ratio.ci_high
    assert ratio.ratio == pytest.approx(2.5, rel=0.05)
    assert ratio.n_pairs == ROUNDS and ratio.ci_high - ratio.ci_low < 0.5


def test_block_ratio_interval_counts_rounds_not_runs():
    """Runs in one block share the block's machine state: an interval computed as if they were
    independent would be too narrow. Resampling rounds keeps the between-round spread."""
    rng = np.random.default_rng(1)
    drift_a = rng.lognormal(0, 0.2, ROUNDS)                 # unpaired slow phases per model
    drift_b = rng.lognormal(0, 0.2, ROUNDS)
    num, den = _blocks(rng, 2.0, drift_a), _blocks(rng, 1.0, drift_b)
    by_round = stats.block_ratio_ci(num, den)
    by_run = stats.ratio_of_medians_ci(np.concatenate(num), np.concatenate(den))
    assert (by_round.ci_high - by_round.ci_low) > 1.5 * (by_run.ci_high - by_run.ci_low)


def test_block_ratio_with_too_few_rounds_has_no_interval():
    r = stats.block_ratio_ci([[2.0] * 9] * 3, [[1.0] * 9] * 3)
    assert r.ratio == 2.0 and r.ci_low is None and r.n_pairs == 3


def test_split_blocks_rebuilds_the_worker_blocks():
    runs = list(range(27))
    assert stats.split_blocks(runs, 9) == [list(range(0, 9)), list(range(9, 18)), list(range(18, 27))]
    assert len(stats.split_blocks(runs[:20], 9)) == 2       # a partial block is not a block


# -- A1: paired differences -------------------------------------------------------------------
def _predictions(n: int, base_rate: float, cand_rate: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.random(n) < base_rate
    cand = base.copy()
    flip = int(round((base_rate - cand_rate) * n))        # the candidate loses these examples
    idx = np.flatnonzero(base)[:flip] if flip > 0 else np.flatnonzero(~base)[:-flip]
    cand[idx] = ~cand[idx]
    return base, cand


def test_paired_difference_counts_discordant_examples_and_mcnemar():
    base = np.array([1, 1, 1, 1, 0, 1], bool)
    cand = np.array([1, 0, 0, 1, 1, 1], bool)
    d = stats.paired_accuracy_difference(base, cand)
    assert (d.baseline_only, d.candidate_only, d.n) == (2, 1, 6)
    assert d.drop_points == pytest.approx(100 / 6)
    assert d.mcnemar_p == pytest.approx(1.0)                  # 2 vs 1 of 3: no evidence
    assert d.ci_low <= d.drop_points <= d.ci_high


def _a1(top1, baseline, candidate, paired):
    return claims.Accuracy.judge("m", "cpu", claims.PairedAccuracy(top1, baseline, candidate, paired))


def test_clear_drop_fails():
    base, cand = _predictions(2000, 0.95, 0.90)
    d = stats.paired_accuracy_difference(base, cand)
    c = _a1({"float_ft": base.mean(), "qat_int8": cand.mean()}, "float_ft", "qat_int8", d)
    assert c.verdict is Verdict.FAIL and d.ci_low > 1 and d.mcnemar_p < 1e-6
    assert c.measured == pytest.approx(5.0, abs=0.1)


def test_no_difference_with_many_examples_passes():
    base, cand = _predictions(5000, 0.9, 0.9)
    rng = np.random.default_rng(3)
    swap = rng.choice(5000, 40, replace=False)                # 20 won, 20 lost: no net change
    cand[swap[:20]] = ~base[swap[:20]]
    cand[swap[20:]] = base[swap[20:]]
    d = stats.paired_accuracy_difference(base, cand)
    c = _a1({"float": base.mean(), "float_ft": base.mean(), "qat_int8": cand.mean()}, "float_ft", "qat_int8", d)
    assert c.verdict is Verdict.PASS, c.reason
    assert d.ci_high <= 1 and c.details["float_top1"] == base.mean() and c.details["n"] == 5000


def test_small_set_is_too_small_to_tell_one_point_apart():
    """100 examples that agree everywhere: the bootstrap interval is [0, 0], but one example is
    already a point, so the verdict says the set is too small rather than PASS."""
    base = np.ones(100, bool)
    d = stats.paired_accuracy_difference(base, base)
    assert d.ci_low == d.ci_high == 0
    c = _a1({"float_ft": 1.0, "qat_int8": 1.0}, "float_ft", "qat_int8", d)
    assert c.verdict is Verdict.WARN and "too small to tell 1 point apart" in c.reason


def test_wide_interval_is_too_small_to_tell():
    base, cand = _predictions(400, 0.8, 0.8)
    rng = np.random.default_rng(5)
    lost = rng.choice(np.flatnonzero(base), 30, replace=False)   # 30 lost, 30 won: no net change,
    won = rng.choice(np.flatnonzero(~base), 30, replace=False)   # but many disagreements
    cand[lost], cand[won] = False, True
    d = stats.paired_accuracy_difference(base, cand)
    c = _a1({"float_ft": base.mean(), "qat_int8": cand.mean()}, "float_ft", "qat_int8", d)
    assert d.half_width > 1
    assert c.verdict is Verdict.WARN and "too small to tell" in c.reason


def test_without_control_arm_the_reason_says_so():
    base, cand = _predictions(2000, 0.9, 0.9)
    d = stats.paired_accuracy_difference(base, cand)
    c = _a1({"float": 0.9, "qat_int8": 0.9}, "float", "qat_int8", d)
    assert "no control arm" in c.reason and c.details["baseline"] == "float"


# -- the ceiling --------------------------------------------------------------------------------
def test_ceiling_names_the_missing_dot_product_and_the_builtin_ops():
    deleg = {"qat_int8": Delegation("xnnpack", 11, 10, [("SOFTMAX", "builtin")],
                                    {"delegated_ops": {"CONV_2D": 4}})}
    c = claims.ceiling(["avx", "avx2", "fma"], deleg)
    assert c.int8_dot_product == [] and c.simd == "AVX2 (256-bit)"
    assert "no int8 dot-product" in c.text and "10/11 ops" in c.text and "SOFTMAX" in c.text


def test_ceiling_with_vnni_and_on_an_accelerator():
    vnni = claims.ceiling(["avx2", "avx512f", "avx512_vnni"], {})
    assert vnni.int8_dot_product == ["AVX-512 VNNI"] and vnni.simd.startswith("AVX-512")
    accel = claims.ceiling(None, {"qat_int8": Delegation("edgetpu", 10, 7)}, accelerator=True)
    assert accel.simd is None and "7/10 ops (70%) on edgetpu" in accel.text


# -- the cross-check's comparison -----------------------------------------------------------------
def test_cross_check_flags_a_difference_above_five_percent():
    native = {"float": [2.0, 2.02, 1.98, 2.01, 1.99], "qat_int8": [1.0, 1.01, 0.99, 1.0, 1.0]}
    ok = crosscheck.compare({"float": 2.03, "qat_int8": 1.02}, native, "tool", 2, 100,
                            stats.RatioCI(2.0, 1.9, 2.1, 50))
    assert ok.status is Verdict.PASS and not any(r.flagged for r in ok.rows)
    assert ok.native_ratio.ci_low < 2.0 < ok.native_ratio.ci_high
    assert ok.harness_ratio_inside_native_interval is True
    bad = crosscheck.compare({"float": 2.0, "qat_int8": 1.15}, native, "tool", 2, 100)
    assert bad.status is Verdict.WARN and [r.variant for r in bad.rows if r.flagged] == ["qat_int8"]
    assert "qat_int8 +15.0%" in bad.reason


def test_cross_check_does_not_flag_a_difference_inside_the_tool_rounding():
    """The tool reports 0.01 ms steps: 0.052 against 0.05 is rounding, not a finding."""
    check = crosscheck.compare({"float": 0.052}, {"float": [0.05, 0.05, 0.05]}, "tool", 2, 100)
    assert check.rows[0].difference > 0.03 and not check.rows[0].flagged


def test_cross_check_without_the_tool_is_a_skip_with_the_reason(monkeypatch):
    monkeypatch.setattr(crosscheck, "find_native_tool", lambda: None)
    check = crosscheck.run_cross_check({"float": "f.tflite"}, {"float": 1.0}, 2)
    assert check.status is Verdict.SKIP and "not found" in check.reason


def test_cross_check_of_a_model_faster_than_the_tool_resolution_is_not_compared():
    check = crosscheck.compare({"float": 0.004, "int8": 0.003}, {"float": [0.0] * 3, "int8": [0.0] * 3},
                               "tool", 1, 20)
    assert check.status is Verdict.PASS and check.native_ratio is None
    assert all(r.difference is None and not r.flagged for r in check.rows)
    assert "below its 0.01 ms resolution" in check.reason
