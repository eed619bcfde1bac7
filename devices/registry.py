"""Which devices exist: every class registered under the entry-point group
``qat_harness.devices`` (the built-in devices register there too, in this package's
``pyproject.toml``), plus any registered in-process with ``register``.

A third-party package adds a device without touching this repository::

    # pyproject.toml of the package
    [project.entry-points."qat_harness.devices"]
    mydsp = "my_pkg.device:MyDspDevice"

A device whose module cannot be imported is listed as unavailable with the import error,
never dropped as "unknown". ``create`` validates options against what the device declares.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import Any

from qat_harness.core.errors import UsageError
from qat_harness.devices.base import Availability, Device, DeviceOption, Role

GROUP = "qat_harness.devices"
#: options every device takes (the interpreter threads of the harness run)
COMMON_OPTIONS = ("num_threads",)


@dataclasses.dataclass
class Entry:
    """A discovered device: its class, or why it could not be loaded."""
    name: str
    source: str                      # 'module:Class' of the entry point, or 'registered'
    device_class: type[Device] | None = None
    load_error: str | None = None

    @property
    def description(self) -> str:
        return self.device_class.description if self.device_class else f"(cannot load {self.source})"


_registered: dict[str, type[Device]] = {}
_entries: dict[str, Entry] | None = None


def register(device_class: type[Device]) -> None:
    """Add a device class in this process (tests, notebooks); packages use the entry point."""
    _check_class(device_class, "registered")
    _registered[device_class.name] = device_class
    if _entries is not None:
        _entries[device_class.name] = Entry(device_class.name, "registered", device_class)


def unregister(name: str) -> None:
    _registered.pop(name, None)
    if _entries is not None:
        _entries.pop(name, None)


def refresh() -> None:
    """Forget what was discovered (after installing a package in the same process)."""
    global _entries
    _entries = None


def _check_class(cls, source: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        raise TypeError(f"{source} is not a qat_harness Device subclass")
    if not cls.name or not isinstance(cls.role, Role):
        raise TypeError(f"{source}: a device class must set name and role")


def entries() -> dict[str, Entry]:
    global _entries
    if _entries is None:
        found: dict[str, Entry] = {}
        for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in found:
                continue  # the same distribution seen twice on sys.path
            try:
                cls = ep.load()
                _check_class(cls, ep.value)
                if cls.name != ep.name:
                    raise TypeError(f"{ep.value} is named {cls.name!r}, registered as {ep.name!r}")
                found[ep.name] = Entry(ep.name, ep.value, cls)
            except Exception as exc:  # noqa: BLE001 - a broken plug-in is listed, not fatal
                found[ep.name] = Entry(ep.name, ep.value, load_error=f"{type(exc).__name__}: {exc}")
        for name, cls in _registered.items():
            found[name] = Entry(name, "registered", cls)
        _entries = found
    return _entries


def names() -> list[str]:
    return list(entries())


def device_class(name: str) -> type[Device]:
    entry = entries().get(name)
    if entry is None:
        raise UsageError(f"unknown device '{name}'; known devices: {', '.join(names())}")
    if entry.device_class is None:
        raise UsageError(f"device '{name}' cannot be loaded ({entry.source}): {entry.load_error}")
    return entry.device_class


def options_of(name: str) -> tuple[DeviceOption, ...]:
    return device_class(name).options


def create(name: str, num_threads: int = 2, **options: Any) -> Device:
    """Build a device with the options it declares; any other option is a UsageError."""
    cls = device_class(name)
    declared = {o.name: o for o in cls.options}
    unknown = sorted(set(options) - set(declared))
    if unknown:
        takes = ", ".join(declared) or "none"
        raise UsageError(f"device '{name}' has no option {', '.join(unknown)} (its options: {takes})")
    values = {o.name: o.default for o in cls.options}
    values.update({k: v for k, v in options.items() if v is not None})
    return cls(num_threads=num_threads, **values)


def probe(name: str, **options: Any) -> Availability:
    """Availability without raising: unknown or unloadable devices are unavailable."""
    entry = entries().get(name)
    if entry is None:
        return Availability(False, f"unknown device; known: {', '.join(names())}")
    if entry.device_class is None:
        return Availability(False, f"cannot load {entry.source}: {entry.load_error}")
    try:
        return create(name, **options).probe()
    except UsageError as exc:
        return Availability(False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken probe is itself a finding
        return Availability(False, f"probe failed: {type(exc).__name__}: {exc}")


def with_role(role: Role) -> list[str]:
    return [n for n, e in entries().items() if e.device_class is not None and e.device_class.role is role]


def oracle() -> Device:
    """The numeric oracle (LiteRT's reference kernels)."""
    candidates = with_role(Role.ORACLE)
    if not candidates:
        raise UsageError("no oracle device is registered (the built-in cpu-ref is missing)")
    return create("cpu-ref" if "cpu-ref" in candidates else candidates[0], num_threads=1)


def split_options(names_: list[str], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Given option values (by option name) -> the options each named device takes. An option
    that none of the devices takes is a UsageError naming the devices that would."""
    per_device: dict[str, dict[str, Any]] = {n: {} for n in names_}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return per_device
    for key, value in given.items():
        if value is None:
            continue
        takers = [n for n in names_ if any(o.name == key for o in options_of(n))]
        if not takers:
            elsewhere = [n for n, e in entries().items() if e.device_class is not None
                         and any(o.name == key for o in e.device_class.options)]
            hint = f" (it is an option of {', '.join(elsewhere)})" if elsewhere else ""
            raise UsageError(f"option '{key}' applies to none of the devices {', '.join(names_)}{hint}")
        for n in takers:
            per_device[n][key] = value
    return per_device
