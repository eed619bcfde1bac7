"""How the nightly latency gate behaves on real LiteRT timings (pytest-benchmark; not part of
the test suite):

    python3 -m pytest benchmarks/test_bench_regression_gate.py --benchmark-only -s

* false alarms: 21 "nights" of the SAME int8 model, each one real ``CpuDevice().benchmark`` in
  its own child process with the nightly's default settings, compared night after night as the
  nightly does (20 comparisons). Every regression the gate reports is a false alarm; the old
  rule (point estimate of the median past +10%) is counted beside it.
* sensitivity: the recorded nights again, with a synthetic slowdown of 2 / 5 / 10 / 15 / 20 / 30%
  injected into the later night of each pair; the smallest slowdown flagged in at least 90% of
  the comparisons is what the gate detects.

The timing benchmark itself is one gate decision on two nights' raw samples."""
import numpy as np
import pytest

from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.reporting.gates import LatencyGate, Outcome

NIGHTS = 21
SLOWDOWNS = (0.02, 0.05, 0.10, 0.15, 0.20, 0.30)
DETECTED = 0.90       # share of comparisons that must flag a slowdown for it to count as detected


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory):
    from qat_harness.build.convert import to_tflite   # selects Keras 2 before TensorFlow loads
    import tf_keras as keras

    layers = keras.layers
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(16, 3, activation="relu"),
                              layers.Conv2D(32, 3, strides=2, activation="relu"),
                              layers.DepthwiseConv2D(3, activation="relu"), layers.Conv2D(64, 1),
                              layers.GlobalAveragePooling2D(), layers.Dense(10)])
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
    path = tmp_path_factory.mktemp("gate") / "int8.tflite"
    path.write_bytes(to_tflite(model, True, x))
    return path


@pytest.fixture(scope="module")
def nights(small_int8) -> list[np.ndarray]:
    """Real per-invoke latencies of the same model, one array per night."""
    device, settings = CpuDevice(num_threads=2), BenchSettings()
    sample = np.zeros((1, 32, 32, 3), np.int8)
    return [np.asarray(device.benchmark({"qat_int8": small_int8}, sample, settings).times_ms["qat_int8"])
            for _ in range(NIGHTS)]


def test_gate_false_alarms_and_smallest_detected_slowdown(benchmark, nights):
    gate = LatencyGate(tolerance=0.10)
    pairs = list(zip(nights[:-1], nights[1:]))
    findings = [gate.judge_samples(a, b) for a, b in pairs]
    false_alarms = sum(f.outcome is Outcome.REGRESSION for f in findings)
    old_rule_alarms = sum(np.median(b) / np.median(a) - 1 > 0.10 for a, b in pairs)
    detection = {s: np.mean([gate.judge_samples(a, b * (1 + s)).outcome is Outcome.REGRESSION
                             for a, b in pairs]) for s in SLOWDOWNS}
    smallest = min((s for s, rate in detection.items() if rate >= DETECTED), default=None)

    benchmark.pedantic(gate.judge_samples, args=pairs[0], rounds=5, iterations=1)

    changes = [f.change for f in findings]
    report = {
        "comparisons": len(pairs), "runs_per_night_median": int(np.median([n.size for n in nights])),
        "false_alarms": false_alarms, "false_alarm_rate": false_alarms / len(pairs),
        "old_point_rule_alarms": int(old_rule_alarms),
        "night_to_night_median_change_range": [round(min(changes), 4), round(max(changes), 4)],
        "detection_rate": {f"{s:.0%}": float(r) for s, r in detection.items()},
        "smallest_detected_slowdown": smallest,
    }
    benchmark.extra_info.update(report)
    print("\nregression gate on real LiteRT timings:", report)
    assert false_alarms <= 2, report        # at most 10% of the comparisons
    assert detection[0.30] >= DETECTED, report
