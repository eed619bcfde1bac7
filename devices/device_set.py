"""The devices of one run, opened once (``DeviceSet``).

Every command that runs models (``run``, ``nightly``, ``layers``, ``trace``) and the pytest
plugin asks for its devices here: each requested device is created once with the options it
declares, probed, and the same object then runs everything; the numeric oracle (LiteRT's
reference kernels) is the set's own when it was requested, or made once when first asked for;
and closing the set closes every device it opened, the oracle included."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

from qat_harness.core.errors import UsageError
from qat_harness.devices import registry
from qat_harness.devices.base import Availability, Device, Role


class DeviceSet(Mapping[str, Device]):
    """A read-only mapping of the usable devices (name -> Device), in the order asked for."""

    def __init__(self, devices: dict[str, Device], availability: dict[str, Availability],
                 options: dict[str, dict[str, Any]]):
        self._devices = devices
        #: every requested device's probe, including those that are not usable
        self.availability = availability
        #: the options each requested device was created with
        self.options = options
        self._oracle: Device | None = None
        self._oracle_problem: str | None = None

    @classmethod
    def open(cls, names: list[str], given_options: dict[str, Any] | None = None, num_threads: int = 2,
             *, require_available: bool = True,
             per_device_options: dict[str, dict[str, Any]] | None = None) -> "DeviceSet":
        """Create and probe every named device. ``given_options`` are option values by option
        name (as the command line gives them; each goes to the devices that declare it),
        ``per_device_options`` already split by device. An unknown device, an option no
        named device takes, or (with ``require_available``) an unusable device is a one-line
        UsageError, and nothing stays open. Without ``require_available`` an unusable device
        is left out of the set and its probe kept in ``availability``."""
        for name in names:
            registry.device_class(name)  # unknown or unloadable: a UsageError naming it
        options = (per_device_options if per_device_options is not None
                   else registry.split_options(names, given_options or {}))
        opened: dict[str, Device] = {}
        availability: dict[str, Availability] = {}
        try:
            for name in names:
                device = registry.create(name, num_threads=num_threads, **options.get(name, {}))
                availability[name] = device.probe()
                if availability[name].available:
                    opened[name] = device
                    continue
                device.close()
                if require_available:
                    raise UsageError(f"device '{name}' was requested but is not available: "
                                     f"{availability[name].reason}")
        except BaseException:
            for device in opened.values():
                device.close()
            raise
        return cls(opened, availability, {n: options.get(n, {}) for n in names})

    # -- the mapping ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(self._devices)

    def __len__(self) -> int:
        return len(self._devices)

    def __getitem__(self, name: str) -> Device:
        return self._devices[name]

    def names(self) -> list[str]:
        return list(self._devices)

    def with_role(self, role: Role) -> dict[str, Device]:
        return {n: d for n, d in self._devices.items() if d.role is role}

    def unavailable(self) -> dict[str, str]:
        """Requested devices left out of the set, with what their probe said."""
        return {n: a.reason for n, a in self.availability.items() if not a.available}

    # -- the numeric oracle --------------------------------------------------------------------
    def oracle(self) -> Device | None:
        """LiteRT's reference kernels: the set's own oracle device when one was requested,
        otherwise one made (and probed) on first use and closed with the set. None, with
        ``oracle_problem`` saying why, when it cannot run here."""
        requested = self.with_role(Role.ORACLE)
        if requested:
            return next(iter(requested.values()))
        if self._oracle is None and self._oracle_problem is None:
            try:
                device = registry.oracle()
            except UsageError as exc:
                self._oracle_problem = str(exc)
                return None
            probe = device.probe()
            if probe.available:
                self._oracle = device
            else:
                device.close()
                self._oracle_problem = f"{device.name} unavailable: {probe.reason}"
        return self._oracle

    @property
    def oracle_problem(self) -> str | None:
        return self._oracle_problem

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        for device in [*self._devices.values(), *([self._oracle] if self._oracle else [])]:
            try:
                device.close()
            except Exception:  # noqa: BLE001 - one device failing to close must not keep others open
                pass
        self._devices = {}
        self._oracle = None

    def __enter__(self) -> "DeviceSet":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
