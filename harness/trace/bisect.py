"""Bisection on a device: the first op whose output departs from the reference kernels'.

A device's value of an op's output is obtained by cutting the graph there (``graph.cut_model``)
and running the cut model through the device's ordinary ``prepare`` and ``run`` (children,
timeouts, errors are the device's), so a device whose intermediates are hidden still shows
them. Devices are bisected over the op sequence (1 + ceil(log2(ops)) runs at most), not run
once per op; a cut the device cannot run is stepped over."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import Device
from qat_harness.measure.difference import OutputDifference
from qat_harness.trace import graph
from qat_harness.trace.capture import TensorValues
from qat_harness.trace.measures import departs, device_difference, quant_error
from qat_harness.trace.results import (
    Bisection,
    BisectionStatus,
    CutRun,
    DeviceCut,
    Mismatch,
    OpTrace,
    Thresholds,
)

#: Cuts tried back from the last op when a device cannot run the whole model.
TAIL_ATTEMPTS = 4


@dataclasses.dataclass
class TracedModel:
    """The int8 model under trace, its inputs and the values every device is measured against."""
    int8_path: Path
    info: tflite.ModelInfo
    inputs: list[np.ndarray]            # in the int8 model's input dtypes
    n: int                              # examples
    reference: TensorValues             # the reference kernels' op outputs (and the model inputs)
    float_values: TensorValues          # the float model's matched values (empty without one)
    matches: dict[int, int]             # int8 tensor -> float tensor
    tmp: Path
    timeout_s: float
    float_model: bool = False           # the traced model computes in float (judged in relative error)

    def recorded(self, t: int) -> np.ndarray:
        """The reference kernels' value of tensor ``t``, examples first, in the tensor's shape."""
        value = np.asarray(self.reference[t])
        shape = self.info.tensor(t).shape
        per_example = tuple(int(d) for d in shape[1:]) if len(shape) > 0 else ()
        if value.size == self.n * graph.element_count(per_example):
            return value.reshape((self.n, *per_example))
        return value


def _severity(difference: OutputDifference | Mismatch) -> float:
    if isinstance(difference, Mismatch):
        return float("inf")
    if difference.max_steps is not None:
        return float(difference.max_steps)
    return float(difference.max_rel or 0.0)


class Bisector:
    def __init__(self, name: str, dev: Device, model: TracedModel, ops: list[OpTrace], thresholds: Thresholds):
        self.name, self.dev, self.model, self.ops, self.thresholds = name, dev, model, ops, thresholds
        self.runs: list[CutRun] = []
        self.attribution_runs: list[CutRun] = []

    def run_model(self, path: Path, inputs: list[np.ndarray], tag: str) -> list[np.ndarray] | DeviceError:
        """``path`` through the device's ordinary ``prepare`` and ``run``; its error, when it fails."""
        workdir = self.model.tmp / f"{self.name}-work-{tag}"
        workdir.mkdir(exist_ok=True)
        try:
            path, _ = self.dev.prepare(path, workdir)
            return self.dev.run(path, inputs if len(inputs) > 1 else inputs[0], self.model.timeout_s).all_outputs
        except DeviceError as exc:
            return exc

    def compare(self, values: dict[int, np.ndarray]) -> DeviceCut:
        """The device's values of some tensors (tensor -> value) against the reference kernels'."""
        m = self.model
        cut = DeviceCut(False)
        for t, value in values.items():
            if t not in m.reference:
                continue
            tensor = m.info.tensor(t)
            difference = device_difference(value, m.reference[t], tensor, m.n)
            cut.departs = cut.departs or departs(difference, self.thresholds, m.float_model)
            if cut.worst is None or _severity(difference) > _severity(cut.worst):
                cut.worst, cut.rel_vs_float = difference, self._rel_vs_float(value, t, tensor, difference)
        return cut

    def measure(self, k: int) -> bool | None:
        """Run the model cut after op ``k`` on the device; True when it departs there, None
        when the device cannot run the cut."""
        m = self.model
        outs = [t for t in m.info.ops[k].outputs if t >= 0]
        path = graph.cut_model(m.int8_path, outs, m.tmp / f"{self.name}-cut{k}.tflite")
        t0 = time.perf_counter()
        result = self.run_model(path, m.inputs, f"cut{k}")
        cut = (DeviceCut(None, error=f"{result.kind}: {result.reason}"[:300]) if isinstance(result, DeviceError)
               else self.compare(dict(zip(outs, result))))
        self.ops[k].devices[self.name] = cut
        self.runs.append(CutRun(k, round(time.perf_counter() - t0, 3), cut))
        return cut.departs

    def _rel_vs_float(self, value: np.ndarray, t: int, tensor: tflite.TensorInfo,
                      difference: OutputDifference | Mismatch) -> float | None:
        """The device's own relative error against float, to tell which of it and the reference
        kernels is the odd one out where both depart."""
        ft = self.model.matches.get(t)
        if ft is None or ft not in self.model.float_values or isinstance(difference, Mismatch):
            return None
        try:
            return quant_error(value, self.model.float_values[ft], tensor, self.model.n).rel
        except ValueError:
            return None

    def bisect(self) -> Bisection:
        ops = self.model.info.ops
        last = len(ops) - 1
        at_end = self.measure(last)
        cannot = None
        while at_end is None and last > 0 and len(self.runs) < TAIL_ATTEMPTS:
            # the device cannot run the whole model: trace what it can run
            cannot = cannot if cannot is not None else last
            last -= 1
            at_end = self.measure(last)
        if at_end is None:
            return Bisection(BisectionStatus.ERROR, self.runs[-1].cut.error or "", self.runs)
        steps = self.thresholds.device_bound(self.model.float_model)
        if not at_end:
            where = "the output is" if cannot is None else (
                f"op {last}'s output (the last it can run: cuts from op {cannot} fail: "
                f"{(self.runs[0].cut.error or '')[:100]}) is")
            return Bisection(BisectionStatus.AGREES, f"{where} within {steps} of the reference kernels", self.runs)
        lo, hi = -1, last  # ops <= lo agree, op hi departs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            verdict, probe = None, mid
            while probe < hi:  # a cut the device cannot run: try the next op
                verdict = self.measure(probe)
                if verdict is not None:
                    break
                probe += 1
            if verdict is None:
                return Bisection(BisectionStatus.INTERVAL,
                                 f"the device could not run cuts between op {lo + 1} and op {hi}", self.runs,
                                 first_departing_op=hi, agrees_up_to=lo)
            if verdict:
                hi = probe
            else:
                lo = probe
        return Bisection(BisectionStatus.DEPARTS,
                         f"op {hi} ({ops[hi].opcode}) is the first whose output departs from "
                         f"the reference kernels by more than {steps}", self.runs,
                         first_departing_op=hi, agrees_up_to=lo)
