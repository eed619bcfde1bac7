"""``layers``: the layer support matrix (probe models through every stage on the devices)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qat_harness.commands.device_options import add_device_options, check_devices, device_option_values
from qat_harness.commands.errors import EXIT_GATE, EXIT_OK, error_line
from qat_harness.commands.folders import default_out
from qat_harness.core.errors import UsageError
from qat_harness.option_definitions import at_least, csv_list, recipe_names

#: what builds the matrix: ``layers.matrix.run_layers`` or a test's own
LayerEngine = Callable[..., Any]


def add_parser(sub) -> None:
    lay = sub.add_parser("layers", help="layer support matrix")
    lay.add_argument("--layers", type=csv_list, default=None, help="probe names (default: all)")
    lay.add_argument("--devices", type=csv_list, default=["cpu"])
    lay.add_argument("--probe", action="append", default=[], metavar="MODULE:FUNCTION",
                     help="a probe of your own: a function returning a tf_keras model")
    lay.add_argument("--out", type=Path, default=None)
    lay.add_argument("--list", action="store_true", help="list the built-in probes and exit")
    lay.add_argument("--probe-timeout", type=at_least(1.0, float), default=None, metavar="SECONDS",
                     help="limit on one probe's QAT and conversion stages (default: 300)")
    lay.add_argument("--recipes", default=None, metavar="NAMES",
                     help="also apply these quantization recipes to each probe's float model and judge "
                          "them per layer (weights in the recipe's width, runs, agreement with float and "
                          "across kernels): int4-weight, int4-dynamic, int4-blockwise, 16x8, fp16-weights, "
                          "int8-dynamic, 'default' or 'all' (default: none)")
    add_device_options(lay)


def cmd_layers(args: argparse.Namespace, engine: LayerEngine | None = None) -> int:
    """Build the matrix with ``engine`` (default: ``layers.matrix.run_layers``); exit 1 when a
    cell is ERROR (a crash, a timeout or a broken probe)."""
    try:
        from qat_harness.layers.matrix import run_layers
        from qat_harness.layers.stages import error_cells
        from qat_harness.layers.tasks import available_probes
    except ImportError as exc:
        raise UsageError(f"the layer matrix is not available in this build: {exc}") from None
    if args.list:
        print("\n".join(available_probes()))
        return EXIT_OK
    recipes = recipe_names(args.recipes)
    out = args.out or default_out("layers")
    from qat_harness.writers import console

    if args.probe:
        error_line(f"qat-harness: warning: --probe imports and runs your code ({', '.join(args.probe)}) "
                   f"from {Path.cwd()}, in a child process with your permissions")
    optional: dict[str, Any] = {"timeout_s": args.probe_timeout} if args.probe_timeout else {}
    if recipes:
        optional["recipes"] = recipes
    build = engine or run_layers
    devices = check_devices(args.devices, device_option_values(args))
    with devices:  # run_layers closes them too; this covers a refusal before it opens them
        result = build(args.layers, args.devices, out, user_probes=args.probe, progress=console.progress(),
                       device_options=devices.options, opened=devices, **optional)
    console.say(f"matrix: {out / 'layers.json'} and {out / 'layers.md'}")
    errors = error_cells(result)
    if errors:
        error_line(f"qat-harness: {len(errors)} cell(s) are ERROR (crash, timeout or broken probe), "
                   f"e.g. {errors[0]}; see {out / 'layers.md'}")
        return EXIT_GATE
    return EXIT_OK
