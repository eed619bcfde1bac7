"""Ranking and the keep-float proposal on synthetic measurements (no model is trained)."""
from __future__ import annotations

import numpy as np

from qat_harness.claims.accuracy import Accuracy, Agreement, Fidelity
from qat_harness.measure.output_kinds import OutputKind, OutputRole
from qat_harness.sensitivity.measure import FIDELITY, TOP1, TaskMetric, task_metric, within_bounds
from qat_harness.sensitivity.plan import Budget, LayerSensitivity, QuickError, UnitInfo, quick_order, ranked
from qat_harness.sensitivity.propose import propose


def top1(agreement: float, accuracy: float | None = None, float_accuracy: float | None = None) -> TaskMetric:
    return TaskMetric(TOP1, agreement=agreement, accuracy=accuracy, float_accuracy=float_accuracy)


def layer(name: str, only: float | None, all_but: float | None, quick_db: float = 30.0) -> LayerSensitivity:
    return LayerSensitivity(UnitInfo(name, "Conv2D", (name,)), QuickError(name, quick_db, None),
                            top1(only) if only is not None else None,
                            top1(all_but) if all_but is not None else None)


def test_the_layer_whose_float_copy_recovers_most_ranks_first_and_cut_layers_follow_in_quick_order():
    layers = [layer("conv", 0.99, 0.40), layer("dense", 0.30, 0.97), layer("head", 0.98, 0.42),
              layer("cut_b", None, None, quick_db=12.0), layer("cut_a", None, None, quick_db=3.0)]
    order = [s.unit.name for s in ranked(layers)]
    assert order == ["dense", "head", "conv", "cut_a", "cut_b"]


def test_quick_order_puts_the_lowest_sqnr_first_whichever_of_weights_or_output_it_is():
    errors = [QuickError("a", 40.0, 35.0), QuickError("b", 50.0, 8.0), QuickError("c", 2.0, None),
              QuickError("exact", None, None)]
    assert quick_order(errors) == ["c", "b", "a", "exact"]


def test_bounds_come_from_the_claims():
    bar = Agreement.PASS_AT
    assert within_bounds(top1(bar, 0.90, 0.90))
    assert not within_bounds(top1(bar - 0.01, 0.90, 0.90))
    drop = Accuracy.DROP_PASS / 100
    assert within_bounds(top1(1.0, 0.90 - drop * 0.9, 0.90))
    assert not within_bounds(top1(1.0, 0.90 - drop * 1.5, 0.90))
    assert within_bounds(TaskMetric(FIDELITY, sqnr_db=Fidelity.PASS_DB))
    assert not within_bounds(TaskMetric(FIDELITY, sqnr_db=Fidelity.PASS_DB - 0.5))


def test_greedy_proposal_adds_layers_in_order_until_within_bounds_and_reuses_known_measurements():
    asked = []
    truth = {("dense",): top1(0.90), ("dense", "head"): top1(0.99)}

    def evaluate(keep):
        asked.append(keep)
        return truth[keep]

    known = {("dense",): truth[("dense",)]}
    p = propose(["dense", "head", "conv"], top1(0.3), evaluate, within_bounds, Budget(60.0), known)
    assert p.reached and p.keep == ("dense", "head")
    assert asked == [("dense", "head")]  # ("dense",) was known
    assert [s.keep for s in p.steps] == [("dense",), ("dense", "head")]


def test_nothing_is_kept_when_full_int8_is_within_bounds_and_budget_stops_the_search():
    p = propose(["a"], top1(1.0), lambda keep: top1(0.0), within_bounds, Budget(60.0))
    assert p.reached and p.keep == ()
    spent = Budget(0.0, slowest=5.0)
    p = propose(["a", "b"], top1(0.2), lambda keep: top1(1.0), within_bounds, spent)
    assert not p.reached and p.keep == () and "budget" in p.why


def test_task_metric_uses_top1_on_class_scores_and_sqnr_elsewhere():
    rng = np.random.default_rng(0)
    scores = rng.random((20, 4))
    labels = np.argmax(scores, axis=1)
    worse = scores.copy()
    worse[:5] = worse[:5][:, ::-1]  # 5 of 20 answers change
    m = task_metric([worse], [scores], [OutputRole(0, "p", OutputKind.CLASS_SCORES, "test")], labels)
    assert m.kind == TOP1 and m.agreement == 0.75 and m.float_accuracy == 1.0 and m.accuracy == 0.75
    box = rng.random((20, 4))
    m = task_metric([box + 0.01], [box], [OutputRole(0, "box", OutputKind.REGRESSION, "test")], None)
    assert m.kind == FIDELITY and m.sqnr_db is not None and 25 < m.sqnr_db < 40
