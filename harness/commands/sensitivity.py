"""``sensitivity``: per layer, the task metric with only that layer quantized and with every
layer but it quantized; the smallest set of layers to keep in float, built and measured
beside full int8 on the devices (the work is ``qat_harness.sensitivity``'s)."""
from __future__ import annotations

import argparse
from pathlib import Path

from qat_harness.commands.device_options import add_device_options, check_devices, device_option_values
from qat_harness.commands.errors import EXIT_GATE, EXIT_OK, error_line
from qat_harness.commands.folders import default_out
from qat_harness.option_definitions import at_least, csv_list


def add_parser(sub) -> None:
    from qat_harness.sensitivity.plan import DEFAULT_BUDGET_S

    sen = sub.add_parser("sensitivity", help="per-layer quantization sensitivity and the layers to keep in float")
    sen.add_argument("--models", type=csv_list, required=True,
                     help="comma-separated Keras sources: a built-in model, a Keras file or module:function")
    sen.add_argument("--devices", type=csv_list, default=["cpu"])
    sen.add_argument("--out", type=Path, default=None)
    sen.add_argument("--input-size", type=int, default=None)
    sen.add_argument("--dataset", default=None)
    sen.add_argument("--budget", type=at_least(1.0, float), default=DEFAULT_BUDGET_S, metavar="SECONDS",
                     help=f"time for the per-layer measurements (default {DEFAULT_BUDGET_S:g}); the "
                          "layers are measured worst first and the report names the ones it cut")
    add_device_options(sen)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Exit 1 when no set of layers kept in float brings the model within the claims' bounds."""
    from qat_harness.build.artifacts import BuildFailed
    from qat_harness.build.cache import ArtifactCache
    from qat_harness.preparation import DataOptions, prepare
    from qat_harness.record.folder import safe_name
    from qat_harness.sensitivity import report
    from qat_harness.sensitivity.service import SensitivityFailed, analyse
    from qat_harness.sources import parse_models
    from qat_harness.writers import console

    out = args.out or default_out("sensitivity")
    progress = console.progress()
    worst = EXIT_OK
    with check_devices(args.devices, device_option_values(args)) as devices:
        for source in parse_models(args.models):
            folder = out / safe_name(source.label)
            try:
                prepared = prepare(source, DataOptions(dataset=args.dataset), ArtifactCache(), folder / "prepare",
                                   progress, args.input_size)
                result = analyse(prepared, devices, folder, args.budget, progress)
            except (BuildFailed, SensitivityFailed) as exc:
                error_line(f"qat-harness: {source.label}: sensitivity failed: {exc}")
                worst = EXIT_GATE
                continue
            md, _ = report.write(result, folder)
            top = result.layers[0].unit.name if result.layers else "none"
            console.say(f"{source.label}: most sensitive `{top}`; {result.proposal.why}; {md}")
            if result.fixed is not None:
                for cost in result.fixed.devices:
                    console.say(f"  {report.cost_line(result.fixed, cost)}")
            if not result.proposal.reached:
                worst = EXIT_GATE
    return worst
