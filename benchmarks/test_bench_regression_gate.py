"""How the nightly latency gate behaves on real LiteRT timings (pytest-benchmark; not part of
the test suite):

    python3 -m pytest benchmarks/test_bench_regression_gate.py --benchmark-only -s

* false alarms: 21 "nights" of the SAME int8 model, each one real ``CpuDevice().benchmark`` in
  its own child process with the nightly's default settings, compared night after night as the
  nightly does (20 comparisons). Every regression the gate reports is a false alarm. Counted
  for the gate with history (the night-to-night spread learnt from the other nights, as a
  nightly with a history has it), without history (this night's samples only), and for the
  old rule (point estimate of the median past +10%).
* sensitivity: the recorded nights again, with a synthetic slowdown of 2 .. 100% injected into
  the later night of each pair; the smallest slowdown flagged in at least 90% of the
  comparisons is what the gate detects.

The timing benchmark itself is one gate decision on two nights' raw samples."""
import numpy as np
import pytest

from qat_harness.compare.gates import LatencyGate, NightNoise, Outcome
from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice

NIGHTS = 21
SLOWDOWNS = (0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.75, 1.00)
DETECTED = 0.90       # share of comparisons that must flag a slowdown for it to count as detected


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory):
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite  # selects Keras 2 before TensorFlow loads

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


def _rates(gate: LatencyGate, nights: list[np.ndarray], with_history: bool) -> dict:
    medians = [float(np.median(n)) for n in nights]
    pairs = list(range(len(nights) - 1))

    def noise(i: int) -> NightNoise | None:   # the spread of every other night, in order
        return NightNoise.from_medians([m for k, m in enumerate(medians) if k not in (i, i + 1)]) \
            if with_history else None

    findings = [gate.judge_samples(nights[i], nights[i + 1], noise(i)) for i in pairs]

    def flagged(i: int, slowdown: float) -> bool:
        # Scaling a night's samples by (1 + s) scales its medians, the bootstrap interval (same
        # seed) and the widened interval exactly, so the finding is scaled, not recomputed.
        f, k = findings[i], 1 + slowdown
        return gate.outcome(f.ratio * k, f.ci_low * k, f.ci_high * k) is Outcome.REGRESSION

    false_alarms = sum(flagged(i, 0.0) for i in pairs)
    assert false_alarms == sum(f.outcome is Outcome.REGRESSION for f in findings)
    detection = {s: float(np.mean([flagged(i, s) for i in pairs])) for s in SLOWDOWNS}
    return {"false_alarms": false_alarms, "false_alarm_rate": false_alarms / len(pairs),
            "detection_rate": {f"{s:.0%}": r for s, r in detection.items()},
            "smallest_detected_slowdown": min((s for s, r in detection.items() if r >= DETECTED), default=None)}


def test_gate_false_alarms_and_smallest_detected_slowdown(benchmark, nights):
    gate = LatencyGate(tolerance=0.10)
    medians = np.array([np.median(n) for n in nights])
    changes = medians[1:] / medians[:-1] - 1
    with_history, without_history = _rates(gate, nights, True), _rates(gate, nights, False)

    noise = NightNoise.from_medians(list(medians[:-1]))
    benchmark.pedantic(gate.judge_samples, args=(nights[-2], nights[-1], noise), rounds=5, iterations=1)

    report = {
        "comparisons": len(changes), "runs_per_night_median": int(np.median([n.size for n in nights])),
        "night_to_night_median_change_range": [round(float(changes.min()), 3), round(float(changes.max()), 3)],
        "night_to_night_sd_log": round(NightNoise.from_medians(list(medians)).sd_log_ratio, 4),
        "old_point_rule_false_alarms": int(np.sum(changes > 0.10)),
        "gate_with_history": with_history, "gate_without_history": without_history,
    }
    benchmark.extra_info.update(report)
    print("\nregression gate on real LiteRT timings:", report)
    assert with_history["false_alarms"] <= 2, report        # at most 10% of the comparisons
    assert with_history["detection_rate"]["100%"] >= DETECTED, report
