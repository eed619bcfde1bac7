"""Devices on the command line: one flag per option a discovered device declares, and the
requested devices opened once (``DeviceSet``) before a command starts."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qat_harness.devices.base import DeviceOption
    from qat_harness.devices.device_set import DeviceSet

DEST_PREFIX = "device_option."


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """One flag per option that a discovered device declares (devices sharing an option share
    its flag); ``dest`` is ``device_option.<name>``. Devices that cannot be loaded add none."""
    from qat_harness.devices import registry

    group = parser.add_argument_group("device options (each applies to the devices that declare it)")
    seen: dict[str, list[str]] = {}
    declared: dict[str, DeviceOption] = {}
    for name, entry in registry.entries().items():
        for option in entry.device_class.options if entry.device_class else ():
            seen.setdefault(option.name, []).append(name)
            declared.setdefault(option.name, option)
    for option_name, option in declared.items():
        env = f"; default ${option.env}" if option.env else ""
        group.add_argument(option.cli_flag, dest=DEST_PREFIX + option_name, type=option.type,
                           default=None, metavar=option_name.upper(),
                           help=f"{option.help} ({', '.join(seen[option_name])}{env})")


def device_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The device options given on the command line, by option name."""
    return {k.removeprefix(DEST_PREFIX): v for k, v in vars(args).items()
            if k.startswith(DEST_PREFIX) and v is not None}


def check_devices(names: list[str], given_options: dict[str, Any], num_threads: int = 2) -> DeviceSet:
    """Every requested device must exist and be usable with its options, or the command does
    not start. Returns the opened ``DeviceSet``: the command uses these same objects and closes them."""
    from qat_harness.devices.device_set import DeviceSet

    return DeviceSet.open(names, given_options, num_threads)
