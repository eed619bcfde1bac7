"""Finding the phone and reading what it is.

The adb server comes from ``ADB_SERVER_SOCKET`` (``tcp:host:port``, as device farms expose it)
or ``ANDROID_ADB_SERVER_ADDRESS`` / ``ANDROID_ADB_SERVER_PORT``; the device from the ``serial``
option or ``ANDROID_SERIAL``; with several devices attached and none chosen, an error lists
them. What the phone is comes from ``getprop`` (model, SoC, Android version, ABIs) and
``/proc/cpuinfo`` (the CPU features that decide whether int8 beats float on its cores).

A device whose property ``qat_harness.simulator`` is ``1`` is the test suite's simulated phone.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from qat_harness.core.errors import DeviceError
from qat_harness.devices.android.adb import AdbConfigError, AdbTransport, DeviceEntry, ServerAddress, server_address

BENCHMARK_MODEL_ENV = "QAT_BENCHMARK_MODEL"
BENCHMARK_MODEL_DOCS = ("https://ai.google.dev/edge/litert/models/measurement (\"Native benchmark "
                        "binary\": the nightly android_aarch64 / android_arm benchmark_model builds, or "
                        "`bazel build -c opt --config=android_arm64 "
                        "//tensorflow/lite/tools/benchmark:benchmark_model`)")
SIMULATOR_PROPERTY = "qat_harness.simulator"

# ELF e_machine of a binary -> the Android ABIs that can execute it
_ELF_MACHINES = {183: ("aarch64", {"arm64-v8a"}), 40: ("32-bit ARM", {"armeabi-v7a", "armeabi"}),
                 62: ("x86-64", {"x86_64"}), 3: ("x86", {"x86"}), 243: ("RISC-V", {"riscv64"})}
# Arm CPU features that give XNNPACK fast int8 kernels (SDOT/UDOT and SMMLA)
INT8_CPU_FEATURES = {"asimddp": "int8 dot product (SDOT/UDOT)", "i8mm": "int8 matrix multiply (SMMLA)"}


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """What the phone's /proc/cpuinfo says about its cores."""
    features: tuple[str, ...]          # union of every core's feature flags
    cores: int
    core_parts: tuple[str, ...]        # distinct "CPU part" ids (e.g. 0xd05 = Cortex-A55)
    hardware: str | None = None

    @property
    def int8_features(self) -> dict[str, bool]:
        return {flag: flag in self.features for flag in INT8_CPU_FEATURES}


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop``'s ``[name]: [value]`` lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M)}


def parse_cpuinfo(text: str) -> CpuInfo | None:
    """aarch64 / arm ``/proc/cpuinfo``: ``Features`` lines per core, ``CPU part``, ``Hardware``."""
    features: set[str] = set()
    parts: list[str] = []
    cores, hardware = 0, None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            cores += 1
        elif key in ("features", "flags"):
            features.update(value.split())
        elif key == "cpu part" and value not in parts:
            parts.append(value)
        elif key == "hardware":
            hardware = value
    if not features and not cores:
        return None
    return CpuInfo(tuple(sorted(features)), cores, tuple(parts), hardware)


def binary_problem(path_text: str | None, props: dict[str, str]) -> tuple[str, str] | None:
    """(kind, reason) when the local benchmark_model cannot run on a phone with these
    properties: not configured, missing, not ELF, or built for another ABI."""
    if not path_text:
        return ("missing-tool", f"no benchmark_model configured: set {BENCHMARK_MODEL_ENV} (or the "
                f"benchmark_model option) to TFLite's Android benchmark_model for the phone's ABI; "
                f"the harness never downloads it. Get it from {BENCHMARK_MODEL_DOCS}")
    path = Path(path_text)
    if not path.is_file():
        return ("missing-tool", f"benchmark_model {path} (from {BENCHMARK_MODEL_ENV} or the option) "
                f"does not exist; get it from {BENCHMARK_MODEL_DOCS}")
    try:
        with path.open("rb") as f:
            head = f.read(20)
    except OSError as exc:
        return ("missing-tool", f"benchmark_model {path} is unreadable: {exc.strerror or exc}")
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return ("missing-tool", f"benchmark_model {path} is not an ELF executable (an Android build is "
                f"needed; {BENCHMARK_MODEL_DOCS})")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    arch, abis = _ELF_MACHINES.get(machine, (f"ELF machine {machine}", set()))
    phone_abis = set(filter(None, props.get("ro.product.cpu.abilist", "").split(","))) | {
        props.get("ro.product.cpu.abi", "")}
    if not abis & phone_abis:
        return ("missing-tool", f"benchmark_model {path} is built for {arch}, the phone runs "
                f"{props.get('ro.product.cpu.abi', '?')}: use the build for that ABI ({BENCHMARK_MODEL_DOCS})")
    return None


class Phone:
    """One Android device behind an adb server: chosen on first use, its facts read once."""

    def __init__(self, serial: str | None, env: dict[str, str]):
        self.requested_serial = serial or env.get("ANDROID_SERIAL") or None
        self.serial_source = "the serial option" if serial else "ANDROID_SERIAL"
        self.address: ServerAddress | None = None
        self.transport: AdbTransport | None = None
        self.config_error: str | None = None
        try:
            self.address = server_address(env)
            self.transport = AdbTransport(self.address)
        except AdbConfigError as exc:
            self.config_error = str(exc)
        self.serial: str | None = None
        self._props: dict[str, str] | None = None
        self._cpu: CpuInfo | None = None
        self._cpu_read = False

    def select(self) -> str:
        """The serial of the device to use, checked to be attached and authorized."""
        if self.serial is not None:
            return self.serial
        if self.config_error:
            raise DeviceError(self.config_error, kind="failed")
        why = self.transport.unreachable_reason()
        if why:
            raise DeviceError(why, kind="offline")
        entries = self.transport.devices()
        where = f"the adb server at {self.address}"
        if self.requested_serial:
            match = [e for e in entries if e.serial == self.requested_serial]
            if not match:
                raise DeviceError(f"device {self.requested_serial} (from {self.serial_source}) is not attached "
                                  f"to {where}; attached: {_listing(entries)}", kind="offline")
            entry = match[0]
        elif not entries:
            raise DeviceError(f"no Android device attached to {where} (`adb devices` lists none): connect "
                              "a phone with USB debugging enabled, or `adb connect HOST:PORT`", kind="offline")
        elif len(entries) > 1:
            raise DeviceError(f"{len(entries)} devices attached to {where}: {_listing(entries)}; choose one "
                              "with ANDROID_SERIAL or the serial option", kind="failed")
        else:
            entry = entries[0]
        _check_state(entry)
        self.serial = entry.serial
        return self.serial

    def properties(self) -> dict[str, str]:
        if self._props is None:
            serial = self.select()  # first: with a configuration error there is no transport
            res = self.transport.shell(serial, "getprop", timeout_s=30)
            self._props = parse_getprop(res.stdout)
        return self._props

    @property
    def simulated(self) -> bool:
        return self._props is not None and self._props.get(SIMULATOR_PROPERTY) == "1"

    def api_level(self) -> int | None:
        try:
            return int(self.properties().get("ro.build.version.sdk", ""))
        except ValueError:
            return None

    def cpu_info(self) -> CpuInfo | None:
        """Best effort: None when /proc/cpuinfo is unreadable or says nothing useful."""
        if not self._cpu_read:
            self._cpu_read = True
            try:
                serial = self.select()
                res = self.transport.shell(serial, "cat /proc/cpuinfo", timeout_s=15)
                self._cpu = parse_cpuinfo(res.stdout) if res.returncode == 0 else None
            except DeviceError:
                self._cpu = None
        return self._cpu

    def nnapi_hal_services(self) -> list[str] | None:
        """NNAPI drivers registered as AIDL services (Android 12+), the only list readable
        without running a model."""
        try:
            serial = self.select()
            res = self.transport.shell(serial, "service list", timeout_s=15)
        except DeviceError:
            return None
        names = re.findall(r"android\.hardware\.neuralnetworks\.IDevice/([^\s:\]]+)", res.stdout)
        return sorted(set(names)) or None

    def summary(self) -> str:
        """One line for a probe: model (serial), Android version, ABI."""
        p = self.properties()
        return (f"{p.get('ro.product.model', '?')} ({self.serial}), Android "
                f"{p.get('ro.build.version.release', '?')} API {self.api_level()}, {p.get('ro.product.cpu.abi', '?')}")

    def facts(self) -> dict:
        """What the report says about the phone. Raises DeviceError when it cannot be reached."""
        props = self.properties()
        cpu = self.cpu_info()
        return {
            "serial": self.serial, "model": props.get("ro.product.model"),
            "manufacturer": props.get("ro.product.manufacturer"),
            "soc_model": props.get("ro.soc.model"), "soc_manufacturer": props.get("ro.soc.manufacturer"),
            "board_platform": props.get("ro.board.platform"), "hardware": props.get("ro.hardware"),
            "android_release": props.get("ro.build.version.release"), "api_level": self.api_level(),
            "abi": props.get("ro.product.cpu.abi"), "abilist": props.get("ro.product.cpu.abilist"),
            "cpu_cores": cpu.cores if cpu else None,
            "cpu_parts": list(cpu.core_parts) if cpu else None,
            "cpu_features": list(cpu.features) if cpu else None,
            "int8_cpu_features": cpu.int8_features if cpu else None,
        }


def int8_cpu_warnings(cpu: CpuInfo | None) -> list[str]:
    """What the phone's CPU features mean for int8 speed on its cores."""
    if cpu is None:
        return ["CPU features unknown (/proc/cpuinfo unreadable): cannot tell whether the cores have "
                "int8 dot-product instructions"]
    if not cpu.features:
        return []
    missing = [f"{flag} ({what})" for flag, what in INT8_CPU_FEATURES.items() if flag not in cpu.features]
    if "asimddp" not in cpu.features:
        return [f"the CPU lacks {', '.join(missing)}: XNNPACK's int8 kernels fall back to widening "
                "multiplies, so int8 may be little or no faster than float on these cores"]
    return []


def _listing(entries: list[DeviceEntry]) -> str:
    return ", ".join(f"{e.serial} ({e.state})" for e in entries) or "none"


def _check_state(entry: DeviceEntry) -> None:
    if entry.state == "device":
        return
    if entry.state == "unauthorized":
        raise DeviceError(f"device {entry.serial} is unauthorized: unlock it and accept the \"Allow USB "
                          "debugging\" prompt (this computer's adb key)", kind="offline")
    if entry.state == "offline":
        raise DeviceError(f"device {entry.serial} is offline: reconnect it (`adb reconnect`) or restart its "
                          "adb daemon", kind="offline")
    raise DeviceError(f"device {entry.serial} is in state {entry.state!r}, not ready for commands", kind="offline")
