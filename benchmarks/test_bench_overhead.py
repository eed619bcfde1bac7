"""Benchmarks of the harness's own overhead (pytest-benchmark; not part of the test suite).

    python3 -m pytest benchmarks/ --benchmark-only [--benchmark-autosave]
    python3 -m pytest benchmarks/ --benchmark-only --benchmark-compare --benchmark-compare-fail=median:10%

What they tell: the fixed cost of one isolated model execution (a child Python process that
imports LiteRT), which bounds how finely the harness can split work into child processes, and
the per-invoke cost of the CPU adapter on a tiny model against the null device."""
import numpy as np
import pytest

from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice, NullDevice


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory):
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("bench") / "int8.tflite"
    path.write_bytes(to_tflite(model, True, x))
    return path


def test_isolated_run_overhead(benchmark, tiny_int8):
    """One model execution in a child process, end to end."""
    x = np.zeros((1, 8, 8, 1), np.int8)
    out = benchmark.pedantic(CpuDevice().run, args=(tiny_int8, x), rounds=5, iterations=1)
    assert out.outputs.shape == (1, 3)


def test_null_device_overhead(benchmark):
    settings = BenchSettings(min_runs=100)
    res = benchmark(NullDevice().benchmark, {"a": None}, np.zeros((1, 224, 224, 3), np.float32), settings)
    assert len(res.times_ms["a"]) == 100
