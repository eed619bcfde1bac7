"""``trace``: where int8 parts ways with float on each device, layer by layer (the work is
``qat_harness.trace.command``'s; this opens the devices and gives the exit code)."""
from __future__ import annotations

import argparse

from qat_harness.commands.device_options import add_device_options, check_devices, device_option_values
from qat_harness.commands.errors import EXIT_GATE, EXIT_OK


def add_parser(sub) -> None:
    from qat_harness.trace import command as trace_command

    add_device_options(trace_command.add_parser(sub))


def cmd_trace(args: argparse.Namespace) -> int:
    """Exits 1 when the trace names a culprit (a layer where int8 parts ways)."""
    from qat_harness.trace import command as trace_command
    from qat_harness.writers import console

    with check_devices(args.devices, device_option_values(args)) as devices:
        return EXIT_GATE if trace_command.cmd_trace(args, devices, progress=console.progress()) else EXIT_OK
