"""The ``arm-cpu-*`` devices: any .tflite on LiteRT's aarch64 build (XNNPACK's ARM int8
kernels: the NEON, dot-product and I8MM code phones run), under QEMU user-mode emulation on
this machine. One device per feature level (``levels``), each its own column; ``arm-cpu``
on the command line means every default level.

Results are **emulated**: numerics only. The role ``Role.EMULATED`` gives them the numeric
claims (agreement with the reference kernels and float, the cross-kernel comparison) and no
latency claim: an emulator's timing says nothing of a phone's. The same file's outputs on two
levels that disagree are "emulator or kernel, unconfirmed" (``consistency``), never a phone's
fault.

Set up once with ``qat-harness setup arm-cpu`` (``root``); ``probe()`` says what is missing:
QEMU, the root (and, when building it is impossible, that this is not a Debian system), or the
permission to make a mount namespace (``namespace``).
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qat_harness.core.child import child_environment, run_child
from qat_harness.core.errors import UsageError
from qat_harness.devices.arm import launch
from qat_harness.devices.arm.levels import LEVELS, device_name
from qat_harness.devices.arm.root import ArmRoot, debian_tools_problem, default_root
from qat_harness.devices.base import (
    Availability,
    BenchResult,
    BenchSettings,
    Device,
    DeviceError,
    ModelInputs,
    Role,
    RunResult,
    save_inputs,
)

LAUNCHER = "qat_harness.devices.arm.launch"
QEMU_BINARIES = ("qemu-aarch64-static", "qemu-aarch64")
QEMU_HINT = "apt-get install qemu-user-static"
CHECK_TIMEOUT_S = 30.0
#: what every result of these devices says about itself
EMULATED = "emulated under QEMU user mode: numerics only, no latency"


def find_qemu() -> str | None:
    return next((path for path in map(shutil.which, QEMU_BINARIES) if path), None)


def qemu_version(qemu: str) -> str:
    try:
        first = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return first.split("\n", 1)[0].removeprefix("qemu-aarch64 version ").strip() or "unknown"


class ArmCpuDevice(Device):
    """One feature level; the subclasses below fix which."""
    level: str = ""
    role = Role.EMULATED
    kernel = "xnnpack-arm"
    # the emulator computes on this machine's CPU: runs are given the host one at a time
    runs_on_host = True

    def __init__(self, num_threads: int = 2):
        self.num_threads = num_threads

    # --- availability ------------------------------------------------------------------------
    def _problem(self) -> str | None:
        if platform.system() != "Linux":
            return f"QEMU user-mode emulation runs on Linux; this is {platform.system()}"
        qemu = find_qemu()
        if qemu is None:
            return f"no QEMU user-mode emulator for aarch64 ({' or '.join(QEMU_BINARIES)}): {QEMU_HINT}"
        try:
            root_problem = ArmRoot(default_root()).problem()
        except UsageError as exc:
            return str(exc)
        if root_problem:
            tools = debian_tools_problem()
            return f"{root_problem}; but {tools}" if tools else root_problem
        return self._namespace_problem()

    def _namespace_problem(self) -> str | None:
        with tempfile.TemporaryDirectory(prefix="qat-arm-check-") as tmp:
            try:
                done = subprocess.run([sys.executable, "-P", "-m", LAUNCHER, "--check", self.level],
                                      capture_output=True, text=True, cwd=tmp, timeout=CHECK_TIMEOUT_S,
                                      env=child_environment())
            except subprocess.TimeoutExpired:
                return f"entering a mount namespace took over {CHECK_TIMEOUT_S:.0f} s"
        if done.returncode != 0:
            return (done.stdout.strip() or done.stderr.strip().splitlines()[-1:] or ["namespace check failed"])[0]
        return None

    def probe(self) -> Availability:
        try:
            problem = self._problem()
        except Exception as exc:  # noqa: BLE001 - probe never raises
            return Availability(False, f"probe failed: {type(exc).__name__}: {exc}")
        if problem:
            return Availability(False, problem)
        qemu = find_qemu() or ""
        lv = LEVELS[self.level]
        return Availability(True, f"LiteRT aarch64 under QEMU {qemu_version(qemu)} as a {lv.core} "
                                  f"(QEMU_CPU={lv.qemu_cpu}); {EMULATED}",
                            {"qemu": qemu, "root": str(default_root()), "level": self.level})

    def describe(self) -> dict[str, Any]:
        lv = LEVELS[self.level]
        described = {**super().describe(), "emulated": True, "results": EMULATED, "level": self.level,
                     "qemu_cpu": lv.qemu_cpu, "core": lv.core, "features": lv.features.split(),
                     "runtime": "ai-edge-litert (aarch64)", "num_threads": self.num_threads}
        qemu = find_qemu()
        if qemu:
            described["qemu"] = qemu_version(qemu)
        if not lv.faithful:
            described["warning"] = "QEMU 7.2 is known to compute this level's SME kernels wrong"
        return described

    # --- running ----------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        qemu = find_qemu()
        if qemu is None:
            raise DeviceError(f"no QEMU user-mode emulator for aarch64: {QEMU_HINT}", kind="missing-tool")
        try:
            root = ArmRoot(default_root())
            problem = root.problem()
        except UsageError as exc:
            raise DeviceError(str(exc), kind="missing-tool") from None
        if problem:
            raise DeviceError(problem, kind="missing-tool")
        return {launch.ROOT_ENV: str(root.path), launch.LEVEL_ENV: self.level, launch.QEMU_ENV: qemu}

    def run(self, model_path: Path, inputs: ModelInputs, timeout_s: float = 300.0) -> RunResult:
        env = self._environment()
        with tempfile.TemporaryDirectory(prefix="qat-arm-") as tmp:
            in_path, out_path = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            save_inputs(in_path, inputs)
            run_child(LAUNCHER, {"mode": "run", "resolver": "auto", "num_threads": self.num_threads,
                                 "model": str(Path(model_path).resolve()), "inputs": str(in_path),
                                 "outputs": str(out_path)}, timeout_s, env=env)
            with np.load(out_path, allow_pickle=False) as npz:
                outputs = [npz[f"out_{k}"] for k in range(len(npz.files))]
        return RunResult(outputs=outputs[0], extra_outputs=outputs[1:],
                         details={"emulated": True, "level": self.level})

    def benchmark(self, models: dict[str, Path], sample: np.ndarray | dict[str, np.ndarray],
                  settings: BenchSettings) -> BenchResult:
        raise DeviceError(f"{self.name} is {EMULATED}", kind="unsupported")


class ArmNeonDevice(ArmCpuDevice):
    level = "neon"
    name = device_name(level)
    description = f"LiteRT aarch64, NEON kernels ({LEVELS[level].core}), emulated by QEMU: numerics only"


class ArmDotprodDevice(ArmCpuDevice):
    level = "dotprod"
    name = device_name(level)
    description = f"LiteRT aarch64, dot-product (SDOT) kernels ({LEVELS[level].core}), emulated: numerics only"


class ArmI8mmDevice(ArmCpuDevice):
    level = "i8mm"
    name = device_name(level)
    description = "LiteRT aarch64, I8MM kernels (QEMU max, SME off), emulated: numerics only"


class ArmSmeDevice(ArmCpuDevice):
    level = "sme"
    name = device_name(level)
    description = "LiteRT aarch64 with SME on (QEMU 7.2 computes it wrong: shows the level check), emulated"


#: each feature level's device class
LEVEL_DEVICES: dict[str, type[ArmCpuDevice]] = {cls.level: cls for cls in (ArmNeonDevice, ArmDotprodDevice,
                                                                            ArmI8mmDevice, ArmSmeDevice)}
