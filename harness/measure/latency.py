"""Latency on one device: every variant timed together in one schedule (``core.timing``), the
float/int8 speed-up with its interval, and, on request, LiteRT's native tool timing the same
files as a cross-check of the method."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np

from qat_harness import stats
from qat_harness.devices.base import BenchResult, BenchSettings, Device, ModelInputs
from qat_harness.measure import crosscheck
from qat_harness.record import codec
from qat_harness.record.tree import BenchDetails, BlockTiming, JsonObject
from qat_harness.variants import Variant


@dataclasses.dataclass
class LatencyMeasurement:
    bench: BenchResult
    summaries: dict[str, stats.LatencySummary]
    details: BenchDetails
    speedup: stats.RatioCI | None          # float / the file under test; None without a float file
    ptq_speedup: stats.RatioCI | None


def time_variants(dev: Device, paths: Mapping[str, Path], samples: Mapping[str, ModelInputs],
                  settings: BenchSettings, under_test: str) -> LatencyMeasurement:
    """Raises ``DeviceError`` when the device cannot time them."""
    # Device.benchmark declares one array per label; every adapter also takes a list (several inputs)
    bench = dev.benchmark(dict(paths), cast(dict[str, np.ndarray], dict(samples)), settings)
    blocks = bench.details.get("blocks")
    details = BenchDetails(
        protocol=bench.protocol,
        blocks=codec.structure(BlockTiming, blocks) if blocks else None,
        device=codec.structure(JsonObject, {k: v for k, v in bench.details.items() if k != "blocks"}))

    def ratio(numerator: str, denominator: str) -> stats.RatioCI | None:
        if numerator not in bench.times_ms or denominator not in bench.times_ms:
            return None
        if details.blocks:  # timed in ABBA blocks: each round's ratio, so load and drift cancel
            per_block = details.blocks.block_runs - 1
            return stats.paired_block_ratio_ci(stats.split_blocks(bench.times_ms[numerator], per_block),
                                               stats.split_blocks(bench.times_ms[denominator], per_block))
        return stats.ratio_of_medians_ci(bench.times_ms[numerator], bench.times_ms[denominator])

    return LatencyMeasurement(bench, {v: stats.latency_summary(t) for v, t in bench.times_ms.items()}, details,
                              ratio(Variant.FLOAT, under_test), ratio(Variant.FLOAT, Variant.PTQ_INT8))


def cross_check(dev_name: str, dev: Device, paths: Mapping[str, Path], latency: LatencyMeasurement,
                num_threads: int, under_test: str) -> crosscheck.CrossCheck:
    """The same files timed by LiteRT's native tool, where the device computes what it times."""
    if not (dev.runs_on_host and dev.kernel == crosscheck.KERNEL and not dev.simulated):
        return crosscheck.skipped(f"{crosscheck.TOOL_NAME} times LiteRT + XNNPACK on the host "
                                  f"CPU; {dev_name} is another backend")
    return crosscheck.run_cross_check(dict(paths), {v: s.median_ms for v, s in latency.summaries.items()
                                                    if s.median_ms is not None},
                                      num_threads, latency.speedup, (Variant.FLOAT.value, under_test))
