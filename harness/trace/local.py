"""Local and cumulative error of an op on a device, and which op a device's departure comes from.

*Cumulative* error is what the bisection measures: the model cut after the op, run on the device
from the model inputs, against the reference kernels: what arrives at the op. *Local* error is
the op run alone (``extract``: the op with its constant tensors, its other inputs made model
inputs) on the reference kernels' recorded values of its inputs: what the op adds itself. Both
are in the tensor's own domain (``measure.difference.output_difference``: steps of its scale for
a quantized tensor, relative error and SQNR for a float one).

Cumulative steps are steps of each op's own scale, so a coarse op's 1-step rounding carried
into a 15x finer op shows there as ~15 steps per unit of gain: the first finely scaled op
departs without computing anything wrong. The device culprit is therefore:

1. the first op whose local error is out of bounds (``departs``): its kernel departs alone;
2. otherwise the op the departure is carried from: starting at the bisection's first departing
   op, while an op's cumulative error is more than ``jump_factor`` times its local error (it
   arrives, it is not made here), step to the producer of its inputs with the largest
   cumulative error (in absolute terms), if that error can account for what the op carries:
   in the op's steps (times the ratio of the two scales) and amplified by at most
   ``TRACE_CARRY_GAIN``, it reaches the op's cumulative minus local error. The op where the
   cumulative error is its own local error is the origin, named with its local error (within
   bounds: a rounding difference that the next ops' finer scales amplify) and the cumulative
   error beside it; an op whose carried error no producer accounts for is named itself (the
   device departs there within the graph: fusion, delegation).

Cost: local error is measured at every op of a model of at most ``LOCAL_ALL_OPS`` ops, otherwise
at the bisection's first departing op and its producers up to ``NEIGHBOURHOOD_DEPTH`` ops
upstream; cumulative error at that neighbourhood's ops the bisection did not cut. The ops of
one measure go to the device as one model (each op alone, side by side; one cut with every op
an output), so a device pays 2 runs for it, or one per op when it cannot run the joint model.
"""
from __future__ import annotations

import dataclasses
import time

from qat_harness.claims.tolerances import TRACE_CARRY_GAIN
from qat_harness.core.errors import DeviceError
from qat_harness.trace import graph
from qat_harness.trace.bisect import Bisector
from qat_harness.trace.extract import extract_ops
from qat_harness.trace.results import Bisection, BisectionStatus, CutRun, DeviceCut, OpTrace, RunKind, Thresholds
from qat_harness.trace.stages import Upstream

#: A model with at most this many ops has its local error measured at every op.
LOCAL_ALL_OPS = 24
#: A joint run that failed so is not retried op by op (each would fail the same way, slowly).
NO_RETRY = ("timeout", "offline")
#: Otherwise: the first departing op and its producers up to this many ops upstream.
NEIGHBOURHOOD_DEPTH = 4


def local_rule(n_ops: int) -> str:
    """The rule, in words, for trace.md."""
    if n_ops <= LOCAL_ALL_OPS:
        return f"every op (the model has {n_ops} ops, at most {LOCAL_ALL_OPS})"
    return (f"the first op a device departs at and its producers up to {NEIGHBOURHOOD_DEPTH} ops upstream "
            f"(the model has {n_ops} ops, more than {LOCAL_ALL_OPS})")


def neighbourhood(k: int, upstream: Upstream, depth: int = NEIGHBOURHOOD_DEPTH) -> list[int]:
    """Op ``k`` and the ops producing its inputs, up to ``depth`` ops upstream."""
    seen, frontier = {k}, [k]
    for _ in range(depth):
        frontier = [p for j in frontier for p in upstream.get(j, []) if p not in seen]
        seen.update(frontier)
    return sorted(seen)


@dataclasses.dataclass
class Attribution:
    """Where one device's departure comes from."""
    op: int                             # the op named
    shows_at: int                       # the bisection's first departing op (cumulative)
    local: DeviceCut | None             # op ``op`` alone
    carried: DeviceCut | None           # the cumulative error at ``shows_at``
    local_departs: bool | None
    reason: str


class LocalMeasure:
    """Local and cumulative errors of some ops on one device, after its bisection."""

    def __init__(self, bisector: Bisector):
        self.b = bisector
        self.ops = bisector.ops
        self.name = bisector.name

    def _record(self, kind: RunKind, ops: list[int], t0: float, cuts: dict[int, DeviceCut]) -> None:
        worst = max(ops, key=lambda j: _magnitude(cuts[j]))
        self.b.attribution_runs.append(CutRun(worst, round(time.perf_counter() - t0, 3), cuts[worst], kind, ops))

    def local(self, ops: list[int]) -> None:
        """Each of ``ops`` alone on the reference kernels' values of its inputs: one model with
        the ops side by side, or, when the device cannot run that, one model per op."""
        ops = [j for j in ops if self.name not in self.ops[j].local]
        if not ops:
            return
        if len(ops) > 1 and self._local_run(ops, "local"):
            return
        for j in ops:
            self._local_run([j], f"local{j}")

    def _local_run(self, ops: list[int], tag: str) -> bool:
        m = self.b.model
        t0 = time.perf_counter()
        try:
            model = extract_ops(m.int8_path, ops, m.tmp / f"{self.name}-{tag}.tflite", isolate=True)
        except (ValueError, KeyError) as exc:
            cuts = {j: DeviceCut(None, error=f"cannot be extracted: {exc}"[:300]) for j in ops}
        else:
            missing = [t for t in model.inputs if t not in m.reference]
            if missing:
                cuts = {j: DeviceCut(None, error=f"the reference kernels recorded no value of tensor(s) {missing}")
                        for j in ops}
            else:
                result = self.b.run_model(model.path, [m.recorded(t) for t in model.inputs], tag)
                if isinstance(result, DeviceError):
                    if len(ops) > 1 and result.kind not in NO_RETRY:
                        return False
                    cuts = {j: DeviceCut(None, error=f"{result.kind}: {result.reason}"[:300]) for j in ops}
                else:
                    values = dict(zip(model.outputs, result))
                    cuts = {j: self.b.compare({t: values[t] for t in self.b.model.info.ops[j].outputs if t in values})
                            for j in ops}
        for j, cut in cuts.items():
            self.ops[j].local[self.name] = cut
        self._record(RunKind.LOCAL, ops, t0, cuts)
        return True

    def cumulative(self, ops: list[int]) -> None:
        """The cumulative error at ``ops`` the bisection did not cut: one cut with each op's
        output an output, or, when the device cannot run that, one cut per op."""
        ops = [j for j in ops if self.name not in self.ops[j].devices]
        if not ops:
            return
        if len(ops) > 1:
            m = self.b.model
            outs = [t for j in ops for t in m.info.ops[j].outputs if t >= 0]
            path = graph.cut_model(m.int8_path, outs, m.tmp / f"{self.name}-cuts.tflite")
            t0 = time.perf_counter()
            result = self.b.run_model(path, m.inputs, "cuts")
            if not isinstance(result, DeviceError):
                values = dict(zip(outs, result))
                cuts = {j: self.b.compare({t: values[t] for t in m.info.ops[j].outputs if t in values}) for j in ops}
                for j, cut in cuts.items():
                    self.ops[j].devices[self.name] = cut
                self._record(RunKind.CUTS, ops, t0, cuts)
                return
        for j in ops:
            self.b.measure(j)


def _magnitude(cut: DeviceCut | None) -> float:
    value = cut.magnitude if cut is not None and cut.error is None else None
    return -1.0 if value is None else float(value)


def _absolute(op: OpTrace, cut: DeviceCut | None) -> float:
    """A cumulative error in the tensor's real units: producers of one op are compared so."""
    if cut is None or cut.error is not None or cut.worst is None:
        return -1.0
    steps = cut.max_steps
    if steps is not None:
        return steps * (op.scale or 1.0)
    return float(getattr(cut.worst, "max_abs", None) or 0.0)


def _explains(producer: OpTrace, op: OpTrace, producer_error: float, carried: float) -> bool:
    """The producer's error, in the op's steps (scaled by the ratio of their scales), amplified by
    at most ``TRACE_CARRY_GAIN``, reaches what the op carries."""
    ratio = producer.scale / op.scale if producer.scale and op.scale else 1.0
    return producer_error * ratio * TRACE_CARRY_GAIN >= carried


def measure_around(bisector: Bisector, bisection: Bisection, upstream: Upstream) -> None:
    """The local (and, around a departure, cumulative) errors the attribution needs, by the
    rule of the module docstring."""
    measure = LocalMeasure(bisector)
    n_ops = len(bisector.ops)
    k = bisection.first_departing_op
    departing = bisection.status in (BisectionStatus.DEPARTS, BisectionStatus.INTERVAL) and k is not None
    if n_ops <= LOCAL_ALL_OPS and bisection.status is not BisectionStatus.ERROR:
        measure.local(list(range(n_ops)))
    if departing and k is not None:
        around = neighbourhood(k, upstream)
        measure.local(around)
        measure.cumulative(around)
    bisection.attribution_runs = bisector.attribution_runs


def attribute(name: str, bisection: Bisection, ops: list[OpTrace], upstream: Upstream,
              thresholds: Thresholds, float_model: bool) -> Attribution | None:
    """The op a device's departure comes from (module docstring), or None when it agrees."""
    k = bisection.first_departing_op
    if bisection.status not in (BisectionStatus.DEPARTS, BisectionStatus.INTERVAL) or k is None:
        return None
    bound = thresholds.device_bound(float_model)
    carried = ops[k].devices.get(name)
    alone = [j for j in range(k + 1) if (c := ops[j].local.get(name)) is not None and c.departs]
    if alone:
        j = alone[0]
        local = ops[j].local[name]
        reason = (f"{name}: op {j} ({ops[j].opcode}) alone, fed the reference kernels' values of its inputs, "
                  f"departs from the reference kernels: {local.headline} (bound {bound})")
        if j != k or carried is not None:
            reason += f"; from the model inputs, op {k} differs by {_headline(carried)}"
        return Attribution(j, k, local, carried, True, reason)
    local_k = ops[k].local.get(name)
    if local_k is None or local_k.departs is None:
        why = local_k.headline if local_k is not None else "not measured"
        return Attribution(k, k, local_k, carried, None,
                           f"{name}: {bisection.reason}; its local error (the op alone) is {why}")
    j = k
    while True:
        cum_m, loc_m = _magnitude(ops[j].devices.get(name)), _magnitude(ops[j].local.get(name))
        if loc_m < 0 or cum_m <= thresholds.jump_factor * loc_m:
            break   # the error is made here
        producers = [p for p in upstream.get(j, []) if _magnitude(ops[p].devices.get(name)) > 0]
        if not producers:
            break
        p = max(producers, key=lambda p: _absolute(ops[p], ops[p].devices.get(name)))
        if not _explains(ops[p], ops[j], _magnitude(ops[p].devices.get(name)), cum_m - loc_m):
            break   # too small to account for what op j carries: made within the graph at op j
        j = p
    origin = ops[j].local.get(name)
    if j == k:
        reason = (f"{name}: op {k} ({ops[k].opcode}) differs from the reference kernels by {_headline(carried)} "
                  f"in the model cut after it, but by {_headline(origin)} alone on the reference kernels' inputs, "
                  "and its inputs arrive with too little error to account for it: the difference comes from how "
                  "the device runs it within the graph (fusion, delegation)")
        return Attribution(k, k, origin, carried, False, reason)
    if origin is None:
        return Attribution(j, k, None, carried, None,
                           f"{name}: {bisection.reason}; carried from upstream of op {j}, beyond the ops whose "
                           "local error was measured")
    ratio = ""
    coarse, fine = ops[j].scale, ops[k].scale
    if coarse and fine:
        ratio = f" (its scale {fine:.3g} is {coarse / fine:.3g}x finer than op {j}'s {coarse:.3g})"
    within = "within" if not origin.departs else "beyond"
    reason = (f"{name}: op {j} ({ops[j].opcode}) adds {origin.headline} on its own ({within} {bound}: a rounding "
              f"difference, not a wrong kernel), carried into op {k} ({ops[k].opcode}){ratio}, which differs by "
              f"{_headline(local_k)} alone but by {_headline(carried)} from the model inputs")
    return Attribution(j, k, origin, carried, bool(origin.departs), reason)


def from_bisections(bisections: dict[str, Bisection], ops: list[OpTrace]) -> dict[str, Attribution]:
    """Without local errors: each departing device's first departing op, as its bisection says."""
    found = {}
    for name, b in bisections.items():
        k = b.first_departing_op
        if b.status in (BisectionStatus.DEPARTS, BisectionStatus.INTERVAL) and k is not None:
            found[name] = Attribution(k, k, ops[k].local.get(name), ops[k].devices.get(name), None,
                                      f"{name}: {b.reason}")
    return found


def _headline(cut: DeviceCut | None) -> str:
    return cut.headline if cut is not None else "– (not measured)"
