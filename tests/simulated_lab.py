"""A lab of simulated devices for the tests and benchmarks of devices at once and of shards: a
phone that takes a known time on each call and whose work is elsewhere (``shares_host_cpu``
False), a host-CPU device and a reference-kernels oracle that note when they hold the CPU, and a
``DeviceSet`` of them. Outputs are real: each runs the model with LiteRT in this process (the
real adapters do it in a child; these stand for hardware the test has not got)."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qat_harness.devices.base import (
    Availability,
    BenchResult,
    BenchSettings,
    Delegation,
    Device,
    ModelInputs,
    Role,
    RunResult,
    input_list,
)
from qat_harness.devices.device_set import DeviceSet


def _outputs(model_path: Path, inputs: ModelInputs, reference: bool) -> list[np.ndarray]:
    from qat_harness.devices.litert.worker import get_outputs, make_interpreter, set_inputs

    interp = make_interpreter(str(model_path), "ref" if reference else "builtin", 1)
    arrays = input_list(inputs)
    rows = []
    for i in range(len(arrays[0])):
        set_inputs(interp, [x[i:i + 1] for x in arrays])
        interp.invoke()
        rows.append([o[0] for o in get_outputs(interp)])
    return [np.stack([row[k] for row in rows]) for k in range(len(rows[0]))]


class Spans:
    """When each device held this machine's CPU (or waited on its hardware): (device, start, end)."""

    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def add(self, device: str, start: float, end: float) -> None:
        with self._lock:
            self.spans.append((device, start, end))

    def of(self, devices: set[str]) -> list[tuple[str, float, float]]:
        return sorted((s for s in self.spans if s[0] in devices), key=lambda s: s[1])


class LabDevice(Device):
    """A device that answers with LiteRT's outputs after ``seconds`` and times every model at
    ``latency_ms`` (fixed samples: two runs measure the same)."""
    description = "a simulated device of the test lab"
    simulated = True
    reference = False

    def __init__(self, name: str, spans: Spans, seconds: float = 0.0, latency_ms: float = 5.0,
                 barrier: threading.Barrier | None = None):
        self.name, self.spans, self.seconds, self.latency_ms, self.barrier = name, spans, seconds, latency_ms, barrier  # type: ignore[misc]

    def probe(self) -> Availability:
        return Availability(True, "simulated")

    def _work(self) -> None:
        time.sleep(self.seconds)

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        start = time.perf_counter()
        if self.barrier is not None:  # every device of the barrier is in here at once, or it breaks
            self.barrier.wait(timeout=60)
        self._work()
        out = _outputs(model_path, inputs, self.reference)
        self.spans.add(self.name, start, time.perf_counter())
        return RunResult(out[0], Delegation(self.name, 4, 4), simulated=True, extra_outputs=out[1:])

    def benchmark(self, models: dict[str, Path], sample, settings: BenchSettings) -> BenchResult:
        start = time.perf_counter()
        self._work()
        self.spans.add(self.name, start, time.perf_counter())
        times = {label: [self.latency_ms * (1 + 0.5 * (i % 2)) * (0.5 if "int8" in label else 1.0)
                         for i in range(settings.min_runs)] for label in models}
        return BenchResult(times, simulated=True)


class LabPhone(LabDevice):
    """A phone over adb: its work is on the phone, not on this machine's CPU (``apart=False``:
    the same phone taken as sharing it, so the run gives it the host CPU in turn)."""
    role = Role.ACCELERATOR

    def __init__(self, *args, apart: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.apart = apart

    @property
    def shares_host_cpu(self) -> bool:
        return not self.apart


class LabHostCpu(LabDevice):
    role = Role.HOST_CPU
    runs_on_host = True


class LabOracle(LabDevice):
    role = Role.ORACLE
    runs_on_host = True
    reference = True


def lab(devices: list[Device]) -> DeviceSet:
    return DeviceSet({d.name: d for d in devices}, availability={}, options={})


@contextlib.contextmanager
def plain_html_pages():
    """report.html without its plots (seconds of matplotlib per device, not the subject here)."""
    from qat_harness.writers import html

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(html, "render", lambda run: f"<html><body>{len(run.claims)} claims</body></html>")
        yield
