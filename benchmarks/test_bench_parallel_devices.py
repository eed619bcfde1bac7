"""Devices at once (issue 23): a run over 4 simulated phones, each taking a known time per call
(0.2, 0.3, 0.4 and 0.5 s; a model is 3 calls: run float, run int8, time both), with the phones
beside each other and one after another. Beside each other, the run should take about the
slowest phone's time plus the host's own work, not the sum.

    python3 -m pytest benchmarks/test_bench_parallel_devices.py --benchmark-only -s
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qat_harness import pipeline
from qat_harness.devices.base import BenchSettings
from qat_harness.options import RunOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from simulated_lab import LabOracle, LabPhone, Spans, lab, plain_html_pages  # noqa: E402

SECONDS = (0.2, 0.3, 0.4, 0.5)
CALLS_PER_MODEL = 3


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    folder = tmp_path_factory.mktemp("pair")
    (folder / "float.tflite").write_bytes(to_tflite(model, full_int8=False))
    (folder / "int8.tflite").write_bytes(to_tflite(model, full_int8=True, calibration=x))
    return f"{folder / 'int8.tflite'}={folder / 'float.tflite'}"


@pytest.mark.parametrize("apart", [True, False], ids=["at-once", "one-after-another"])
def test_four_phones(benchmark, tmp_path, tiny_pair, apart):
    runs = iter(range(100))

    def one_run():
        spans = Spans()
        phones = [LabPhone(f"phone-{i}", spans, seconds=s, apart=apart) for i, s in enumerate(SECONDS)]
        devices = [*phones, LabOracle("oracle", spans)]
        opts = RunOptions(models=[tiny_pair], devices=[d.name for d in devices], out=tmp_path / str(next(runs)),
                          check_bit_widths=False, trace=False, eval_limit=16, oracle_limit=8,
                          bench=BenchSettings(warmup_runs=0, min_runs=6, min_seconds=0.0))
        with plain_html_pages():
            return pipeline.run(opts, devices=lab(devices))

    report = benchmark.pedantic(one_run, rounds=3, iterations=1, warmup_rounds=1)
    assert report.run.status.value == "complete"
    phones = CALLS_PER_MODEL * np.array(SECONDS)
    benchmark.extra_info.update(slowest_phone_s=float(phones.max()), sum_of_phones_s=float(phones.sum()))
    print(f"\n{'at once' if apart else 'one after another'}: median {benchmark.stats.stats.median:.2f} s "
          f"(slowest phone {phones.max():.1f} s, sum of phones {phones.sum():.1f} s)")
