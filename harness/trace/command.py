"""``qat-harness trace --models M --devices D --out DIR`` (M: any model form ``run`` accepts,
prepared the same way): ``add_parser(sub)`` and ``cmd_trace(args, devices)``. The trace as the
rest of the harness calls it is ``service``'s."""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from qat_harness.claims.tolerances import TRACE_DEPARTURE_REL, TRACE_DEPARTURE_STEPS
from qat_harness.devices.base import Device
from qat_harness.trace import service
from qat_harness.trace.results import Thresholds
from qat_harness.trace.service import DEFAULT_EXAMPLES, TRACEABLE, needs_trace

if TYPE_CHECKING:
    pass

__all__ = ["add_parser", "cmd_trace", "needs_trace"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``trace`` sub-command's parser; the caller adds the device options."""
    tr = sub.add_parser("trace", help="per-layer trace: where int8 parts ways with float, and a device "
                                      "with the reference kernels")
    tr.add_argument("--models", type=lambda v: [s.strip() for s in v.split(",") if s.strip()], required=True,
                    help="comma-separated, any form 'run' accepts")
    tr.add_argument("--devices", type=lambda v: [s.strip() for s in v.split(",") if s.strip()], default=["cpu"])
    tr.add_argument("--out", type=Path, default=None)
    tr.add_argument("--input-size", type=int, default=None)
    tr.add_argument("--dataset", default=None)
    tr.add_argument("--variant", choices=[v.value for v in TRACEABLE], default=None,
                    help="the int8 model traced (default: the one a run judges; ptq_int8 isolates "
                         "quantization from QAT fine-tuning)")
    tr.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="inputs traced (default 8)")
    tr.add_argument("--threshold-steps", type=float, default=TRACE_DEPARTURE_STEPS,
                    help="int8 steps a device may differ from the reference kernels "
                         f"(default {TRACE_DEPARTURE_STEPS:g})")
    tr.add_argument("--threshold-rel", type=float, default=TRACE_DEPARTURE_REL,
                    help="relative error int8 vs float that counts as a departure "
                         f"(default {TRACE_DEPARTURE_REL:g})")
    return tr


def cmd_trace(args: argparse.Namespace, devices: Mapping[str, Device], progress: Callable[[str], None] = print) -> int:
    """``devices``: the opened devices (name -> Device), every one available; closed here."""
    from qat_harness.build.artifacts import BuildFailed
    from qat_harness.build.cache import ArtifactCache
    from qat_harness.preparation import DataOptions, prepare
    from qat_harness.record.folder import safe_name
    from qat_harness.sources import parse_models

    out = args.out or Path("reports") / "trace"
    thresholds = Thresholds(threshold_steps=args.threshold_steps, threshold_rel=args.threshold_rel)
    worst = 0
    try:
        for source in parse_models(args.models):
            progress(f"{source.label}: preparing")
            try:
                prepared = prepare(source, DataOptions(dataset=args.dataset), ArtifactCache(),
                                   out / "work" / safe_name(source.label), progress, args.input_size)
            except BuildFailed as exc:  # this model cannot be built: said in one line, the others go on
                progress(f"{source.label}: not traced: {exc}")
                worst = max(worst, 2)
                continue
            result = service.trace_prepared(prepared, devices, out / safe_name(source.label), args.examples,
                                            args.variant, thresholds)
            for line in result.skipped:
                progress(f"{source.label}: skipped: {line}")
            c = result.culprit
            found = f"culprit {c.headline}" if c else ("no culprit" if result.ops else "nothing traced")
            progress(f"{source.label}: {found}"
                     + f" — {result.markdown} ({result.seconds:.1f} s)")
            worst = max(worst, 1 if c else 0)
    finally:
        for dev in devices.values():
            dev.close()
    return worst
