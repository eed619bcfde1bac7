"""The device attribution on typed values, without a model file or a child (issue 21): the walk
from the first departing op back to the op the error comes from, a kernel that departs alone,
a float model's bound, and ops no stage measured shown as such, never as PASS."""
from __future__ import annotations

from qat_harness.measure.difference import OutputDifference
from qat_harness.results import Verdict
from qat_harness.trace import output
from qat_harness.trace.culprit import name_culprit, set_verdicts
from qat_harness.trace.local import attribute, neighbourhood
from qat_harness.trace.measures import departs
from qat_harness.trace.results import (
    Bisection,
    BisectionStatus,
    DeviceCut,
    OpTrace,
    Thresholds,
    TraceResult,
)

SCALES = [0.1, 0.35, 0.0078, 0.05]   # op 1 coarse, op 2 ~45x finer


def _ops() -> list[OpTrace]:
    return [OpTrace(k, "CONV_2D", k + 1, f"m/layer{k}/Conv2D", f"layer{k}", [f"layer{k}"], [1, 4], "int8",
                    SCALES[k], 0) for k in range(4)]


def _cut(steps: int) -> DeviceCut:
    return DeviceCut(steps > Thresholds().threshold_steps,
                     OutputDifference("t", "int8 steps", 0.5, max_steps=steps, mean_steps=steps / 2))


UPSTREAM = {0: [], 1: [0], 2: [1], 3: [2]}
DEPARTS_AT_2 = Bisection(BisectionStatus.DEPARTS, "op 2 departs", [], first_departing_op=2, agrees_up_to=1)


def test_the_walk_names_the_op_the_error_is_carried_from():
    ops = _ops()
    for k, (cumulative, local) in enumerate([(0, 0), (1, 1), (43, 1), (40, 0)]):
        ops[k].devices["npu"], ops[k].local["npu"] = _cut(cumulative), _cut(local)
    a = attribute("npu", DEPARTS_AT_2, ops, UPSTREAM, Thresholds(), False)
    assert a is not None and (a.op, a.shows_at, a.local_departs) == (1, 2, False)
    assert a.carried.max_steps == 43 and a.local.max_steps == 1
    assert "44.9x finer" in a.reason and "not a wrong kernel" in a.reason
    culprit = name_culprit(ops, None, {"npu": DEPARTS_AT_2}, {"npu": a})
    assert culprit.op == 1 and culprit.visible_at == 2 and culprit.summary().carried == 43


def test_an_op_that_departs_alone_is_named_before_the_walk():
    ops = _ops()
    for k, (cumulative, local) in enumerate([(0, 0), (1, 1), (43, 9), (40, 0)]):
        ops[k].devices["npu"], ops[k].local["npu"] = _cut(cumulative), _cut(local)
    a = attribute("npu", DEPARTS_AT_2, ops, UPSTREAM, Thresholds(), False)
    assert (a.op, a.local_departs) == (2, True)


def test_a_float_model_is_bounded_by_float32_precision_an_int8_float_output_by_its_steps():
    bf16_like = OutputDifference("t", "float", 0.2, max_abs=0.01, max_rel=3e-3, sqnr_db=54.0)
    float32_like = OutputDifference("t", "float", 0.9, max_abs=1e-6, max_rel=3e-7, sqnr_db=140.0)
    assert departs(bf16_like, Thresholds(), float_model=True) and not departs(float32_like, Thresholds(), True)
    assert not departs(bf16_like, Thresholds(), float_model=False)
    assert "relative error" in Thresholds().device_bound(True) and "step" not in Thresholds().device_bound(True)


def test_ops_nothing_measured_are_not_listed_as_pass(tmp_path):
    ops = _ops()
    ops[2].devices["npu"] = _cut(0)
    bisections = {"npu": Bisection(BisectionStatus.AGREES, "within", [])}
    set_verdicts(ops, None, bisections, Thresholds(), {}, float_model_given=False)
    assert ops[2].verdict is Verdict.PASS and ops[2].not_measured is None
    assert [o.verdict for o in (ops[0], ops[1], ops[3])] == [Verdict.SKIP] * 3
    assert "no float model" in ops[0].not_measured and "no device run measured it" in ops[0].not_measured
    result = TraceResult(None, "m.tflite", 1, Thresholds(), ops, None, None, bisections, [])
    md = output.write_markdown(result, tmp_path).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 0 |"))
    assert "not measured: no float model" in row and "PASS" not in row


def test_the_neighbourhood_is_bounded_upstream():
    chain = {k: [k - 1] if k else [] for k in range(20)}
    assert neighbourhood(10, chain, depth=4) == [6, 7, 8, 9, 10]
    assert neighbourhood(0, chain, depth=4) == [0]
