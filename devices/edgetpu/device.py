"""The Coral Edge TPU adapter (``edgetpu``).

``prepare`` compiles a full-int8 model with ``edgetpu_compiler`` and reads from its report how
much of the graph the Edge TPU runs (claim C3). ``run`` / ``benchmark`` load the compiled model
in the LiteRT child worker with libedgetpu as a delegate (``load_delegate('libedgetpu.so.1',
{'device': 'usb:0'})``), so a runtime that aborts never takes the harness down. The first
invoke, which loads the model's parameters into the TPU, is timed apart from steady state.

Simulation (the test suite's): when the compiler is the suite's fake (its version line carries
``SIMULATOR_MARKER``) or ``QAT_EDGETPU_SIMULATOR=1``, the adapter is ``simulated``: models "run"
on the host CPU through the same LiteRT worker without any delegate, and every result carries
``simulated=True``. A simulated result is never reported as hardware.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from qat_harness.core.child import run_child
from qat_harness.devices.base import (
    Availability,
    BenchResult,
    BenchSettings,
    Delegation,
    Device,
    DeviceError,
    DeviceOption,
    ModelInputs,
    Role,
    RunResult,
)
from qat_harness.devices.edgetpu import compiler as etc
from qat_harness.devices.edgetpu import runtime as etr
from qat_harness.devices.litert.cpu import LiteRTDevice

SIMULATOR_ENV = "QAT_EDGETPU_SIMULATOR"
DEVICE_ENV = "QAT_EDGETPU_DEVICE"
RUNTIME_MODULE = "qat_harness.devices.edgetpu.runtime"


def simulator_requested() -> bool:
    return os.environ.get(SIMULATOR_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class EdgeTpuDevice(LiteRTDevice):
    name = "edgetpu"
    description = "Coral Edge TPU (edgetpu_compiler + libedgetpu delegate; simulated in the test suite)"
    role = Role.ACCELERATOR
    options = (
        DeviceOption("device", "Edge TPU device: usb, usb:N, pci, pci:N (default: the first found)",
                     flag="--edgetpu-device", env=DEVICE_ENV),
        DeviceOption("compiler", "path of edgetpu_compiler", flag="--edgetpu-compiler",
                     env=etc.COMPILER_ENV),
        DeviceOption("compile_timeout_s", "edgetpu_compiler time limit per model, seconds",
                     flag="--edgetpu-compile-timeout", type=float, default=600.0),
    )
    kernel = "edgetpu"
    #: its runtime is libedgetpu beside LiteRT: LiteRT's two-runtime timing would time the host CPU
    benchmark_runtimes = Device.benchmark_runtimes
    mixed_precision_cost = ("the Edge TPU runs int8 ops only: edgetpu_compiler maps the graph up to the "
                            "first float op and every op from there on runs on the host CPU")

    def __init__(self, device: str | None = None, compiler: str | None = None,
                 num_threads: int = 2, compile_timeout_s: float = 600.0):
        super().__init__(num_threads)
        device = device or os.environ.get(DEVICE_ENV) or None
        self.device_string = device
        try:
            self.spec: etr.DeviceSpec | None = etr.parse_device(device)
            self.spec_error = None
        except ValueError as exc:  # reported by probe() and raised by run(), never at creation
            self.spec, self.spec_error = None, str(exc)
        self.compile_timeout_s = compile_timeout_s
        self.compiler = etc.find_compiler(compiler)
        self.compiler_requested = compiler or os.environ.get(etc.COMPILER_ENV)
        self.compiler_version = etc.compiler_version(self.compiler) if self.compiler else None
        self.compiler_simulated = bool(self.compiler_version
                                       and etc.SIMULATOR_MARKER in self.compiler_version)
        self.simulated = self.compiler_simulated or simulator_requested()
        self.runtime = None if self.simulated else etr.find_runtime()
        # compiled model -> (source model, compiler's mapping); a simulated run executes the
        # source on the host CPU (a real compiled model holds an edgetpu-custom-op).
        self._compiled: dict[str, tuple[Path, Delegation]] = {}

    # --- availability ----------------------------------------------------------------------

    def _compiler_problem(self) -> str | None:
        if self.compiler:
            if self.compiler_version is None:
                return f"edgetpu_compiler at {self.compiler} did not report a version (`--version` failed)"
            return None
        if self.compiler_requested:
            return (f"edgetpu_compiler: {self.compiler_requested!r} (given by the compiler option or "
                    f"${etc.COMPILER_ENV}) is not an executable file")
        if not etc.host_can_run_compiler():
            return (f"edgetpu_compiler is not available on this host ({platform.system()} "
                    f"{platform.machine()}): Coral ships it for x86-64 Linux only; compile on an "
                    f"x86-64 Debian/Ubuntu machine or with Coral's web compiler (Colab), see "
                    f"{etc.COMPILER_DOCS_URL}")
        return f"edgetpu_compiler not found on PATH nor in ${etc.COMPILER_ENV}: {etc.INSTALL_COMPILER}"

    def _devices(self) -> list[etr.FoundDevice]:
        return etr.find_pci_devices() + etr.find_usb_devices()

    def _device_problem(self, devices: list[etr.FoundDevice]) -> str | None:
        if platform.system() != "Linux":
            return None  # no sysfs: the runtime itself says so when the delegate loads
        if not devices:
            return ("no Coral Edge TPU found: no USB Accelerator (USB ids 1a6e:089a / 18d1:9302 in "
                    f"{etr.SYSFS_USB}) and no PCIe/M.2 Edge TPU ({etr.DEV_DIR}/apex_*); plug in the "
                    f"USB Accelerator, or {etr.PCIE_INSTALL}")
        assert self.spec is not None  # probe() asks only when a device was named
        chosen = etr.select(devices, self.spec)
        if chosen is None:
            kinds = ", ".join(f"{d.kind} ({d.path})" for d in devices)
            return f"Edge TPU device '{self.spec}' not found; found: {kinds}"
        if not chosen.accessible:
            fix = ("add your user to the 'apex' group (Coral's gasket-dkms udev rule) and log in again"
                   if chosen.kind == "pci" else
                   "the udev rule from libedgetpu1-std grants access: install it, then unplug and "
                   "replug the USB Accelerator")
            return f"no permission to open the Edge TPU {chosen.node or chosen.path}: {fix}"
        return None

    def probe(self) -> Availability:
        missing: dict[str, str] = {}
        details: dict = {"simulated": self.simulated, "compiler": self.compiler,
                         "compiler_version": self.compiler_version, "runtime": self.runtime,
                         "device": str(self.spec) if self.spec else self.device_string}
        if self.spec_error:
            missing["device-string"] = self.spec_error
        problem = self._compiler_problem()
        if problem:
            missing["compiler"] = problem
        if self.simulated:
            if self.runtime_package is None:
                missing["litert"] = "no LiteRT runtime to simulate the Edge TPU on: pip install ai-edge-litert"
        else:
            if self.runtime is None:
                missing["runtime"] = (f"Edge TPU runtime ({etr.library_name()}) not found: "
                                      f"{etr.runtime_install_hint()}")
            devices = self._devices()
            details["devices"] = [d.to_dict() for d in devices]
            if self.spec is not None:
                problem = self._device_problem(devices)
                if problem:
                    missing["device"] = problem
        details["missing"] = list(missing)
        if missing:
            reason = "; ".join(missing.values())
            if "Coral's apt repository" in reason:  # say once how to add it
                reason += f" ({etc.CORAL_APT_REPO})"
            return Availability(False, reason, details)
        if self.simulated:
            why = ("the compiler is the test suite's fake" if self.compiler_simulated
                   else f"{SIMULATOR_ENV}=1")
            return Availability(True, f"SIMULATED Edge TPU ({why}): compiler {self.compiler_version}; "
                                      "models run on the host CPU through LiteRT, no Edge TPU is used",
                                details)
        found = ", ".join(f"{d['kind']} {d['ids'] or d['path']}" for d in details["devices"])
        if not found:  # no sysfs (macOS / Windows): the runtime finds the device when it loads
            found = "not checked on this OS"
        return Availability(True, f"edgetpu_compiler {self.compiler_version}; runtime {self.runtime}; "
                                  f"device {self.spec}: {found}", details)

    def describe(self) -> dict:
        d = {"name": self.name, "simulated": self.simulated,
             "device": str(self.spec) if self.spec else self.device_string,
             "kind": self._kind(), "compiler": self.compiler,
             "compiler_version": self.compiler_version, "runtime_library": self.runtime,
             "runtime_version": None, "host": f"{platform.system()} {platform.machine()}",
             "google_pycoral": etr.has_google_pycoral()}
        if self.simulated:
            module = self.runtime_package.module if self.runtime_package else None
            d["runtime_version"] = f"simulated: host CPU through {module}, no libedgetpu"
        elif self.runtime:
            try:
                info = run_child(RUNTIME_MODULE, {"library": self.runtime}, timeout_s=30)
                d["runtime_version"] = info.get("version")
                d["runtime_devices"] = info.get("devices")
            except DeviceError as exc:
                d["runtime_version"] = f"unknown ({exc.kind}: {exc.reason})"
        return d

    def _kind(self) -> str:
        if self.spec and self.spec.kind:
            return self.spec.kind
        if self.simulated:
            return "simulated"
        chosen = etr.select(self._devices(), self.spec) if self.spec else None
        return chosen.kind if chosen else "any"

    # --- compile ---------------------------------------------------------------------------

    def prepare(self, model_path: Path, workdir: Path) -> tuple[Path, Delegation | None]:
        if self.compiler is None or self.compiler_version is None:
            raise DeviceError(self._compiler_problem() or "edgetpu_compiler unusable", kind="missing-tool")
        compiled, report = etc.compile_model(self.compiler, Path(model_path), Path(workdir),
                                             self.compile_timeout_s)
        delegation = etc.to_delegation(report)
        self._compiled[str(compiled)] = (Path(model_path), delegation)
        return compiled, delegation

    # --- run -------------------------------------------------------------------------------

    def _request(self, **kw) -> dict:
        req = super()._request(**kw)
        if not self.simulated:
            options = {"device": self.spec.option} if self.spec and self.spec.option else {}
            req["delegate"] = {"library": self.runtime or etr.library_name(), "options": options}
        return req

    def _ready(self) -> None:
        if self.spec_error:
            raise DeviceError(self.spec_error, kind="failed")

    def _host_model(self, path: Path) -> Path:
        """What actually executes: on hardware the compiled model, in simulation its source."""
        if self.simulated and str(path) in self._compiled:
            return self._compiled[str(path)][0]
        return Path(path)

    def _mapping(self, path: Path) -> Delegation | None:
        entry = self._compiled.get(str(path))
        return entry[1] if entry else None

    def _translate(self, exc: DeviceError) -> DeviceError:
        if "edgetpu-custom-op" in exc.reason and self.simulated:
            return DeviceError("a compiled Edge TPU model (edgetpu-custom-op) cannot run in the "
                               "simulator without its source model; pass it through prepare() first",
                               kind="unsupported")
        library = self.runtime or etr.library_name()
        detail = " ".join(exc.reason.split())  # the worker's message may span lines
        if "Failed to load delegate" in exc.reason:  # the library loaded, the device did not open
            return DeviceError(f"could not open the Edge TPU (device {self.spec}) through {library}: "
                               f"is it plugged in and not used by another process? ({detail})",
                               kind="offline")
        if exc.reason.startswith("OSError") and Path(library).name in exc.reason:
            return DeviceError(f"could not load the Edge TPU runtime {library}: {detail}; "
                               f"{etr.runtime_install_hint()}", kind="missing-tool")
        return exc

    def _label(self) -> dict:
        if self.simulated:
            return {"simulated": True, "executed_on": "host CPU (LiteRT, no delegate): SIMULATED Edge TPU"}
        return {"simulated": False, "executed_on": f"Edge TPU {self.spec} via {self.runtime}"}

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        self._ready()
        try:
            res = super().run(self._host_model(model_path), inputs, timeout_s)
        except DeviceError as exc:
            raise self._translate(exc) from None
        res.delegation = self._mapping(model_path)
        res.simulated = self.simulated
        res.details.update(self._label())
        return res

    def benchmark(self, models: dict[str, Path], sample, settings: BenchSettings) -> BenchResult:
        self._ready()
        host = {label: self._host_model(p) for label, p in models.items()}
        try:
            res = super().benchmark(host, sample, settings)
        except DeviceError as exc:
            raise self._translate(exc) from None
        res.delegation = {label: mapping for label, p in models.items()
                          if (mapping := self._mapping(p)) is not None}
        res.simulated = self.simulated
        res.details.update(self._label())
        res.details["first_invoke"] = ("host CPU first invoke (simulated: no model load into a TPU)"
                                       if self.simulated else
                                       "includes loading the model's parameters into the Edge TPU")
        return res

    def _delegation(self, ops: dict) -> Delegation | None:
        return None  # the compiler's mapping (prepare) is the authority, see run()/benchmark()

