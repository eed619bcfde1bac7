"""The device adapter interface.

Every place a .tflite model can run (the host CPU through XNNPACK, LiteRT's reference kernels,
an Android phone's NNAPI over adb, a Coral Edge TPU) is one ``Device``. The pipeline only
speaks this interface, so it never needs to know how a device is reached.

Rules every adapter keeps:
- A model execution never happens in the harness's own process (a runtime that aborts or
  hangs must not take the harness down): the CPU adapters run it in a child process
  (``devices.isolation``), remote adapters run it on the remote device.
- Failures are raised as ``DeviceError`` with a one-line reason; the pipeline turns them into
  ERROR verdicts and goes on with the other models and devices.
- A result obtained through a simulator carries ``simulated=True`` all the way to the report.
"""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np


class DeviceError(Exception):
    """A model could not be run on a device. ``kind`` classifies it for the report:
    'crash' (signal), 'timeout', 'offline', 'missing-tool', 'disk-full', 'unsupported', 'failed'."""

    def __init__(self, reason: str, kind: str = "failed", details: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.details = details or {}


class DeviceUnavailable(Exception):
    """The device (or a tool it needs) is not present. The message says what is missing and how
    to install it."""


@dataclasses.dataclass
class Availability:
    available: bool
    reason: str  # what was found, or exactly what is missing and how to get it
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class BenchSettings:
    warmup_runs: int = 5
    min_runs: int = 30
    min_seconds: float = 1.0
    max_runs: int = 2000
    num_threads: int = 2
    timeout_s: float = 300.0


@dataclasses.dataclass
class Delegation:
    """How much of a graph the device's accelerator really ran (claim C3).

    ``ops_total`` counts the model's operators; ``ops_delegated`` those the accelerator took.
    ``fallback`` lists (op name, reason) for what stayed on the CPU.
    """
    backend: str  # 'xnnpack', 'nnapi', 'edgetpu', 'reference'
    ops_total: int | None = None
    ops_delegated: int | None = None
    fallback: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.ops_total or self.ops_delegated is None:
            return None
        return self.ops_delegated / self.ops_total

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fraction"] = self.fraction
        d["fallback"] = [list(f) for f in self.fallback]
        return d


@dataclasses.dataclass
class BenchResult:
    """Raw per-run latencies in milliseconds, per model label, measured interleaved when more
    than one model was given (label order: a, b, a, b, ...). ``first_invoke_ms`` is the first
    invoke of each model (on an Edge TPU, this includes loading the model into the TPU)."""
    times_ms: dict[str, list[float]]
    first_invoke_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    delegation: dict[str, Delegation] = dataclasses.field(default_factory=dict)
    simulated: bool = False
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunResult:
    """Outputs of one model on a batch of inputs (first axis = examples), in the model's own
    output dtype (int8 for full-integer models)."""
    outputs: np.ndarray
    delegation: Delegation | None = None
    simulated: bool = False
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Device(abc.ABC):
    """One place models run. Subclasses set ``name`` (the --devices / --device key)."""

    name: str = ""
    #: True when this adapter talks to a simulator of the test suite, never to hardware.
    simulated: bool = False

    @abc.abstractmethod
    def probe(self) -> Availability:
        """Is the device usable now? Cheap, never raises; says what is missing."""

    def describe(self) -> dict[str, Any]:
        """Facts about the device for the report (model, SoC, API level, CPU flags, ...)."""
        return {"name": self.name, "simulated": self.simulated}

    @abc.abstractmethod
    def run(self, model_path: Path, inputs: np.ndarray, timeout_s: float = 300.0) -> RunResult:
        """Run the model on every example of ``inputs`` (already in the model's input dtype)
        and return the outputs. Raises DeviceError."""

    @abc.abstractmethod
    def benchmark(self, models: dict[str, Path], sample: np.ndarray | dict[str, np.ndarray],
                  settings: BenchSettings) -> BenchResult:
        """Time each model, interleaved across models when there are several, on the same
        input(s) (one example; a dict gives each label its own, already-typed input).
        Raises DeviceError."""

    def prepare(self, model_path: Path, workdir: Path) -> tuple[Path, Delegation | None]:
        """Device-specific compilation step (e.g. edgetpu_compiler). Returns the model to run
        and, when known ahead of running, how the graph is mapped. Default: nothing to do."""
        return model_path, None

    def close(self) -> None:
        """Release the device (remove pushed files, close connections)."""
