"""Speed of the per-layer trace (issue 14; pytest-benchmark, not part of the test suite):

    python3 -m pytest benchmarks/test_bench_trace.py --benchmark-only -s

MobileNet V2 at 160x160 (its artifacts from the harness's cache, as ``qat-harness run --models
mobilenet_v2 --input-size 160`` leaves them; built on a miss, which takes minutes), float vs QAT
int8 traced on 4 examples of its evaluation data on ``cpu`` and ``cpu-ref``, with the QAT Keras
stage (the QAT Keras model rebuilt in a child from the weights the build kept), and PTQ int8;
with local error (issue 21) where a device departs. Warm: the artifacts are cached and one
untimed trace runs first. Target: under 60 s on 2 cores."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.build.cache import ArtifactCache
from qat_harness.devices import registry
from qat_harness.preparation import DataOptions, prepare
from qat_harness.sources import parse_models
from qat_harness.trace import run_trace

TARGET_S = 60.0
EXAMPLES = 4


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench-trace")
    prepared = prepare(parse_models(["mobilenet_v2"])[0], DataOptions(), ArtifactCache(), tmp,
                       lambda msg: None, 160)
    x = prepared.data.x_eval
    x = np.asarray(x[:EXAMPLES] if x is not None and len(x) else
                   np.random.default_rng(0).uniform(-1, 1, (EXAMPLES, 160, 160, 3)), np.float32)
    return prepared.variants["float"], prepared.variants, x, prepared.qat_keras


@pytest.mark.parametrize("variant", ["qat_int8", "ptq_int8"])
def test_mobilenet_trace_speed(benchmark, mobilenet, variant, tmp_path):
    """With local error: at the ops around a departure (MobileNet V2 has more ops than
    ``local.LOCAL_ALL_OPS``), measured on each departing device; PTQ int8 is the real case where
    XNNPACK departs from the reference kernels at a finely scaled op."""
    float_path, variants, x, qat_keras = mobilenet
    int8_path = variants[variant]
    keras = qat_keras if variant == "qat_int8" else None
    devices = {name: registry.create(name) for name in ("cpu", "cpu-ref")}
    run_trace(float_path, int8_path, x, devices, tmp_path / "warm", qat_keras=keras)  # warm-up, untimed
    result = benchmark.pedantic(run_trace, args=(float_path, int8_path, x, devices, tmp_path / "timed"),
                                kwargs={"qat_keras": keras}, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.max
    runs = {k: (len(b.runs), len(b.attribution_runs)) for k, b in result.devices.items()}
    local_ops = {d: sorted(o.index for o in result.ops if d in o.local) for d in result.devices}
    c = result.culprit
    benchmark.extra_info.update({"seconds": seconds, "culprit": c.headline if c else None,
                                 "device_runs": runs, "local_ops": local_ops})
    print(f"\nMobileNet V2 160 {variant} trace on cpu + cpu-ref, QAT Keras stage {result.keras_stage}: "
          f"{seconds:.1f} s ({len(result.ops)} ops, {EXAMPLES} examples); culprit: "
          f"{c.headline + ' — ' + c.reason[:300] if c else None}; device runs (bisection, local/cumulative): "
          f"{runs}; local error measured at {local_ops}")
    assert seconds < TARGET_S
