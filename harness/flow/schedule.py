"""One model on its devices, several at once where that never changes a measurement.

A device whose work takes this machine's CPU (``Device.shares_host_cpu``: cpu, cpu-ref, an
emulated phone, ...) runs in the main thread, one after another, each holding ``HOST_CPU`` for
its whole run. Every other device (a phone over adb, an Edge TPU, a remote board) runs in a
thread of its own, beside them and beside each other: it waits on its hardware, and what it does
on this machine meanwhile (pushing a file, judging outputs) is small. The host work such a
device's run does ask for takes ``HOST_CPU`` too: the reference kernels' outputs, and a per-layer
trace (done in the main thread when its device's results are recorded). So a host-CPU device is
never timed beside other host work of the run, and the wall time of a run over N phones is
close to the slowest phone's, not the sum.

What each device measures is held by its ``DeviceStage`` and added to the report in device
order, a device once every device before it is added: the report is the one a run of the
devices one after another writes, whichever finished first, and it is saved after every device
as before. A device whose turn has come records straight into the report (so the first device,
and every device of a run without separate hardware, records exactly as it always did)."""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qat_harness.core.tflite import ModelInfo
from qat_harness.devices.base import ModelInputs
from qat_harness.measure.output_kinds import OutputRole
from qat_harness.record.tree import ModelSection
from qat_harness.results import ClaimResult

if TYPE_CHECKING:
    from qat_harness.devices.base import Device
    from qat_harness.devices.device_set import DeviceSet
    from qat_harness.flow.device import DeviceRun, ModelStage

    class ModelRun(ModelStage, Protocol):
        """What scheduling takes from its model's run (``flow.model.ModelRun``)."""
        devices: DeviceSet
        stages: dict[str, DeviceStage]

        def on_device(self, dev_name: str, dev: Device) -> None: ...

#: This machine's CPU: held by a host-CPU device's whole run, and by any host work of the others.
HOST_CPU = threading.RLock()


class DeviceStage:
    """What one device's run (``flow.device.DeviceRun``) sees of its model's stage: the
    model's files, inputs and oracle, and a report that keeps what the device records until its
    turn comes (``attach``), then writes straight into the model's report."""

    def __init__(self, run: ModelRun, dev_name: str, beside: bool = False,
                 is_turn: Callable[[], bool] = lambda: True, board: DeviceBoard | None = None):
        self.run, self.dev_name, self.beside, self.board = run, dev_name, beside, board
        self.name, self.ut, self.model = run.name, run.ut, run.model
        self.emulated_outputs = run.emulated_outputs   # the model's own: emulated devices take turns
        # a device beside the others leaves its trace (host work) to the main thread: see ``finish``
        self.opts = dataclasses.replace(run.opts, trace=False) if beside else run.opts
        self.report = StagedReport(run, self)
        self._is_turn = is_turn
        #: the model's section as the device's run sees it: a copy holding its own device section
        #: until it is attached, then the model's own
        self.section: ModelSection = dataclasses.replace(run.section, devices={})
        self.attached = False
        self.progress: Callable[[str], Any] = self._progress
        self.device_run: DeviceRun | None = None     # set by ``ModelRun.on_device``
        self.finished = threading.Event()
        self.failure: BaseException | None = None

    # -- ModelStage ----------------------------------------------------------------------------
    def _progress(self, message: str) -> Any:
        if self.board is not None:
            self.board.said(self.dev_name, message)
        return self.run.progress(message)

    def files_to_run(self) -> dict[str, Path]:
        return self.run.files_to_run()

    def info(self, variant: str) -> ModelInfo:
        return self.run.info(variant)

    def eval_x(self) -> Any:
        return self.run.eval_x()

    def eval_y(self) -> np.ndarray | None:
        return self.run.eval_y()

    def inputs(self, variant: str, x: Any) -> ModelInputs:
        return self.run.inputs(variant, x)

    def output_roles(self) -> list[OutputRole]:
        return self.run.output_roles()

    def oracle_outputs(self) -> list[np.ndarray] | None:
        with HOST_CPU:  # the reference kernels run on this machine's CPU
            outputs = self.run.oracle_outputs()
            self.section.oracle_error = self.run.section.oracle_error
        return outputs

    def judge_structure(self, final: bool) -> None:
        self.report.step(lambda: self.run.judge_structure(final))

    # -- its turn --------------------------------------------------------------------------------
    def attach(self) -> None:
        """Its turn has come (every device before it is recorded): put its device section in the
        model's, add what it kept, and from now on record straight into the report."""
        if self.attached:
            return
        own = self.section.devices.get(self.dev_name)
        if own is not None:
            self.run.section.devices[self.dev_name] = own
        self.section, self.attached = self.run.section, True
        self.report.replay()

    def save_if_its_turn(self) -> bool:
        if not self.attached and threading.current_thread() is threading.main_thread() and self._is_turn():
            self.attach()
        return self.attached

    def finish(self) -> None:
        """After its results are recorded: the host work it left to the main thread."""
        if self.beside and self.run.opts.trace and self.device_run is not None:
            with HOST_CPU:
                self.device_run.trace_if_it_disagrees()


class StagedReport:
    """The recording calls of ``record.report.Report`` a device's run makes, kept in order until
    its stage is attached, then made on the report itself."""

    def __init__(self, run: ModelRun, stage: DeviceStage):
        self._report, self._stage = run.report, stage
        self._steps: list[Callable[[], None]] = []
        self._claims: list[ClaimResult] = []
        self.run = run.report.run   # read only: the environment the claims are judged on

    def step(self, do: Callable[[], None]) -> None:
        if self._stage.attached:
            do()
        else:
            self._steps.append(do)

    def replay(self) -> None:
        steps, self._steps = self._steps, []
        for do in steps:
            do()

    def add_claim(self, result: ClaimResult) -> None:
        if not self._stage.attached:
            self._claims.append(result)
        self.step(lambda: self._report.add_claim(result))

    def note(self, model: str, text: str) -> None:
        self.step(lambda: self._report.note(model, text))

    @property
    def claims(self) -> list[ClaimResult]:
        return self._report.claims if self._stage.attached else self._claims

    def save(self) -> None:
        if self._stage.save_if_its_turn():
            self._report.save()


class DeviceBoard:
    """Every device's state, one line through the run's progress each time one changes (only
    when devices run beside each other: otherwise the progress lines say it already)."""

    def __init__(self, model: str, devices: list[str], progress: Callable[[str], Any], shown: bool):
        self.model, self.progress, self.shown = model, progress, shown
        self.states = dict.fromkeys(devices, "waiting")
        self._lock = threading.Lock()

    def set(self, device: str, state: str) -> None:
        with self._lock:
            if self.states.get(device) == state:
                return
            self.states[device] = state
            if self.shown:
                self.progress(f"{self.model}: " + " | ".join(f"{d} {s}" for d, s in self.states.items()))

    def said(self, device: str, message: str) -> None:
        """A progress line of ``device``'s run: its state is what the line says it does now."""
        state = message.removeprefix(f"{self.model}: ").replace(f" on {device}", "").split(" (")[0]
        self.set(device, state)


def run_devices(run: ModelRun, names: list[str]) -> None:
    """``run``'s model on each of ``names`` (in order), devices apart from the host CPU beside
    the others; each device's results added to the report in that order, marked done and saved.
    An error of a device's run goes on up once every device before it is recorded, as it would
    one after another; Ctrl-C and SIGTERM go on up at once (what is recorded is the report's)."""
    devices = run.devices
    beside = [n for n in names if not devices[n].shares_host_cpu]
    board = DeviceBoard(run.name, names, run.progress, shown=bool(beside) and len(names) > 1)
    stages: dict[str, DeviceStage] = {}
    recorded = 0

    def is_turn(name: str) -> Callable[[], bool]:
        return lambda: recorded == names.index(name)

    for n in names:
        stages[n] = DeviceStage(run, n, n in beside, is_turn(n), board)
    run.stages = stages

    def record_ready() -> None:
        nonlocal recorded
        while recorded < len(names) and stages[names[recorded]].finished.is_set():
            stage = stages[names[recorded]]
            stage.attach()
            if stage.failure is not None:
                raise stage.failure
            stage.finish()
            run.report.mark_done(run.name, stage.dev_name)
            run.report.save()
            board.set(stage.dev_name, "done")
            recorded += 1

    def measure(stage: DeviceStage) -> None:
        board.set(stage.dev_name, "starting")
        try:
            run.on_device(stage.dev_name, devices[stage.dev_name])
        except Exception as exc:  # noqa: BLE001 - raised in device order by ``record_ready``
            stage.failure = exc
            board.set(stage.dev_name, "failed")
        finally:
            stage.finished.set()

    def beside_the_others(stage: DeviceStage) -> None:
        try:
            measure(stage)
        except BaseException as exc:  # noqa: BLE001 - a thread's end is told to the main thread
            stage.failure = exc
            stage.finished.set()

    threads = [threading.Thread(target=beside_the_others, args=(stages[n],), daemon=True,
                                name=f"device {n}") for n in beside]
    try:
        for thread in threads:
            thread.start()
        for n in names:
            if n in beside:
                continue
            record_ready()
            if any(stages[m].failure is not None for m in names[:names.index(n)]):
                break  # a device before it failed: one after another, this one would not run
            board.set(n, "waiting for the host CPU")
            with HOST_CPU:
                if is_turn(n)():
                    stages[n].attach()
                measure(stages[n])
            record_ready()
        for n in names[recorded:]:
            while not stages[n].finished.wait(0.5):
                pass  # a timed wait: Ctrl-C and SIGTERM are taken between two
            record_ready()
    except Exception:
        for thread in threads:  # the next model must never share a device with this one's runs
            thread.join()
        raise
