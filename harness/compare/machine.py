"""What measured a night — the machine and the library versions — read from a report's
``environment`` and devices, and what changed between two nights (a new TensorFlow or another phone
explains a jump in a trend better than any statistic)."""
from __future__ import annotations

import dataclasses

from qat_harness.record.tree import DeviceDescription, RunReport

# The libraries whose version decides the numbers; the others are listed but not flagged.
DECISIVE_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
                      "tflite-runtime", "openvino")


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

    @classmethod
    def from_report(cls, run: RunReport) -> "NightEnvironment":
        env = run.environment
        return cls(cpu=env.cpu.model, machine=env.cpu.machine, platform=env.platform, python=env.python,
                   harness_version=env.harness_version, num_threads=env.num_threads,
                   libraries=dict(env.libraries),
                   devices={name: _device_identity(d) for name, d in run.devices.items()},
                   roles={name: d.role.value for name, d in run.devices.items() if d.role is not None})

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
    return changes


def runtime_changes(before: NightEnvironment, after: NightEnvironment, device: str) -> list[str]:
    """The changes that can move one device's numbers without the model file or the machine:
    a decisive library's version, the Python, the harness, the device's runtime or identity."""
    changes = [f"{lib} {before.libraries[lib]} -> {after.libraries[lib]}" for lib in DECISIVE_LIBRARIES
               if before.libraries.get(lib) not in (None, after.libraries.get(lib)) and lib in after.libraries]
    for label, a, b in (("python", before.python, after.python),
                        ("qat-harness", before.harness_version, after.harness_version),
                        (f"device {device}", before.devices.get(device), after.devices.get(device))):
        if a != b and a is not None and b is not None:
            changes.append(f"{label} {a} -> {b}")
    return changes
