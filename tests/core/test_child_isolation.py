"""A runtime that crashes or hangs becomes a DeviceError with its signal or timeout; the
harness process survives."""
import os
import textwrap

import numpy as np
import pytest

from qat_harness.core.child import run_child
from qat_harness.devices.base import BenchSettings, DeviceError
from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice


@pytest.fixture
def misbehaving_module(tmp_path, monkeypatch):
    """A child module that aborts, hangs or fails depending on its request."""
    (tmp_path / "qat_misbehave.py").write_text(textwrap.dedent("""
        import json, os, sys, time
        req = json.load(open(sys.argv[1]))
        if req["do"] == "abort":
            os.abort()
        if req["do"] == "hang":
            time.sleep(600)
        if req["do"] == "exit":
            sys.exit(7)
        json.dump({"ok": 1}, open(sys.argv[2], "w"))
    """))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return "qat_misbehave"


def test_abort_becomes_crash_error(misbehaving_module):
    with pytest.raises(DeviceError) as exc:
        run_child(misbehaving_module, {"do": "abort"}, timeout_s=60)
    assert exc.value.kind == "crash" and "SIGABRT" in exc.value.reason


def test_hang_becomes_timeout_error(misbehaving_module):
    with pytest.raises(DeviceError) as exc:
        run_child(misbehaving_module, {"do": "hang"}, timeout_s=2)
    assert exc.value.kind == "timeout"


def test_exit_without_result_is_failed(misbehaving_module):
    with pytest.raises(DeviceError) as exc:
        run_child(misbehaving_module, {"do": "exit"}, timeout_s=60)
    assert exc.value.kind == "failed" and "code 7" in exc.value.reason


def test_good_child_returns_response(misbehaving_module):
    assert run_child(misbehaving_module, {"do": "ok"}, timeout_s=60) == {"ok": 1}


def test_corrupt_model_is_a_device_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + os.urandom(256))
    with pytest.raises(DeviceError):
        CpuDevice().run(bad, np.zeros((1, 8, 8, 1), np.float32), timeout_s=60)


def test_cpu_and_reference_kernels_agree_on_tiny_int8_model(tiny_models):
    from qat_harness.core.tflite import quantize_input
    x = quantize_input(tiny_models["x"], 1 / 255, -128)
    fast = CpuDevice().run(tiny_models["int8"], x).outputs
    ref = CpuRefDevice().run(tiny_models["int8"], x).outputs
    assert fast.dtype == np.int8 and fast.shape == (16, 3)
    assert np.abs(fast.astype(int) - ref.astype(int)).max() <= 1


def test_benchmark_is_interleaved_and_keeps_raw_times(tiny_models):
    settings = BenchSettings(warmup_runs=1, min_runs=7, min_seconds=0.0)
    sample = {"float": tiny_models["x"][:1],
              "int8": np.zeros((1, 8, 8, 1), np.int8)}
    res = CpuDevice().benchmark({"float": tiny_models["float"], "int8": tiny_models["int8"]},
                                sample, settings)
    assert len(res.times_ms["float"]) == len(res.times_ms["int8"]) >= 7
    assert all(t > 0 for t in res.times_ms["int8"])
    assert set(res.first_invoke_ms) == {"float", "int8"}
