"""Which op is to blame, and each op's verdict.

A quantization culprit is the first op whose relative error is above ``threshold_rel`` and more
than ``jump_factor`` times what its inputs carried (the largest relative error among the ops
that produce its inputs): the error appeared there, it was not inherited; and whose mean error
is above ``threshold_steps`` steps of the scale the bulk of its values needs (the 1st-99th
percentile range, from zero, / 255; never more than its own scale), so that plain rounding of
small values is never a culprit. Relative error and bulk steps are the measures here because a
layer crushed by an outlier range is within half a step of its own (huge) scale while having
lost everything else. An op upstream that clips float values by more than
``TRACE_CLIP_BLAME_STEPS`` steps is named instead of the op where that shows.

A device culprit is the op a device's departure comes from (``local.attribute``): the first op
whose local error (the op alone, on the reference kernels' inputs) is out of bounds, else the op
the cumulative departure the bisection found is carried from; without local errors, the
bisection's first departing op. The culprit named is the first of
these in op order: "quantization" when it is a quantization culprit (the error is already there
in the QAT Keras model, or, without it, on the reference kernels), "conversion" when the
reference kernels part from the QAT Keras model at an op where the QAT Keras model still agrees
with float (same rule, measured between the int8 file and the QAT Keras model, and more than
``threshold_steps`` steps of the tensor's own scale on average), "device" otherwise."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qat_harness.claims.tolerances import TRACE_CLIP_BLAME_STEPS, TRACE_ODD_ONE_OUT_FACTOR, TRACE_OUTLIER_RATIO
from qat_harness.results import Verdict
from qat_harness.trace.local import Attribution, from_bisections
from qat_harness.trace.results import (
    Bisection,
    Culprit,
    Measure,
    OpTrace,
    QuantError,
    Stage,
    Thresholds,
    Unmeasured,
    measured,
)
from qat_harness.trace.stages import Upstream

NAN = float("nan")


def _or_nan(value: float | None) -> float:
    return NAN if value is None else value


def _appears_here(m: Measure, carried: float, thresholds: Thresholds,
                  steps_of: Callable[[QuantError], float | None]) -> QuantError | None:
    """The measure when its error is above the threshold, not mere rounding of small values
    (``steps_of`` it above ``threshold_steps``), and not inherited from the inputs."""
    q = measured(m)
    if q is None or q.rel <= thresholds.threshold_rel:
        return None
    steps = steps_of(q)
    if steps is not None and steps <= thresholds.threshold_steps:
        return None
    return q if q.rel > thresholds.jump_factor * carried else None


def _bulk_steps(q: QuantError) -> float | None:
    return q.mean_bulk_steps


def _own_steps(q: QuantError) -> float | None:
    return q.mean_steps


def int8_culprit(ops: list[OpTrace], thresholds: Thresholds, keras_stage: bool, upstream: Upstream) -> Culprit | None:
    """The first op where the int8 file parts ways with float, and the stage it belongs to."""
    for o in ops:
        if keras_stage and (o.keras_qat or o.conversion):
            q = _appears_here(o.keras_qat, o.carried_keras_rel, thresholds, _bulk_steps)
            if q is not None:
                record = _quantization_record(o, q, o.carried_keras_rel, "the QAT Keras model (fake quantization)")
                return _blame_clipping(record, ops, upstream, lambda op: op.keras_qat)
            # the fake-quant grid is the int8 grid: steps of the tensor's own scale
            c = _appears_here(o.conversion, o.carried_conversion_rel, thresholds, _own_steps)
            if c is not None:
                keras = measured(o.keras_qat)
                return Culprit(o.index, o.opcode, o.layer, Stage.CONVERSION, o.tensor_name,
                               f"the int8 file on the reference kernels differs from the QAT Keras model by "
                               f"{c.rel:.1%} (mean {_or_nan(c.mean_steps):.1f}, max "
                               f"{_or_nan(c.max_steps):.1f} step(s) of its scale {_or_nan(o.scale):.3g}) "
                               f"while its inputs carried {o.carried_conversion_rel:.1%} and the QAT Keras "
                               f"model is within {keras.rel if keras else NAN:.1%} of float: "
                               "the converter changed this op",
                               rel=c.rel, carried_rel=o.carried_conversion_rel)
            continue
        q = _appears_here(o.quant, o.carried_rel, thresholds, _bulk_steps)
        if q is not None:
            record = _blame_clipping(_quantization_record(o, q, o.carried_rel, "int8 on the reference kernels"),
                                     ops, upstream, lambda op: op.quant)
            if keras_stage:
                record.reason += ("; this op has no QAT Keras value, so quantization and conversion "
                                  "are not told apart here")
            return record
    return None


def _blame_clipping(record: Culprit, ops: list[OpTrace], upstream: Upstream,
                    measure: Callable[[OpTrace], Measure]) -> Culprit:
    """When an op upstream of the culprit clips float values its range cannot hold (by more than
    ``TRACE_CLIP_BLAME_STEPS`` steps), the error appeared there: a few clipped values are outside the
    bulk its own measure looks at, and show in the bulk of the next layers. The nearest such
    op is named instead, with the op where the error became visible."""
    seen: set[int] = set()
    frontier = list(upstream.get(record.op, []))
    while frontier:
        nxt = []
        for k in frontier:
            if k in seen:
                continue
            seen.add(k)
            m = measured(measure(ops[k]))
            if m is not None and m.clip_max_steps > TRACE_CLIP_BLAME_STEPS and m.representable is not None:
                o, (lo, hi) = ops[k], m.representable
                return Culprit(k, o.opcode, o.layer, Stage.QUANTIZATION, o.tensor_name,
                               f"its int8 range [{lo:.3g}, {hi:.3g}] clips float values by up to "
                               f"{m.clip_max_steps:.0f} step(s) of its scale ({m.clipped_fraction:.2%} "
                               f"of them, float max |x| {m.float_absmax:.3g}); the error "
                               f"shows in the bulk at op {record.op} ({record.layer}): {record.reason}",
                               rel=m.rel, carried_rel=record.carried_rel, visible_at=record.op)
            nxt.extend(upstream.get(k, []))
        frontier = nxt
    return record


def _quantization_record(o: OpTrace, m: QuantError, carried: float, what: str) -> Culprit:
    why = (f"{what} differs from float by {m.rel:.1%} of the values' mean "
           f"magnitude (mean {_or_nan(m.mean_steps):.2f}, max "
           f"{_or_nan(m.max_steps):.1f} step(s) of its scale {o.scale or NAN:.3g}; mean "
           f"{m.mean_bulk_steps or NAN:.1f} step(s) of the scale its values' bulk "
           f"needs, {m.bulk_scale or NAN:.3g}) while its "
           f"inputs carried {carried:.1%}")
    if (m.outlier_ratio or 0.0) > TRACE_OUTLIER_RATIO:
        why += (f"; its float range is dominated by outliers (max |x| is {m.outlier_ratio:.0f}x "
                "the 99th percentile), so the int8 scale crushes the other values")
    return Culprit(o.index, o.opcode, o.layer, Stage.QUANTIZATION, o.tensor_name, why, rel=m.rel, carried_rel=carried)


def _device_rel_vs_float(ops: list[OpTrace], op: int, device: str | None) -> float | None:
    cut = ops[op].devices.get(device) if device else None
    return cut.rel_vs_float if cut else None


def _reference_is_odd_one_out(ops: list[OpTrace], candidate: Culprit, qculprit: Culprit | None) -> bool:
    """At the op where the reference kernels depart from float, the device is the closer of
    the two to float."""
    if qculprit is None or qculprit.op != candidate.op or qculprit.rel is None:
        return False
    dev_rel = _device_rel_vs_float(ops, candidate.op, candidate.device)
    return dev_rel is not None and dev_rel < qculprit.rel / TRACE_ODD_ONE_OUT_FACTOR


def device_culprit(ops: list[OpTrace], name: str, a: Attribution) -> Culprit:
    """A device's culprit from its attribution (``local.attribute``)."""
    o = ops[a.op]
    return Culprit(a.op, o.opcode, o.layer, Stage.DEVICE, o.tensor_name, a.reason, device=name,
                   max_steps=a.carried.max_steps if a.carried else None, visible_at=a.shows_at,
                   local=a.local, carried=a.carried, local_departs=a.local_departs)


def name_culprit(ops: list[OpTrace], qculprit: Culprit | None, bisections: dict[str, Bisection],
                 attributions: dict[str, Attribution] | None = None) -> Culprit | None:
    """The first culprit in op order among the int8 file's and every device's (``attributions``,
    by default each bisection's first departing op); the others are kept in its ``also``."""
    if attributions is None:
        attributions = from_bisections(bisections, ops)
    candidates: list[tuple[int, int, Culprit]] = []
    if qculprit:
        candidates.append((qculprit.op, 0, qculprit))
    for name, a in attributions.items():
        candidates.append((a.op, 1, device_culprit(ops, name, a)))
    if not candidates:
        return None

    def order(c: tuple[int, int, Culprit]) -> tuple[int, int]:
        # at the same op, the reference kernels and a device both depart: the device is named
        # when it is the closer of the two to float (the reference kernels are then the odd one)
        k, kind, rec = c
        if kind == 1 and _reference_is_odd_one_out(ops, rec, qculprit):
            return (k, -1)
        return (k, kind)

    candidates.sort(key=order)
    first = dataclasses.replace(candidates[0][2])
    if first.stage is Stage.DEVICE and qculprit and qculprit.op == first.op:
        dev_rel = _device_rel_vs_float(ops, first.op, first.device)
        first.reason += (f"; the reference kernels also depart from float there ({_or_nan(qculprit.rel):.1%}) "
                         f"while {first.device} is within {_or_nan(dev_rel):.1%} of float: the reference "
                         "kernels are the odd one out")
    if len(candidates) > 1:
        first.also = [c[2] for c in candidates[1:]]
    return first


def set_verdicts(ops: list[OpTrace], qculprit: Culprit | None, bisections: dict[str, Bisection],
                 thresholds: Thresholds, attributions: dict[str, Attribution] | None = None,
                 float_model_given: bool = True) -> None:
    """Each op's verdict: FAIL where a culprit is or a device departs alone, WARN where an error
    is carried, SKIP (``not_measured`` says why) where no stage measured it, else PASS."""
    if attributions is None:
        attributions = from_bisections(bisections, ops)
    for o in ops:
        quant, conv = measured(o.quant), measured(o.conversion)
        if qculprit and o.index == qculprit.op:
            o.verdict = Verdict.FAIL
            o.notes.append(f"{qculprit.stage} culprit: the error appears here")
        elif quant is not None and quant.rel > thresholds.threshold_rel:
            o.verdict = Verdict.WARN
            o.notes.append(f"int8 vs float {quant.rel:.1%}, carried from upstream ({o.carried_rel:.1%})")
        elif (conv is not None and conv.rel > thresholds.threshold_rel
              and (conv.mean_steps or 0.0) > thresholds.threshold_steps):
            o.verdict = Verdict.WARN
            o.notes.append(f"int8 vs QAT Keras {conv.rel:.1%}, carried from upstream "
                           f"({o.carried_conversion_rel:.1%})")
        for name in bisections:
            cut, local = o.devices.get(name), o.local.get(name)
            a = attributions.get(name)
            if a is not None and a.op == o.index:
                o.verdict = Verdict.FAIL
                o.notes.append(f"{name}: " + ("departs alone (local error)" if a.local_departs
                                              else "the departure comes from here"))
            elif local is not None and local.departs:
                o.verdict = Verdict.FAIL
                o.notes.append(f"{name}: departs alone (local error {local.headline})")
            elif cut is not None and cut.departs and o.verdict is Verdict.PASS:
                o.verdict = Verdict.WARN
                o.notes.append(f"{name}: departs, carried from upstream"
                               + (f" (alone: {local.headline})" if local is not None else ""))
        if not _measured_at_all(o):
            o.verdict = Verdict.SKIP
            o.not_measured = _why_not_measured(o, float_model_given, bisections)


def _measured_at_all(o: OpTrace) -> bool:
    return (any(measured(m) is not None for m in (o.quant, o.keras_qat, o.conversion))
            or any(c.error is None for c in o.devices.values()) or any(c.error is None for c in o.local.values()))


def _why_not_measured(o: OpTrace, float_model_given: bool, bisections: dict[str, Bisection]) -> str:
    reasons = []
    if not float_model_given:
        reasons.append("no float model")
    elif isinstance(o.quant, Unmeasured):
        reasons.append(f"its float value cannot be compared ({o.quant.error})")
    else:
        reasons.append("no float counterpart by layer name")
    failed = {**{f"{d} (cut)": c for d, c in o.devices.items()}, **{f"{d} (alone)": c for d, c in o.local.items()}}
    for what, c in failed.items():
        reasons.append(f"{what}: {c.error}")
    if bisections and not failed:
        reasons.append("no device run measured it (the bisection cut elsewhere, and local error is measured "
                       "only around a departure)")
    return "; ".join(reasons)
