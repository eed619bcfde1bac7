"""The ``qat-harness`` command line.

  qat-harness run      conformance run (default: the CPU and a small model set)
  qat-harness devices  what devices were found, and for the others why not
  qat-harness layers   layer support matrix (probe models through every stage)
  qat-harness claims   the claim ids and what they say
  qat-harness compare  compare two report.json files (e.g. tonight's with last night's)

Errors the user can fix are one line on stderr and exit code 2; nothing prints a traceback
(an unexpected internal error writes its traceback to a file and says where)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import errno
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from qat_harness.core.child import Terminated, sigterm_as_interrupt
from qat_harness.core.errors import UsageError

if TYPE_CHECKING:
    from qat_harness.devices.base import DeviceOption

DEFAULT_MODELS = ["digits_cnn", "mobilenet_v2"]
DEFAULT_INPUT_SIZES = {"mobilenet_v2": 160}  # the default run must fit in a few minutes on 2 cores
EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERNAL, EXIT_DISK_FULL = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal number, as a shell reports them
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _at_least(minimum, kind=int):
    """An argparse type: a number of ``kind`` no smaller than ``minimum`` (0 is never taken
    to mean 'unset')."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value < minimum:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} >= {minimum}"
    return parse


def _models_list(value: str) -> list[str]:
    models = _csv(value)
    if not models:
        raise argparse.ArgumentTypeError("is empty; give at least one model (e.g. digits_cnn)")
    return models


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_folder(parent: Path, name: str) -> Path:
    """Create ``parent/name`` exclusively, or ``name-2``, ``name-3``, ... when another run
    (started in the same second) already has it: two runs never share a folder."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise UsageError(f"cannot create a new run folder in {parent}: {name}-1..999 all exist")


def _default_out(kind: str) -> Path:
    return new_run_folder(Path("reports"), f"{kind}-{_stamp()}")


def _add_run_arguments(r: argparse.ArgumentParser, out_help: str) -> None:
    r.add_argument("--models", type=_models_list, default=None,
                   help="comma-separated models: registry names, .tflite files (int8.tflite or "
                        "int8.tflite=float.tflite), Keras .h5 / .keras / SavedModel folders, or "
                        f"module:function factories (default: {','.join(DEFAULT_MODELS)})")
    r.add_argument("--float-model", default=None,
                   help="the float .tflite reference of a single .tflite --models entry")
    r.add_argument("--devices", type=_csv, default=["cpu"], help="comma-separated devices (default: cpu)")
    r.add_argument("--out", type=Path, default=None, help=out_help)
    r.add_argument("--threads", type=_at_least(1), default=2, help="interpreter threads (default: 2)")
    r.add_argument("--input-size", type=_at_least(1), default=None,
                   help="input size for the application models")
    r.add_argument("--weights", default=None, help="weights file (.h5) for an application model")
    r.add_argument("--dataset", default=None,
                   help="evaluation data: an image folder (class/xxx.jpg) or an .npz with x (and y)")
    r.add_argument("--labels", default=None,
                   help="class names, one per line (line index = output index), for an image folder")
    r.add_argument("--preprocess", default=None,
                   help="how images become model input: mobilenet [-1,1], unit [0,1], raw 0..255, "
                        "caffe, torch (default: the model's own, or read from its input quantization)")
    r.add_argument("--limit-per-class", type=_at_least(1), default=None,
                   help="images read per class of --dataset")
    r.add_argument("--eval-limit", type=_at_least(1), default=None, help="cap on evaluation examples")
    r.add_argument("--warmup", type=_at_least(0), default=5, help="warm-up runs per model before timing")
    r.add_argument("--min-runs", type=_at_least(1), default=30,
                   help="at least this many timed runs per model")
    r.add_argument("--min-seconds", type=_at_least(0.0, float), default=1.0,
                   help="and at least this long timing")
    r.add_argument("--cache-dir", type=Path, default=None,
                   help="artifact cache (default: $QAT_HARNESS_CACHE or ~/.cache/qat-harness)")
    r.add_argument("--no-cache", action="store_true", help="rebuild artifacts even if cached")
    r.add_argument("--skip-bitwidth", action="store_true",
                   help="skip the C6 probe (4-bit QAT has no TFLite deployment path)")
    r.add_argument("--fail-on", choices=["never", "error", "fail", "warn"], default="error",
                   help="exit 1 when any verdict is at least this bad (default: error)")
    r.add_argument("--recipes", default=None, metavar="NAMES",
                   help="other quantization recipes applied to the float model, judged on every kernel: "
                        "int4-weight, int4-dynamic, int4-blockwise, 16x8, fp16-weights, int8-dynamic, "
                        "'default' (int4-weight,int4-blockwise) or 'all' (default: none)")
    r.add_argument("--no-trace", action="store_true",
                   help="do not trace a model x device whose int8/float agreement is not a PASS")
    r.add_argument("--cross-check", action="store_true",
                   help="also time the files with LiteRT's native benchmark tool and put its medians "
                        "beside the harness's (a difference above 5%% is flagged)")
    r.add_argument("--junit-xml", type=Path, default=None, metavar="FILE",
                   help="also write the verdicts as JUnit XML: one test case per claim x model x device")
    _add_device_options(r)


def _add_device_options(parser: argparse.ArgumentParser) -> None:
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
        group.add_argument(option.cli_flag, dest=f"device_option.{option_name}", type=option.type,
                           default=None, metavar=option_name.upper(),
                           help=f"{option.help} ({', '.join(seen[option_name])}{env})")


def device_option_values(args) -> dict:
    prefix = "device_option."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a UsageError (one line, exit 2), like every other bad input."""

    def error(self, message: str):
        raise UsageError(f"{self.prog.removeprefix('qat-harness').strip() or 'arguments'}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qat-harness", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="conformance run: models x devices -> report.json / report.md")
    _add_run_arguments(r, "output folder (default: reports/run-<time>)")
    r.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="finish an interrupted run: keep what DIR/report.json recorded and redo "
                        "only what is missing (same options as that run)")

    sub.add_parser("devices", help="list devices found and, for the missing ones, why")
    sub.add_parser("claims", help="list the claim ids")

    lay = sub.add_parser("layers", help="layer support matrix")
    lay.add_argument("--layers", type=_csv, default=None, help="probe names (default: all)")
    lay.add_argument("--devices", type=_csv, default=["cpu"])
    lay.add_argument("--probe", action="append", default=[], metavar="MODULE:FUNCTION",
                     help="a probe of your own: a function returning a tf_keras model")
    lay.add_argument("--out", type=Path, default=None)
    lay.add_argument("--list", action="store_true", help="list the built-in probes and exit")
    lay.add_argument("--probe-timeout", type=_at_least(1.0, float), default=None, metavar="SECONDS",
                     help="limit on one probe's QAT and conversion stages (default: 300)")
    lay.add_argument("--recipes", default=None, metavar="NAMES",
                     help="also apply these quantization recipes to each probe's float model and judge "
                          "them per layer (weights in the recipe's width, runs, agreement with float and "
                          "across kernels): int4-weight, int4-dynamic, int4-blockwise, 16x8, fp16-weights, "
                          "int8-dynamic, 'default' or 'all' (default: none)")
    _add_device_options(lay)

    nightly = sub.add_parser("nightly", help="a run recorded in history and compared with the last one")
    _add_run_arguments(nightly, "nightly folder: one sub-folder per run, plus history.sqlite "
                                "(default: reports/nightly)")
    nightly.add_argument("--latency-tolerance", type=_at_least(0.0, float), default=0.10,
                         help="relative latency change that counts as a regression (default 0.10)")

    cmp_ = sub.add_parser("compare", help="compare two reports (regressions between nights)")
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("--latency-tolerance", type=_at_least(0.0, float), default=0.10,
                      help="relative latency change that counts as a regression (default 0.10)")
    cmp_.add_argument("--history", type=Path, default=None, metavar="DB",
                      help="a nightly history.sqlite: the night-to-night noise it records widens "
                           "the latency gate's interval")

    from qat_harness.trace import command as trace_command

    _add_device_options(trace_command.add_parser(sub))

    hist = sub.add_parser("history", help="trends across nights: history.html and a text summary")
    hist.add_argument("folder", type=Path, help="the nightly folder (holding history.sqlite)")
    hist.add_argument("--out", type=Path, default=None, help="the page (default: FOLDER/history.html)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            args = build_parser().parse_args(["run", *(argv or [])])
        command = {"run": cmd_run, "devices": cmd_devices, "claims": cmd_claims,
                   "layers": cmd_layers, "compare": cmd_compare, "nightly": cmd_nightly,
                   "history": cmd_history, "trace": cmd_trace}[args.command]
        with sigterm_as_interrupt():
            return command(args)
    except UsageError as exc:
        _error_line(f"qat-harness: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"qat-harness: {what}; the report keeps what was measured", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            return _internal_error(exc)
        where = f" writing {exc.filename}" if exc.filename else ""
        _error_line(f"qat-harness: error: disk full{where} ({exc.strerror or exc}); the last saved "
                    "report is kept, free some space and run again (or --resume the run)")
        return EXIT_DISK_FULL
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback on the console
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    text = traceback.format_exc()
    try:
        where = f"traceback in {write_crash_log(text)}"
    except OSError as log_exc:
        where = f"the traceback could not be saved: {log_exc.strerror or log_exc}"
    _error_line(f"qat-harness: internal error: {type(exc).__name__}: {exc} ({where})")
    return EXIT_INTERNAL


def _error_line(text: str) -> None:
    """One line on stderr, every control character from a name shown as its escape."""
    from qat_harness.writers.text import visible

    print(visible(text), file=sys.stderr)


def write_crash_log(text: str) -> Path:
    """Save a traceback under a name nobody can predict or pre-create: mkstemp opens with
    O_CREAT|O_EXCL (never follows a planted symlink, never reuses a file) and mode 0600; two
    crashes in the same second get two files."""
    fd, path = tempfile.mkstemp(prefix=f"qat-harness-crash-{_stamp()}-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(path)


def check_devices(names: list[str], given_options: dict, num_threads: int = 2):
    """Every requested device must exist and be usable with its options, or the run does not
    start. Returns the opened ``DeviceSet``: the run uses these same objects and closes them."""
    from qat_harness.devices.device_set import DeviceSet

    return DeviceSet.open(names, given_options, num_threads)


def _recipes(text: str | None) -> list[str]:
    from qat_harness.recipes.catalog import parse_recipes

    try:
        return parse_recipes(text)
    except ValueError as exc:
        raise UsageError(f"--recipes: {exc}") from None


def run_options(args, out: Path):
    """The opened devices and the run's options from the parsed command line (``run`` and
    ``nightly`` alike)."""
    from qat_harness import pipeline
    from qat_harness.devices.base import BenchSettings
    from qat_harness.sources import parse_models

    models = DEFAULT_MODELS if args.models is None else args.models
    sources = parse_models(models, args.float_model)  # a wrong entry fails before anything runs
    _check_weights(sources, args.weights)
    if args.dataset and not Path(args.dataset).exists():
        raise UsageError(f"dataset folder not found: {args.dataset}")
    if args.labels and not Path(args.labels).is_file():
        raise UsageError(f"labels file not found: {args.labels}")
    if args.preprocess:
        from qat_harness.models.datasets import preprocess
        preprocess(args.preprocess)
    if args.weights and not Path(args.weights).exists():
        raise UsageError(f"weights file not found: {args.weights}")
    if args.threads < 1 or args.min_runs < 1:
        raise UsageError("--threads and --min-runs must be at least 1")
    junit_xml = _junit_target(args.junit_xml, out)
    devices = check_devices(args.devices, device_option_values(args), args.threads)
    per_device = devices.options
    return devices, pipeline.RunOptions(
        models=models, devices=args.devices, out=out, num_threads=args.threads,
        input_size=args.input_size,
        default_input_sizes=DEFAULT_INPUT_SIZES if args.models is None else {},
        weights=args.weights, dataset=args.dataset, labels=args.labels, preprocess=args.preprocess,
        float_model=args.float_model, limit_per_class=args.limit_per_class, eval_limit=args.eval_limit,
        bench=BenchSettings(warmup_runs=args.warmup, min_runs=args.min_runs,
                            min_seconds=args.min_seconds, num_threads=args.threads),
        cache_dir=args.cache_dir, use_cache=not args.no_cache, device_options=per_device,
        check_bit_widths=not args.skip_bitwidth, cross_check=args.cross_check,
        recipes=_recipes(args.recipes), trace=not args.no_trace,
        junit_xml=junit_xml)


def _junit_target(path: Path | None, out: Path) -> Path | None:
    from qat_harness.record.report import Report
    from qat_harness.writers.junit import check_target

    return check_target(path, out, Report.FILES) if path is not None else None


def _check_weights(sources, weights: str | None) -> None:
    from qat_harness.models import registry
    from qat_harness.preparation import check_weights_apply
    from qat_harness.sources import SourceKind

    for source in sources:
        if source.kind is SourceKind.REGISTRY:
            check_weights_apply(registry.get(source.label), weights)


def cmd_run(args, out: Path | None = None) -> int:
    return _run(args, out)[0]


def _run(args, out: Path | None = None):
    """A run from the command line: the exit code and the run's report."""
    from qat_harness import pipeline
    from qat_harness.writers import console

    resume = None
    if getattr(args, "resume", None) is not None:
        devices, opts, resume = resume_options(args)
    else:
        devices, opts = run_options(args, out or args.out or _default_out("run"))
    started = time.perf_counter()
    report = pipeline.run(opts, progress=console.progress(), devices=devices, resume=resume)
    elapsed = time.perf_counter() - started
    print_summary(report.run)
    console.say(f"report: {report.json_path}, {report.md_path} and {report.html_path.name} ({elapsed:.1f} s)")
    if report.junit_path is not None and report.junit_path.exists():
        console.say(f"JUnit XML: {report.junit_path}")
    for err in report.usage_errors:
        _error_line(f"qat-harness: error: {err}")
    if report.usage_errors:
        return EXIT_USAGE, report
    return _gate(report, args.fail_on), report


#: flags that mean something with --resume (the rest are the resumed run's own)
_RESUME_FLAGS = ("command", "resume", "fail_on")


def resume_options(args):
    """The devices, options and recorded report of the run in ``args.resume``. Options are
    the recorded run's: giving others with --resume is an error, not silently ignored."""
    from qat_harness.record.tree import RunStatus
    from qat_harness.sources import parse_models

    folder = args.resume
    defaults = vars(build_parser().parse_args(["run"]))
    given = [k for k, v in vars(args).items() if k not in _RESUME_FLAGS and v != defaults.get(k)]
    if given:
        flags = ", ".join("--" + k.removeprefix("device_option.").replace("_", "-") for k in given)
        raise UsageError(f"--resume reuses the options of the run in {folder}; drop {flags}")
    recorded = _read_report(folder)
    if recorded.status is RunStatus.COMPLETE:
        raise UsageError(f"the run in {folder} is complete: nothing to resume")
    opts = dataclasses.replace(recorded.options, out=Path(folder))
    _check_weights(parse_models(opts.models, opts.float_model), opts.weights)
    devices = check_devices(opts.devices, _flat_options(opts.device_options), opts.num_threads)
    return devices, opts, recorded


def _flat_options(per_device: dict) -> dict:
    flat = {}
    for options in per_device.values():
        flat.update(options)
    return flat


def _read_report(folder: Path):
    """The report of the run to resume in ``folder``, read through the report codec."""
    from qat_harness.record import codec

    if not (Path(folder) / codec.REPORT_FILE).exists():
        raise UsageError(f"no report to resume: {Path(folder) / codec.REPORT_FILE} does not exist")
    return codec.load(Path(folder) / codec.REPORT_FILE)


def _gate(report, fail_on: str) -> int:
    order = {"never": None, "error": {"ERROR"}, "fail": {"ERROR", "FAIL"},
             "warn": {"ERROR", "FAIL", "WARN"}}[fail_on]
    if order and any(c.verdict.value in order for c in report.claims):
        return EXIT_GATE
    return EXIT_OK


def print_summary(run) -> None:
    """The summary table of a run (``record.tree.RunReport``) on stdout."""
    from qat_harness.writers.console import summary

    print(summary(run))
    sys.stdout.flush()  # the table (stdout) before the report path (stderr)


def cmd_devices(args) -> int:
    from tabulate import tabulate

    from qat_harness.devices import registry

    rows = []
    for name, entry in registry.entries().items():
        cls = entry.device_class
        if cls is None:
            rows.append([name, "unavailable", "-", entry.description, entry.load_error, "-"])
            continue
        avail = registry.probe(name)
        options = ", ".join(o.cli_flag for o in cls.options) or "-"
        rows.append([name, "available" if avail.available else "missing", cls.role.value,
                     cls.description, avail.reason, options])
    print(tabulate(rows, headers=["device", "status", "role", "what", "details", "options"],
                   tablefmt="simple", maxcolwidths=[None, None, None, 40, 60, 30]))
    return EXIT_OK


def cmd_claims(args) -> int:
    from tabulate import tabulate

    from qat_harness.claims import REGISTRY

    rows = [[c.id, ", ".join(s.value for s in c.scopes), c.text] for c in REGISTRY.values()]
    print(tabulate(rows, headers=["claim", "judged per", "what the guide says"], tablefmt="simple",
                   maxcolwidths=[None, None, 80]))
    return EXIT_OK


def cmd_layers(args) -> int:
    try:
        from qat_harness.layers import matrix as layers
        from qat_harness.layers.stages import error_cells
        from qat_harness.layers.tasks import available_probes
    except ImportError as exc:
        raise UsageError(f"the layer matrix is not available in this build: {exc}") from None
    if args.list:
        print("\n".join(available_probes()))
        return EXIT_OK
    recipes = _recipes(args.recipes)
    out = args.out or _default_out("layers")
    from qat_harness.writers import console

    if args.probe:
        _error_line(f"qat-harness: warning: --probe imports and runs your code ({', '.join(args.probe)}) "
                    f"from {Path.cwd()}, in a child process with your permissions")
    optional = {"timeout_s": args.probe_timeout} if args.probe_timeout else {}
    if recipes:
        optional["recipes"] = recipes
    devices = check_devices(args.devices, device_option_values(args))
    with devices:  # run_layers closes them too; this covers a refusal before it opens them
        result = layers.run_layers(args.layers, args.devices, out, user_probes=args.probe,
                                   progress=console.progress(), device_options=devices.options,
                                   opened=devices, **optional)
    console.say(f"matrix: {out / 'layers.json'} and {out / 'layers.md'}")
    errors = error_cells(result)
    if errors:
        _error_line(f"qat-harness: {len(errors)} cell(s) are ERROR (crash, timeout or broken probe), "
                    f"e.g. {errors[0]}; see {out / 'layers.md'}")
        return EXIT_GATE
    return EXIT_OK


def cmd_nightly(args) -> int:
    """Run, record in history.sqlite, compare with the previous recorded run; exit 1 on a
    regression (a verdict that got worse, a latency beyond the tolerance)."""
    from qat_harness import compare, history
    from qat_harness.record.folder import write_atomically
    from qat_harness.writers import compare_text
    from qat_harness.writers.history_html import render_history
    from qat_harness.writers.text import visible

    folder = args.out or Path("reports/nightly")
    run_dir = new_run_folder(folder, dt.datetime.now().strftime("%Y-%m-%d-%H%M%S"))
    args.fail_on = "never"
    code, report = _run(args, out=run_dir)
    if code == EXIT_USAGE:
        return code
    db = folder / "history.sqlite"
    run_id = history.record(db, report.run, report.json_path)
    print(visible(render_history(db, folder / "history.html").text()))
    previous = history.previous_report(db, run_id)
    if previous is None:
        print("nightly: first recorded run, nothing to compare with yet")
        return EXIT_OK
    result = compare.compare_files(previous, report.run, args.latency_tolerance,
                                   earlier_medians=history.earlier_medians(db, run_id))
    text = compare_text.render(result)
    write_atomically(run_dir / "compare.txt", text + "\n")
    print(text)
    return EXIT_GATE if result.regressions else EXIT_OK


def cmd_compare(args) -> int:
    from qat_harness import compare, history
    from qat_harness.writers import compare_text

    earlier = history.earlier_medians(args.history) if args.history else None
    result = compare.compare_files(args.baseline, args.current, args.latency_tolerance,
                                   earlier_medians=earlier)
    print(compare_text.render(result))
    return EXIT_GATE if result.regressions else EXIT_OK


def cmd_trace(args) -> int:
    """Per-layer trace: exits 1 when it names a culprit (a layer where int8 parts ways)."""
    from qat_harness.trace import command as trace_command
    from qat_harness.writers import console

    with check_devices(args.devices, device_option_values(args)) as devices:
        return EXIT_GATE if trace_command.cmd_trace(args, devices, progress=console.progress()) else EXIT_OK


def cmd_history(args) -> int:
    from qat_harness.writers.history_html import render_history
    from qat_harness.writers.history_text import render_trends_text
    from qat_harness.writers.text import visible

    db = args.folder / "history.sqlite"
    if not db.is_file():
        raise UsageError(f"no nightly history at {db}")
    summary = render_history(db, args.out or args.folder / "history.html")
    print(render_trends_text(summary.trends))
    print(visible(summary.text()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
