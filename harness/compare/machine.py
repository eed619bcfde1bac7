"""What measured a night — the machine and the library versions — read from a report's
``environment`` and devices, and what changed between two nights (a new TensorFlow or another phone
explains a jump in a trend better than any statistic)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from qat_harness.record.tree import DeviceDescription, RunReport

# The libraries whose version decides the numbers; the others are listed but not flagged.
DECISIVE_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
                      "tflite-runtime", "openvino")
#: The installed packages a device's own runtime identity (``DeviceRuntime``) speaks for.
RUNTIME_LIBRARIES = ("ai-edge-litert", "tflite-runtime")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class DeviceRuntime:
    """The runtime package a device loaded, as its description says (LiteRT's devices say it):
    the digest of its files tells a new build from the old one even under one version number,
    and names what the device loaded rather than what pip installed."""
    module: str
    version: str | None
    digest: str
    path: Path | None

    @classmethod
    def of(cls, description: DeviceDescription) -> "DeviceRuntime | None":
        facts = description.facts
        module, digest = facts.get("runtime"), facts.get("runtime_digest")
        # both name folders of the kept runtimes: a report's values must be what they say
        if not (isinstance(module, str) and module.isidentifier()
                and isinstance(digest, str) and SHA256_HEX.fullmatch(digest)):
            return None
        version, path = facts.get("runtime_version"), facts.get("runtime_path")
        return cls(module, str(version) if version is not None else None, digest,
                   Path(path) if isinstance(path, str) and path else None)

    def text(self) -> str:
        return f"{self.module} {self.version or '(version unknown)'} (sha256 {self.digest[:12]})"


@dataclasses.dataclass(frozen=True)
class NightEnvironment:
    cpu: str | None = None
    machine: str | None = None
    platform: str | None = None
    python: str | None = None
    harness_version: str | None = None
    num_threads: int | None = None
    libraries: dict[str, str] = dataclasses.field(default_factory=dict)
    devices: dict[str, str] = dataclasses.field(default_factory=dict)   # name -> what it was (e.g. serial)
    roles: dict[str, str] = dataclasses.field(default_factory=dict)     # name -> 'host-cpu', 'accelerator', ...
    runtimes: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> its runtime (DeviceRuntime.text)

    @classmethod
    def from_report(cls, run: RunReport) -> "NightEnvironment":
        env = run.environment
        return cls(cpu=env.cpu.model, machine=env.cpu.machine, platform=env.platform, python=env.python,
                   harness_version=env.harness_version, num_threads=env.num_threads,
                   libraries=dict(env.libraries),
                   devices={name: _device_identity(d) for name, d in run.devices.items()},
                   roles={name: d.role.value for name, d in run.devices.items() if d.role is not None},
                   runtimes={name: r.text() for name, d in run.devices.items()
                             if (r := DeviceRuntime.of(d)) is not None})

    @classmethod
    def from_dict(cls, d: dict) -> "NightEnvironment":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def headline(self) -> str:
        libs = ", ".join(f"{k} {self.libraries[k]}" for k in DECISIVE_LIBRARIES
                         if self.libraries.get(k) not in (None, "absent"))
        return f"{self.cpu or 'unknown CPU'}; {libs or 'library versions unknown'}"


def _device_identity(description: DeviceDescription) -> str:
    """The part of a device's description that tells one phone / TPU from another."""
    keys = ("serial", "model", "device", "soc", "android", "runtime", "resolver", "num_threads")
    return ", ".join(f"{k}={description.facts[k]}" for k in keys if description.facts.get(k) not in (None, ""))


def environment_changes(before: NightEnvironment, after: NightEnvironment) -> list[str]:
    """One line per change that can move the numbers, e.g. 'tensorflow 2.20.0 -> 2.21.0'."""
    changes = []
    for label, a, b in (("CPU", before.cpu, after.cpu), ("platform", before.platform, after.platform),
                        ("python", before.python, after.python),
                        ("qat-harness", before.harness_version, after.harness_version),
                        ("threads", before.num_threads, after.num_threads)):
        if a != b and a is not None and b is not None:
            changes.append(f"{label} {a} -> {b}")
    for lib in sorted(set(before.libraries) | set(after.libraries)):
        a, b = before.libraries.get(lib), after.libraries.get(lib)
        if a != b and a is not None and b is not None:
            changes.append(f"{lib} {a} -> {b}")
    for dev in sorted(set(before.devices) & set(after.devices)):
        if before.devices[dev] != after.devices[dev]:
            changes.append(f"device {dev}: {before.devices[dev]} -> {after.devices[dev]}")
    changes += [line for dev in sorted(set(before.runtimes) & set(after.runtimes))
                if (line := device_runtime_change(before, after, dev))]
    return changes


def runtime_changes(before: NightEnvironment, after: NightEnvironment, device: str) -> list[str]:
    """The changes that can move one device's numbers without the model file or the machine:
    a decisive library's version, the Python, the harness, the device's runtime or identity.
    Where the device names its runtime both nights, that line speaks for the runtime's library
    (``RUNTIME_LIBRARIES``), whose installed version may not be what the device loaded."""
    runtime = device_runtime_change(before, after, device)
    known = device in before.runtimes and device in after.runtimes
    changes = [f"{lib} {before.libraries[lib]} -> {after.libraries[lib]}" for lib in DECISIVE_LIBRARIES
               if before.libraries.get(lib) not in (None, after.libraries.get(lib)) and lib in after.libraries
               and not (known and lib in RUNTIME_LIBRARIES)]
    for label, a, b in (("python", before.python, after.python),
                        ("qat-harness", before.harness_version, after.harness_version),
                        (f"device {device}", before.devices.get(device), after.devices.get(device))):
        if a != b and a is not None and b is not None:
            changes.append(f"{label} {a} -> {b}")
    return changes + ([runtime] if runtime else [])


def device_runtime_change(before: NightEnvironment, after: NightEnvironment, device: str) -> str | None:
    """'device cpu runtime A -> B' when the runtime package the device loaded changed."""
    a, b = before.runtimes.get(device), after.runtimes.get(device)
    return f"device {device} runtime {a} -> {b}" if a is not None and b is not None and a != b else None
