"""``run``: a conformance run from the command line (``--resume`` finishes an interrupted one),
its summary on the console and its exit code."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qat_harness.commands.device_options import add_device_options, check_devices, device_option_values
from qat_harness.commands.errors import EXIT_GATE, EXIT_OK, EXIT_USAGE, error_line
from qat_harness.commands.folders import default_out
from qat_harness.core.errors import UsageError
from qat_harness.option_definitions import add_run_options, check_weights, run_options

if TYPE_CHECKING:
    from qat_harness.devices.device_set import DeviceSet
    from qat_harness.options import RunOptions
    from qat_harness.record.report import Report
    from qat_harness.record.tree import RunReport

#: flags that mean something with --resume (the rest are the resumed run's own)
RESUME_FLAGS = ("command", "resume", "fail_on")
#: the verdicts that fail the run, per --fail-on
FAILING = {"never": set(), "error": {"ERROR"}, "fail": {"ERROR", "FAIL"}, "warn": {"ERROR", "FAIL", "WARN"}}


def add_run_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The arguments of a run (``run`` and ``nightly``): the shared run options, where the
    run writes, when it fails, and the devices' own options."""
    add_run_options(parser.add_argument)
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--fail-on", choices=list(FAILING), default="error",
                        help="exit 1 when any verdict is at least this bad (default: error)")
    add_device_options(parser)


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="conformance run: models x devices -> report.json / report.md")
    add_run_arguments(r, "output folder (default: reports/run-<time>)")
    r.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="finish an interrupted run: keep what DIR/report.json recorded and redo "
                        "only what is missing (same options as that run)")


def cmd_run(args: argparse.Namespace, run: Callable[..., Report] | None = None) -> int:
    return execute_run(args, run=run)[0]


def execute_run(args: argparse.Namespace, out: Path | None = None,
                run: Callable[..., Report] | None = None) -> tuple[int, Report]:
    """A run from the command line: the exit code and the run's report. ``run``: what runs
    it (``pipeline.run``; a test gives its own, e.g. with a ``model_run`` of its own)."""
    from qat_harness import pipeline
    from qat_harness.writers import console

    resume = None
    if getattr(args, "resume", None) is not None:
        devices, opts, resume = resume_options(args)
    else:
        devices, opts = command_line_options(args, out or args.out or default_out("run"))
    started = time.perf_counter()
    report = (run or pipeline.run)(opts, progress=console.progress(), devices=devices, resume=resume)
    elapsed = time.perf_counter() - started
    print_summary(report.run)
    console.say(f"report: {report.json_path}, {report.md_path} and {report.html_path.name} ({elapsed:.1f} s)")
    if report.junit_path is not None and report.junit_path.exists():
        console.say(f"JUnit XML: {report.junit_path}")
    for err in report.usage_errors:
        error_line(f"qat-harness: error: {err}")
    if report.usage_errors:
        return EXIT_USAGE, report
    return gate(report, args.fail_on), report


def command_line_options(args: argparse.Namespace, out: Path) -> tuple[DeviceSet, RunOptions]:
    """The opened devices and the run's options from the parsed command line (``run`` and
    ``nightly`` alike). Every value is checked before a device is opened."""
    opts = run_options(lambda key: getattr(args, key), out, device_options={})
    devices = check_devices(opts.devices, device_option_values(args), opts.num_threads)
    return devices, dataclasses.replace(opts, device_options=devices.options)


def resume_options(args: argparse.Namespace) -> tuple[DeviceSet, RunOptions, RunReport]:
    """The devices, options and recorded report of the run in ``args.resume``. Options are
    the recorded run's: giving others with --resume is an error, not silently ignored."""
    from qat_harness.record.tree import RunStatus
    from qat_harness.sources import parse_models

    folder = args.resume
    defaults = _run_defaults()
    given = [k for k, v in vars(args).items() if k not in RESUME_FLAGS and v != defaults.get(k)]
    if given:
        flags = ", ".join("--" + k.removeprefix("device_option.").replace("_", "-") for k in given)
        raise UsageError(f"--resume reuses the options of the run in {folder}; drop {flags}")
    recorded = _read_report(folder)
    if recorded.status is RunStatus.COMPLETE:
        raise UsageError(f"the run in {folder} is complete: nothing to resume")
    opts = dataclasses.replace(recorded.options, out=Path(folder))
    check_weights(parse_models(opts.models, opts.float_model), opts.weights)
    flat: dict[str, Any] = {}
    for options in opts.device_options.values():
        flat.update(options)
    devices = check_devices(opts.devices, flat, opts.num_threads)
    return devices, opts, recorded


def _run_defaults() -> dict[str, Any]:
    parser = argparse.ArgumentParser(add_help=False)
    add_run_arguments(parser, "")
    return vars(parser.parse_args([]))


def _read_report(folder: Path) -> RunReport:
    """The report of the run to resume in ``folder``, read through the report codec."""
    from qat_harness.record import codec

    if not (Path(folder) / codec.REPORT_FILE).exists():
        raise UsageError(f"no report to resume: {Path(folder) / codec.REPORT_FILE} does not exist")
    return codec.load(Path(folder) / codec.REPORT_FILE)


def gate(report: Report, fail_on: str) -> int:
    if any(c.verdict.value in FAILING[fail_on] for c in report.claims):
        return EXIT_GATE
    return EXIT_OK


def print_summary(run: RunReport) -> None:
    """The summary table of a run (``record.tree.RunReport``) on stdout."""
    from qat_harness.writers.console import summary

    print(summary(run))
    sys.stdout.flush()  # the table (stdout) before the report path (stderr)
