"""The ``qat-harness`` command line.

  qat-harness run      conformance run (default: the CPU and a small model set)
  qat-harness devices  what devices were found, and for the others why not
  qat-harness layers   layer support matrix (probe models through every stage)
  qat-harness claims   the claim ids and what they say
  qat-harness compare  compare two report.json files (e.g. tonight's with last night's)
  qat-harness merge    one report of the pieces of a sharded run (--shard K/N)
  qat-harness sensitivity  per-layer quantization sensitivity; the layers to keep in float, built

Errors the user can fix are one line on stderr and exit code 2; nothing prints a traceback
(an unexpected internal error writes its traceback to a file and says where). Each command is a
module of ``qat_harness.commands``; this one builds the parser and dispatches."""
from __future__ import annotations

import argparse
import sys

from qat_harness.commands import layers, nightly, reports, run, sensitivity, setup, trace
from qat_harness.commands.device_options import device_option_values
from qat_harness.commands.errors import (
    EXIT_DISK_FULL,
    EXIT_GATE,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    guarded,
)
from qat_harness.commands.folders import new_run_folder
from qat_harness.commands.layers import cmd_layers
from qat_harness.commands.listing import add_parsers as add_listing_parsers
from qat_harness.commands.listing import cmd_claims, cmd_devices
from qat_harness.commands.merge import add_parser as add_merge_parser
from qat_harness.commands.merge import cmd_merge
from qat_harness.commands.nightly import cmd_nightly
from qat_harness.commands.reports import cmd_compare, cmd_history
from qat_harness.commands.run import cmd_run
from qat_harness.commands.sensitivity import cmd_sensitivity
from qat_harness.commands.setup import cmd_setup
from qat_harness.commands.trace import cmd_trace
from qat_harness.core.errors import UsageError

__all__ = ["EXIT_DISK_FULL", "EXIT_GATE", "EXIT_INTERNAL", "EXIT_OK", "EXIT_SIGINT", "EXIT_SIGTERM", "EXIT_USAGE",
           "build_parser", "device_option_values", "main", "new_run_folder",
           "cmd_claims", "cmd_compare", "cmd_devices", "cmd_history", "cmd_layers", "cmd_nightly", "cmd_run",
           "cmd_sensitivity", "cmd_setup", "cmd_trace"]


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a UsageError (one line, exit 2), like every other bad input."""

    def error(self, message: str):
        raise UsageError(f"{self.prog.removeprefix('qat-harness').strip() or 'arguments'}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qat-harness", description=(__doc__ or "").split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    run.add_parser(sub)
    add_listing_parsers(sub)
    layers.add_parser(sub)
    nightly.add_parser(sub)
    reports.add_parsers(sub)
    add_merge_parser(sub)
    trace.add_parser(sub)
    setup.add_parser(sub)
    sensitivity.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: _dispatch(argv))


def _dispatch(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["run", *(argv or [])])
    # looked up when called: a test may replace a command here
    command = {"run": cmd_run, "devices": cmd_devices, "claims": cmd_claims, "layers": cmd_layers,
               "compare": cmd_compare, "nightly": cmd_nightly, "history": cmd_history, "merge": cmd_merge,
               "trace": cmd_trace, "setup": cmd_setup,
               "sensitivity": cmd_sensitivity}[args.command]
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
