"""The harness's latency against the benchmark tool that ships with ai-edge-litert (issue 11;
pytest-benchmark, not part of the test suite):

    python3 -m pytest benchmarks/test_bench_fidelity.py --benchmark-only -s

On digits_cnn and MobileNet V2 at 160x160 (their artifacts from the harness's cache; built on
a miss, which takes minutes for MobileNet V2), ``ROUNDS`` rounds of: the harness's block timing
of float and QAT int8 in one worker, then the native tool on the same two files, one after the
other, same threads. Targets: every harness median within 5% of the native tool's (median
over rounds), and the harness's float/int8 ratio inside the native ratio's 95% interval. The
measured table is printed, kept in the benchmark's ``extra_info`` and written to
``FIDELITY_TABLE`` (a JSON file, default ``.benchmarks/fidelity.json``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qat_harness import stats
from qat_harness.build.cache import ArtifactCache
from qat_harness.core.tflite import inspect_model
from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.measure import crosscheck
from qat_harness.preparation import DataOptions, prepare
from qat_harness.sources import parse_models

THREADS = 2
ROUNDS = 5
LABELS = ("float", "qat_int8")
#: model -> (input size, native runs per invocation, harness seconds per round)
MODELS = {"digits_cnn": (None, 1000, 1.0), "mobilenet_v2": (160, 200, 2.0)}
TABLE = Path(os.environ.get("FIDELITY_TABLE", ".benchmarks/fidelity.json"))

pytestmark = pytest.mark.skipif(crosscheck.find_native_tool() is None,
                                reason="litert-benchmark (ai-edge-litert >= 2.3) not installed")


def _artifacts(model: str, size: int | None, tmp: Path) -> dict[str, Path]:
    source = parse_models([model])[0]
    prepared = prepare(source, DataOptions(), ArtifactCache(), tmp, lambda msg: None, size)
    return {v: prepared.variants[v] for v in LABELS}


def _zeros(path: Path) -> np.ndarray:
    info = inspect_model(path)
    tensor = info.tensor(info.inputs[0])
    return np.zeros((1, *tensor.shape[1:]), dtype=tensor.dtype)


def measure(files: dict[str, Path], native_runs: int, seconds: float) -> dict:
    """Rounds of harness-then-native on the same files."""
    tool = crosscheck.find_native_tool()
    device = CpuDevice(THREADS)
    sample = {v: _zeros(p) for v, p in files.items()}
    settings = BenchSettings(warmup_runs=10, min_runs=100, min_seconds=seconds, max_runs=20000,
                             num_threads=THREADS)
    harness = {v: [] for v in files}
    cold = {v: [] for v in files}
    harness_blocks = {v: [] for v in files}
    native = {v: [] for v in files}
    for r in range(ROUNDS):
        bench = device.benchmark(files, sample, settings)
        per_block = bench.details["blocks"]["block_runs"] - 1
        for v, times in bench.times_ms.items():
            harness[v].append(float(np.median(times)))
            cold[v].append(bench.details["blocks"]["cold_median_ms"][v])
            harness_blocks[v] += stats.split_blocks(times, per_block)
        for v in (LABELS if r % 2 == 0 else LABELS[::-1]):
            native[v].append(crosscheck.native_median_ms(tool, files[v], THREADS, native_runs, 10))
    harness_ratio = stats.block_ratio_ci(harness_blocks["float"], harness_blocks["qat_int8"])
    check = crosscheck.compare({v: float(np.median(m)) for v, m in harness.items()}, native,
                               tool.description, THREADS, native_runs, harness_ratio)
    return {"check": check, "harness_rounds_ms": harness, "cold_rounds_ms": cold}


def _table(model: str, result: dict) -> dict:
    check = result["check"]
    rows = {r.variant: {"harness_median_ms": round(r.harness_median_ms, 4),
                        "native_median_ms": round(r.native_median_ms, 4),
                        "difference": None if r.difference is None else round(r.difference, 4),
                        "harness_cold_median_ms": round(float(np.median(result["cold_rounds_ms"][r.variant])), 4),
                        "harness_rounds_ms": [round(x, 4) for x in result["harness_rounds_ms"][r.variant]],
                        "native_rounds_ms": check.native_rounds_ms[r.variant]}
            for r in check.rows}
    return {"model": model, "threads": THREADS, "rounds": ROUNDS, "rows": rows,
            "harness_ratio": check.harness_ratio.to_dict(),
            "native_ratio": check.native_ratio.to_dict() if check.native_ratio else None,
            "harness_ratio_inside_native_interval": check.harness_ratio_inside_native_interval}


def _save(entry: dict) -> None:
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    tables = json.loads(TABLE.read_text()) if TABLE.exists() else {}
    tables[entry["model"]] = entry
    TABLE.write_text(json.dumps(tables, indent=2))


@pytest.mark.parametrize("model", list(MODELS))
def test_harness_agrees_with_the_native_tool(benchmark, model, tmp_path):
    size, native_runs, seconds = MODELS[model]
    files = _artifacts(model, size, tmp_path)
    result = benchmark.pedantic(measure, args=(files, native_runs, seconds), rounds=1, iterations=1)
    entry = _table(model, result)
    benchmark.extra_info.update(entry)
    _save(entry)
    print(json.dumps(entry, indent=1))
    check = result["check"]
    assert all(abs(r.difference) <= crosscheck.TOLERANCE for r in check.rows), check.reason
    assert check.harness_ratio_inside_native_interval, (check.harness_ratio, check.native_ratio)
