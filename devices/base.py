"""The device adapter interface.

Every place a .tflite model can run (the host CPU through XNNPACK, LiteRT's reference kernels,
an Android phone's NNAPI over adb, a Coral Edge TPU) is one ``Device``. The pipeline only
speaks this interface, so it never needs to know how a device is reached.

A device class declares what it is, as class attributes, the way TFLite's delegate providers
declare their own flags:

- ``name``: the ``--devices`` / ``--device`` key; ``description``: one line for listings;
- ``role``: ``Role.HOST_CPU`` (judged on C2), ``Role.ACCELERATOR`` (judged on C3),
  ``Role.ORACLE`` (the numeric reference; no latency claim), ``Role.EMULATED`` (an emulator's
  kernels: numeric claims only, an emulator's timing is no hardware's) or ``Role.OVERHEAD``;
- ``runs_on_host`` and ``kernel``: facts the run needs and must never guess from a name or a
  class: whether the device computes on this machine's CPU (its C2 ceiling is this CPU's, and
  its timing shares the host with every other such device), and which kernels compute the
  results (``xnnpack``, ``builtin``, ``reference``, ``openvino``, ``edgetpu``, ...);
- ``options``: the ``DeviceOption``s it takes. The command line offers each as a flag, the
  pytest plugin as ``--device-option NAME=VALUE``; the constructor receives exactly the
  declared options plus ``num_threads``, and an option no requested device declares is an
  error, never silently dropped;
- ``probe()``: is it usable now, and if not exactly what is missing.

Devices are found through the entry-point group ``qat_harness.devices`` (``devices.registry``);
the built-in ones register there too, so a third-party package adds a device the same way.

Rules every adapter keeps:
- A model execution never happens in the harness's own process (a runtime that aborts or
  hangs must not take the harness down): the CPU adapters run it in a child process
  (``core.child``), remote adapters run it on the remote device.
- Failures are raised as ``DeviceError`` with a one-line reason; the pipeline turns them into
  ERROR verdicts and goes on with the other models and devices.
- A result obtained through a simulator carries ``simulated=True`` all the way to the report.
"""
from __future__ import annotations

import abc
import dataclasses
import enum
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from qat_harness.core.errors import DeviceError
from qat_harness.core.timing import TimingProtocol

__all__ = ["Availability", "BenchResult", "BenchSettings", "Delegation", "Device", "DeviceError",
           "DeviceOption", "ModelInputs", "Role", "RunResult", "TimingProtocol", "input_list",
           "load_inputs", "save_inputs", "single_input"]


class Role(str, enum.Enum):
    HOST_CPU = "host-cpu"
    ACCELERATOR = "accelerator"
    ORACLE = "oracle"
    OVERHEAD = "overhead"
    #: computed by an emulator (QEMU): numerics judged, latency never
    EMULATED = "emulated"


@dataclasses.dataclass(frozen=True)
class DeviceOption:
    """One option a device takes. ``flag`` is its command-line spelling (devices that share
    an option, such as every Android device's ``serial``, share the flag); ``env`` names the
    environment variable the device reads when the option is not given."""
    name: str
    help: str
    flag: str | None = None
    type: Callable[[str], Any] = str
    default: Any = None
    env: str | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


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
    #: how the samples were obtained: the harness's own schedule, or a remote tool's loop
    protocol: TimingProtocol = TimingProtocol.ABBA_BLOCKS


#: What ``run`` takes: one array (a single-input model), or one array per model input in the
#: model's input order; examples on the first axis, already in each input's dtype.
ModelInputs = np.ndarray | list[np.ndarray]


def input_list(inputs: ModelInputs) -> list[np.ndarray]:
    return [np.asarray(x) for x in inputs] if isinstance(inputs, (list, tuple)) else [np.asarray(inputs)]


def save_inputs(path: Path, inputs: ModelInputs) -> None:
    """Inputs for a worker child: an .npz of ``in_0``, ``in_1``, ... one array per model input,
    examples first (``load_inputs`` reads it back on the child's side)."""
    np.savez(path,  # numpy stub: **arrays read as allow_pickle
             **{f"in_{i}": x for i, x in enumerate(input_list(inputs))})  # type: ignore[arg-type]


def load_inputs(path: str | Path) -> list[np.ndarray]:
    """What ``save_inputs`` wrote, never unpickled."""
    with np.load(path, allow_pickle=False) as npz:
        return [npz[f"in_{i}"] for i in range(len(npz.files))]


def single_input(inputs: ModelInputs, device: str) -> np.ndarray:
    """For adapters that feed one input tensor: refuse a multi-input model in one line rather
    than run it with inputs left unset."""
    arrays = input_list(inputs)
    if len(arrays) != 1:
        raise DeviceError(f"{device} runs models with one input; this one has {len(arrays)}",
                          kind="unsupported")
    return arrays[0]


@dataclasses.dataclass
class RunResult:
    """Outputs of one model on a batch of inputs (first axis = examples), in the model's own
    output dtype (int8 for full-integer models): ``outputs`` is the first output tensor,
    ``extra_outputs`` the others in the model's output order."""
    outputs: np.ndarray
    delegation: Delegation | None = None
    simulated: bool = False
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra_outputs: list[np.ndarray] = dataclasses.field(default_factory=list)

    @property
    def all_outputs(self) -> list[np.ndarray]:
        return [self.outputs, *self.extra_outputs]


class Device(abc.ABC):
    """One place models run. Subclasses declare ``name``, ``description``, ``role`` and
    ``options`` (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    role: ClassVar[Role] = Role.HOST_CPU
    options: ClassVar[tuple[DeviceOption, ...]] = ()
    #: computes on this machine's CPU (see the module docstring)
    runs_on_host: ClassVar[bool] = False
    #: which kernels compute the results, where one library's kernels are meant
    kernel: ClassVar[str | None] = None
    #: None: runs a model mixing float32 and int8 ops as it is. Otherwise, one line on what
    #: such a model costs here (an integer-only accelerator hands the float part to the CPU).
    mixed_precision_cost: ClassVar[str | None] = None
    #: True when this adapter talks to a simulator of the test suite, never to hardware.
    simulated: bool = False

    @property
    def shares_host_cpu(self) -> bool:
        """Does its work take this machine's CPU: it computes here, or a simulator computes for it
        here? A run gives such devices the host one at a time, so that no latency is measured
        under another device's load; the others (a phone over adb, an Edge TPU, a remote board)
        run beside them and beside each other."""
        return self.runs_on_host or self.simulated

    @abc.abstractmethod
    def probe(self) -> Availability:
        """Is the device usable now? Cheap, never raises; says what is missing."""

    def describe(self) -> dict[str, Any]:
        """Facts about the device for the report (model, SoC, API level, CPU flags, ...)."""
        return {"name": self.name, "simulated": self.simulated, "role": self.role.value}

    @abc.abstractmethod
    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        """Run the model on every example of ``inputs`` (already in the model's input dtype;
        a list for a model with several inputs) and return every output. An adapter that
        cannot feed every input or return every output raises DeviceError(kind='unsupported')
        instead of dropping some. Raises DeviceError."""

    @abc.abstractmethod
    def benchmark(self, models: dict[str, Path], sample: np.ndarray | dict[str, np.ndarray],
                  settings: BenchSettings) -> BenchResult:
        """Time each model, interleaved across models when there are several, on the same
        input(s) (one example; a dict gives each label its own, already-typed input).
        Raises DeviceError."""

    def benchmark_runtimes(self, models: dict[str, Path], runtimes: dict[str, Path | None],
                           sample: np.ndarray | dict[str, np.ndarray], settings: BenchSettings) -> BenchResult:
        """As ``benchmark``, each model loaded by its own runtime package (label -> the folder to
        import it from; None: the device's own), all in one schedule: how a new runtime is
        confirmed slower than the old one. A device that loads one runtime only refuses."""
        raise DeviceError(f"{self.name} cannot load another runtime beside its own", kind="unsupported")

    def prepare(self, model_path: Path, workdir: Path) -> tuple[Path, Delegation | None]:
        """Device-specific compilation step (e.g. edgetpu_compiler). Returns the model to run
        and, when known ahead of running, how the graph is mapped. Default: nothing to do."""
        return model_path, None

    def close(self) -> None:  # noqa: B027 - optional: most devices hold nothing to release
        """Release the device (remove pushed files, close connections)."""
