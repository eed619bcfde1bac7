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
import datetime as dt
import sys
import tempfile
import time
import traceback
from pathlib import Path

import qat_harness  # noqa: F401 - environment set-up
from qat_harness.errors import UsageError

DEFAULT_MODELS = ["digits_cnn", "mobilenet_v2"]
DEFAULT_INPUT_SIZES = {"mobilenet_v2": 160}  # the default run must fit in a few minutes on 2 cores
EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _default_out(kind: str) -> Path:
    return Path("reports") / f"{kind}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qat-harness", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="conformance run: models x devices -> report.json / report.md")
    r.add_argument("--models", type=_csv, default=None,
                   help=f"comma-separated model names (default: {','.join(DEFAULT_MODELS)})")
    r.add_argument("--devices", type=_csv, default=["cpu"], help="comma-separated devices (default: cpu)")
    r.add_argument("--out", type=Path, default=None, help="output folder (default: reports/run-<time>)")
    r.add_argument("--threads", type=int, default=2, help="interpreter threads (default: 2)")
    r.add_argument("--input-size", type=int, default=None, help="input size for the application models")
    r.add_argument("--weights", default=None, help="weights file (.h5) for an application model")
    r.add_argument("--dataset", default=None, help="image folder (class/xxx.jpg) for real accuracy")
    r.add_argument("--limit-per-class", type=int, default=None, help="images read per class of --dataset")
    r.add_argument("--eval-limit", type=int, default=None, help="cap on evaluation examples")
    r.add_argument("--warmup", type=int, default=5, help="warm-up runs per model before timing")
    r.add_argument("--min-runs", type=int, default=30, help="at least this many timed runs per model")
    r.add_argument("--min-seconds", type=float, default=1.0, help="and at least this long timing")
    r.add_argument("--cache-dir", type=Path, default=None,
                   help="artifact cache (default: $QAT_HARNESS_CACHE or ~/.cache/qat-harness)")
    r.add_argument("--no-cache", action="store_true", help="rebuild artifacts even if cached")
    r.add_argument("--serial", default=None, help="Android device serial (default: $ANDROID_SERIAL)")
    r.add_argument("--benchmark-model", default=None,
                   help="path of TFLite's Android benchmark_model binary (default: $QAT_BENCHMARK_MODEL)")
    r.add_argument("--nnapi-accelerator", default=None, help="NNAPI accelerator name to pin")
    r.add_argument("--edgetpu-device", default=None, help="Edge TPU device: usb, usb:N, pci, pci:N")
    r.add_argument("--skip-bitwidth", action="store_true",
                   help="skip the C6 probe (4-bit QAT has no TFLite deployment path)")
    r.add_argument("--fail-on", choices=["never", "error", "fail", "warn"], default="error",
                   help="exit 1 when any verdict is at least this bad (default: error)")

    sub.add_parser("devices", help="list devices found and, for the missing ones, why")
    sub.add_parser("claims", help="list the claim ids")

    lay = sub.add_parser("layers", help="layer support matrix")
    lay.add_argument("--layers", type=_csv, default=None, help="probe names (default: all)")
    lay.add_argument("--devices", type=_csv, default=["cpu"])
    lay.add_argument("--probe", action="append", default=[], metavar="MODULE:FUNCTION",
                     help="a probe of your own: a function returning a tf_keras model")
    lay.add_argument("--out", type=Path, default=None)
    lay.add_argument("--list", action="store_true", help="list the built-in probes and exit")

    nightly = sub.add_parser("nightly", help="a run recorded in history and compared with the last one")
    nightly.add_argument("--out", type=Path, default=Path("reports/nightly"),
                         help="nightly folder: one sub-folder per run, plus history.sqlite")
    nightly.add_argument("--models", type=_csv, default=None)
    nightly.add_argument("--devices", type=_csv, default=["cpu"])
    nightly.add_argument("--latency-tolerance", type=float, default=0.10)

    cmp_ = sub.add_parser("compare", help="compare two reports (regressions between nights)")
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("--latency-tolerance", type=float, default=0.10,
                      help="relative latency change that counts as a regression (default 0.10)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["run", *(argv or [])])
    try:
        return {"run": cmd_run, "devices": cmd_devices, "claims": cmd_claims,
                "layers": cmd_layers, "compare": cmd_compare, "nightly": cmd_nightly}[args.command](args)
    except UsageError as exc:
        print(f"qat-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("qat-harness: interrupted; the report keeps what was measured", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback on the console
        log = Path(tempfile.gettempdir()) / f"qat-harness-crash-{int(time.time())}.log"
        log.write_text(traceback.format_exc())
        print(f"qat-harness: internal error: {type(exc).__name__}: {exc} (traceback in {log})",
              file=sys.stderr)
        return EXIT_INTERNAL


def _console():
    from rich.console import Console
    return Console(stderr=True, highlight=False)


def check_devices(names: list[str], options: dict) -> None:
    """Every requested device must exist and be usable, or the run does not start."""
    from qat_harness.devices import registry

    known = registry.names()
    for name in names:
        if name not in known:
            raise UsageError(f"unknown device '{name}'; known devices: {', '.join(known)}")
        avail = registry.create(name, **options).probe()
        if not avail.available:
            raise UsageError(f"device '{name}' was requested but is not available: {avail.reason}")


def _device_options(args) -> dict:
    opts = {"serial": args.serial, "benchmark_model": args.benchmark_model,
            "accelerator": args.nnapi_accelerator, "device": args.edgetpu_device}
    return {k: v for k, v in opts.items() if v is not None}


def cmd_run(args) -> int:
    from qat_harness import pipeline
    from qat_harness.devices.base import BenchSettings
    from qat_harness.models import registry as model_registry

    models = args.models or DEFAULT_MODELS
    for name in models:
        model_registry.get(name)  # unknown names fail before anything runs
    if args.dataset and not Path(args.dataset).is_dir():
        raise UsageError(f"dataset folder not found: {args.dataset}")
    if args.weights and not Path(args.weights).exists():
        raise UsageError(f"weights file not found: {args.weights}")
    if args.threads < 1 or args.min_runs < 1:
        raise UsageError("--threads and --min-runs must be at least 1")
    dev_opts = _device_options(args)
    check_devices(args.devices, dev_opts)
    out = args.out or _default_out("run")
    console = _console()
    started = time.perf_counter()
    opts = pipeline.RunOptions(
        models=models, devices=args.devices, out=out, num_threads=args.threads,
        input_size=args.input_size,
        default_input_sizes=DEFAULT_INPUT_SIZES if args.models is None else {},
        weights=args.weights, dataset=args.dataset,
        limit_per_class=args.limit_per_class, eval_limit=args.eval_limit,
        bench=BenchSettings(warmup_runs=args.warmup, min_runs=args.min_runs,
                            min_seconds=args.min_seconds, num_threads=args.threads),
        cache_dir=args.cache_dir, use_cache=not args.no_cache, device_options=dev_opts,
        check_bit_widths=not args.skip_bitwidth)
    report = pipeline.run(opts, progress=console.log)
    elapsed = time.perf_counter() - started
    print_summary(report)
    console.print(f"report: {report.json_path} and {report.md_path} ({elapsed:.1f} s)")
    for err in report.usage_errors:
        print(f"qat-harness: error: {err}", file=sys.stderr)
    if report.usage_errors:
        return EXIT_USAGE
    return _gate(report, args.fail_on)


def _gate(report, fail_on: str) -> int:
    order = {"never": None, "error": {"ERROR"}, "fail": {"ERROR", "FAIL"},
             "warn": {"ERROR", "FAIL", "WARN"}}[fail_on]
    if order and any(c["verdict"] in order for c in report.claims):
        return EXIT_GATE
    return EXIT_OK


def print_summary(report) -> None:
    from tabulate import tabulate

    from qat_harness.report import summary_rows

    rows = [r[:5] + [r[5][:90]] for r in summary_rows(report.data)]
    print(tabulate(rows, headers=["claim", "model", "device", "verdict", "measured", "reason"],
                   tablefmt="simple"))
    counts = report.verdict_counts()
    print("  ".join(f"{k} {v}" for k, v in counts.items()))
    simulated = sorted({c["device"] for c in report.claims if c.get("simulated")})
    if simulated:
        print(f"simulated devices (not hardware results): {', '.join(simulated)}")
    sys.stdout.flush()  # the table (stdout) before the report path (stderr)


def cmd_devices(args) -> int:
    from tabulate import tabulate

    from qat_harness.devices import registry

    rows = []
    for name in registry.names():
        try:
            avail = registry.create(name).probe()
            status, reason = ("available" if avail.available else "missing"), avail.reason
        except Exception as exc:  # noqa: BLE001 - a broken probe is itself a finding
            status, reason = "error", f"{type(exc).__name__}: {exc}"
        rows.append([name, status, registry.description(name), reason])
    print(tabulate(rows, headers=["device", "status", "what", "details"], tablefmt="simple"))
    return EXIT_OK


def cmd_claims(args) -> int:
    from qat_harness.claims import CLAIMS

    for cid, text in CLAIMS.items():
        print(f"{cid:16} {text}")
    return EXIT_OK


def cmd_layers(args) -> int:
    try:
        from qat_harness import layers
    except ImportError as exc:
        raise UsageError(f"the layer matrix is not available in this build: {exc}") from None
    if args.list:
        print("\n".join(layers.available_probes()))
        return EXIT_OK
    check_devices(args.devices, {})
    out = args.out or _default_out("layers")
    console = _console()
    result = layers.run_layers(args.layers, args.devices, out, user_probes=args.probe,
                               progress=console.log)
    console.print(f"matrix: {out / 'layers.json'} and {out / 'layers.md'}")
    return EXIT_OK if result is not None else EXIT_INTERNAL


def cmd_nightly(args) -> int:
    """Run, record in history.sqlite, compare with the previous recorded run; exit 1 on a
    regression (a verdict that got worse, a latency beyond the tolerance)."""
    from qat_harness import compare, history

    run_dir = args.out / dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    run_args = build_parser().parse_args(["run", "--out", str(run_dir), "--devices", ",".join(args.devices),
                                          "--fail-on", "never"]
                                         + (["--models", ",".join(args.models)] if args.models else []))
    code = cmd_run(run_args)
    if code == EXIT_USAGE:
        return code
    report_path = run_dir / "report.json"
    db = args.out / "history.sqlite"
    run_id = history.record(db, compare.load(report_path), report_path)
    previous = history.previous_report(db, run_id)
    if previous is None:
        print("nightly: first recorded run, nothing to compare with yet")
        return EXIT_OK
    result = compare.compare_files(previous, report_path, args.latency_tolerance)
    text = compare.render_text(result)
    (run_dir / "compare.txt").write_text(text + "\n")
    print(text)
    return EXIT_GATE if result["regressions"] else EXIT_OK


def cmd_compare(args) -> int:
    from qat_harness import compare

    result = compare.compare_files(args.baseline, args.current, args.latency_tolerance)
    print(compare.render_text(result))
    return EXIT_GATE if result["regressions"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
