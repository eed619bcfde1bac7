"""The Edge TPU adapter on real hardware: runs only where Coral's compiler, libedgetpu and an
Edge TPU are all present (skipped elsewhere, with probe()'s reason)."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.devices.base import BenchSettings
from qat_harness.devices.edgetpu import device as edgetpu
from qat_harness.devices.litert.cpu import CpuDevice

pytestmark = [pytest.mark.hardware, pytest.mark.device("edgetpu")]


@pytest.fixture
def real_tpu(monkeypatch):
    for name in ("QAT_EDGETPU_SIMULATOR", "QAT_EDGETPU_SIM_SCENARIO", "QAT_EDGETPU_SIM_UNMAPPABLE"):
        monkeypatch.delenv(name, raising=False)
    dev = edgetpu.EdgeTpuDevice()
    avail = dev.probe()
    if dev.simulated or not avail.available:
        pytest.skip(f"no Edge TPU hardware: {avail.reason}")
    return dev


def test_real_edge_tpu_compiles_runs_and_agrees_with_the_cpu(real_tpu, request, tmp_path):
    models = request.getfixturevalue("tiny_models")  # built only when hardware is present
    compiled, deleg = real_tpu.prepare(models["int8"], tmp_path)
    assert deleg.ops_total == 4 and deleg.ops_delegated >= 1
    assert deleg.details["compiler_simulated"] is False
    assert deleg.details["outcome"] in ("success", "partial")  # the parser read Coral's output
    x = np.random.default_rng(0).integers(-128, 128, (8, 8, 8, 1)).astype(np.int8)
    res = real_tpu.run(compiled, x)
    assert res.simulated is False
    cpu = CpuDevice().run(models["int8"], x)
    assert np.max(np.abs(res.outputs.astype(int) - cpu.outputs.astype(int))) <= 2
    bench = real_tpu.benchmark({"qat_int8": compiled}, x[:1],
                               BenchSettings(warmup_runs=1, min_runs=5, min_seconds=0, max_runs=5))
    assert bench.simulated is False and len(bench.times_ms["qat_int8"]) == 5
    assert bench.first_invoke_ms["qat_int8"] > 0
