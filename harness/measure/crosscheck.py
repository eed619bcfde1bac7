"""The run's cross-check against the benchmark tool that ships with ai-edge-litert
(``litert-benchmark``, module ``ai_edge_litert.tools.benchmark_litert_model``): the same
.tflite files, the same thread count, timed by that tool right after the harness timed them,
with its medians put beside the harness's. A difference above ``CROSS_CHECK_TOLERANCE``
(``claims.tolerances``) is flagged: it
means the harness measures something other than what LiteRT's own tool sees.

The tool is a separate program, run as it ships (no import of its code here): one process per
model and round, rounds in ABBA order so that a drift of the machine falls on every model, its
``--result_json`` read back. It reports milliseconds rounded to 0.01 ms (``RESOLUTION_MS``),
so a difference within that rounding is never flagged."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats as sps

from qat_harness.claims.tolerances import CROSS_CHECK_TOLERANCE
from qat_harness.results import Verdict
from qat_harness.stats import RatioCI

TOOL_NAME = "litert-benchmark"
#: the kernels the native tool times: only a device computing with them on this host is cross-checked
KERNEL = "xnnpack"
TOOL_MODULE = "ai_edge_litert.tools.benchmark_litert_model"
RESOLUTION_MS = 0.01
DEFAULT_ROUNDS = 5
DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10


@dataclasses.dataclass(frozen=True)
class NativeTool:
    command: tuple[str, ...]
    description: str


class NativeToolFailed(Exception):
    """The tool ran and failed, or wrote no result: the reason in one line."""


def find_native_tool() -> NativeTool | None:
    """The console script next to this interpreter (the same installation as the harness's
    LiteRT), else one on PATH, else the tool's module run by this interpreter."""
    beside = Path(sys.executable).with_name(TOOL_NAME)
    if beside.is_file():
        return NativeTool((str(beside),), f"{TOOL_NAME} ({beside})")
    on_path = shutil.which(TOOL_NAME)
    if on_path:
        return NativeTool((on_path,), f"{TOOL_NAME} ({on_path})")
    try:
        found = importlib.util.find_spec(TOOL_MODULE) is not None
    except ModuleNotFoundError:
        found = False
    if found:
        return NativeTool((sys.executable, "-m", TOOL_MODULE), f"python -m {TOOL_MODULE}")
    return None


def native_median_ms(tool: NativeTool, model: Path, threads: int, runs: int = DEFAULT_RUNS,
                     warmup: int = DEFAULT_WARMUP, timeout_s: float = 300.0) -> float:
    """One run of the tool on one model: its median latency in ms."""
    with tempfile.TemporaryDirectory(prefix="qat-native-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [*tool.command, "--model", str(Path(model).resolve()), "--num_threads", str(threads),
               "--num_runs", str(runs), "--warmup_runs", str(warmup), "--result_json", str(result)]
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise NativeToolFailed(f"{TOOL_NAME} did not finish within {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise NativeToolFailed(f"{TOOL_NAME} exited with {proc.returncode}: {tail[0][:300]}")
        return float(json.loads(result.read_text())["latency"]["median_ms"])


def measure_native(tool: NativeTool, models: dict[str, Path], threads: int,
                   rounds: int = DEFAULT_ROUNDS, runs: int = DEFAULT_RUNS,
                   warmup: int = DEFAULT_WARMUP, timeout_s: float = 300.0) -> dict[str, list[float]]:
    """Per label, the tool's median of each round; models in ABBA order across rounds."""
    labels = list(models)
    medians: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            medians[label].append(native_median_ms(tool, models[label], threads, runs, warmup, timeout_s))
    return medians


@dataclasses.dataclass(frozen=True)
class CrossCheckRow:
    variant: str
    harness_median_ms: float
    native_median_ms: float
    difference: float | None   # harness / native - 1; None when the tool's median reads 0.00 ms
    flagged: bool


@dataclasses.dataclass(frozen=True)
class CrossCheck:
    """Beside the harness's medians, the native tool's. ``status``: PASS (every median within
    the tolerance), WARN (at least one flagged), SKIP (no tool), ERROR (the tool failed)."""
    status: Verdict
    reason: str
    tool: str | None = None
    threads: int | None = None
    rounds: int | None = None
    runs_per_round: int | None = None
    tolerance: float = CROSS_CHECK_TOLERANCE
    rows: list[CrossCheckRow] = dataclasses.field(default_factory=list)
    native_rounds_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    native_ratio: RatioCI | None = None
    harness_ratio: RatioCI | None = None
    harness_ratio_inside_native_interval: bool | None = None


def skipped(reason: str) -> CrossCheck:
    return CrossCheck(Verdict.SKIP, reason)


def failed(tool: NativeTool, reason: str) -> CrossCheck:
    return CrossCheck(Verdict.ERROR, reason, tool=tool.description)


def native_ratio(numerator_rounds: list[float], denominator_rounds: list[float],
                 confidence: float = 0.95) -> RatioCI:
    """The tool's float/int8 ratio: the geometric mean of the per-round ratios (each round
    timed both models next to each other) with a t interval on their logarithms."""
    logs = np.log(np.asarray(numerator_rounds, float) / np.asarray(denominator_rounds, float))
    centre = float(np.exp(logs.mean()))
    if logs.size < 3:
        return RatioCI(centre, None, None, int(logs.size))
    half = float(sps.t.ppf(0.5 + confidence / 2, logs.size - 1) * logs.std(ddof=1) / math.sqrt(logs.size))
    return RatioCI(centre, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half)),
                   int(logs.size), confidence)


def compare(harness_medians_ms: dict[str, float], native_rounds_ms: dict[str, list[float]],
            tool: str, threads: int, runs_per_round: int, harness_ratio: RatioCI | None = None,
            ratio_labels: tuple[str, str] = ("float", "qat_int8"),
            tolerance: float = CROSS_CHECK_TOLERANCE) -> CrossCheck:
    """Pure: the two sets of medians in, the cross-check out."""
    rows = [_row(v, harness_medians_ms[v], float(np.median(native_rounds_ms[v])), tolerance)
            for v in harness_medians_ms if v in native_rounds_ms]
    num, den = ratio_labels
    timed = [native_rounds_ms.get(num), native_rounds_ms.get(den)]
    ratio = (native_ratio(*timed) if all(t and min(t) > 0 for t in timed) else None)
    inside = None
    if ratio is not None and ratio.ci_low is not None and harness_ratio is not None:
        inside = ratio.ci_low <= harness_ratio.ratio <= ratio.ci_high
    flagged = [r for r in rows if r.flagged]
    rounds = max((len(v) for v in native_rounds_ms.values()), default=0)
    if flagged:
        status = Verdict.WARN
        reason = ("harness median differs from the native tool's by more than "
                  f"{tolerance:.0%}: " + ", ".join(f"{r.variant} {r.difference:+.1%}" for r in flagged))
    else:
        status = Verdict.PASS
        reason = f"every harness median within {tolerance:.0%} of the native tool's"
    unresolved = [r.variant for r in rows if r.difference is None]
    if unresolved:
        reason += (f" ({', '.join(unresolved)}: the tool's median reads 0.00 ms, below its "
                   f"{RESOLUTION_MS} ms resolution: not compared)")
    return CrossCheck(status, reason, tool, threads, rounds, runs_per_round, tolerance, rows,
                      dict(native_rounds_ms), ratio, harness_ratio, inside)


def _row(variant: str, harness_ms: float, native_ms: float, tolerance: float) -> CrossCheckRow:
    if native_ms <= 0:  # faster than the tool's resolution: nothing to compare with
        return CrossCheckRow(variant, harness_ms, native_ms, None, False)
    difference = harness_ms / native_ms - 1
    # the tool rounds to RESOLUTION_MS: a difference inside that rounding is not a finding
    flagged = abs(difference) > tolerance and abs(harness_ms - native_ms) > RESOLUTION_MS / 2
    return CrossCheckRow(variant, harness_ms, native_ms, difference, flagged)


def run_cross_check(models: dict[str, Path], harness_medians_ms: dict[str, float], threads: int,
                    harness_ratio: RatioCI | None = None, ratio_labels: tuple[str, str] = ("float", "qat_int8"),
                    rounds: int = DEFAULT_ROUNDS, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                    timeout_s: float = 300.0, tool: NativeTool | None = None) -> CrossCheck:
    """Time ``models`` with the native tool (after the harness timed them) and compare."""
    tool = tool or find_native_tool()
    if tool is None:
        return skipped(f"{TOOL_NAME} not found (neither next to {sys.executable}, on PATH, nor "
                       f"the module {TOOL_MODULE}): install ai-edge-litert >= 2.3")
    try:
        native = measure_native(tool, models, threads, rounds, runs, warmup, timeout_s)
    except NativeToolFailed as exc:
        return failed(tool, str(exc))
    return compare(harness_medians_ms, native, tool.description, threads, runs, harness_ratio,
                   ratio_labels)
