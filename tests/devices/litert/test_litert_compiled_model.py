"""``litert``: LiteRT's CompiledModel API on its CPU accelerator computes, on int8 models, exactly
what ``cpu`` (the Interpreter with XNNPACK) computes, and is timed on the harness's schedule."""
from pathlib import Path

import numpy as np
import pytest

from qat_harness.core.tflite import inspect_model
from qat_harness.devices import registry
from qat_harness.devices.base import BenchSettings, Role
from qat_harness.devices.litert.compiled import LiteRTCompiledDevice
from qat_harness.devices.litert.cpu import CpuDevice

REAL = Path(__file__).parents[2] / "fixtures" / "real_models"


def _int8_inputs(model: Path, n: int, seed: int = 0) -> np.ndarray:
    info = inspect_model(model)
    shape = info.tensor(info.inputs[0]).shape
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape[1:]), dtype=np.int8)


def test_compiled_model_on_the_cpu_computes_what_the_interpreter_computes():
    """Measured: identical outputs on this file, mltk_image_example1 and digits_cnn's QAT int8
    (360 inputs)."""
    model = REAL / "mltk_image_example1.tflite"
    x = _int8_inputs(model, 16)
    interpreter = CpuDevice().run(model, x)
    compiled = LiteRTCompiledDevice().run(model, x)
    assert compiled.outputs.dtype == np.int8
    assert compiled.outputs.shape == interpreter.outputs.shape
    np.testing.assert_array_equal(compiled.outputs, interpreter.outputs)


def test_timed_in_abba_blocks_like_cpu():
    model = REAL / "mltk_micro_speech.tflite"
    x = _int8_inputs(model, 1)
    settings = BenchSettings(warmup_runs=1, min_runs=4, min_seconds=0.0, max_runs=40, num_threads=1)
    bench = LiteRTCompiledDevice(num_threads=1).benchmark({"a": model, "b": model}, {"a": x, "b": x}, settings)
    assert set(bench.times_ms) == {"a", "b"}
    assert all(len(t) >= 4 and min(t) > 0 for t in bench.times_ms.values())
    assert bench.details["blocks"]["timing"] == "abba-blocks"
    assert set(bench.first_invoke_ms) == {"a", "b"}


def test_a_wrong_input_dtype_is_a_one_line_error():
    from qat_harness.devices.base import DeviceError

    model = REAL / "mltk_micro_speech.tflite"
    with pytest.raises(DeviceError, match="takes int8, got float32"):
        LiteRTCompiledDevice().run(model, np.zeros((1, 49, 40, 1), np.float32))


def test_declared_as_the_host_cpu_with_xnnpack_kernels():
    added = "litert" not in registry.names()  # before pyproject registers it
    if added:
        registry.register(LiteRTCompiledDevice)
    try:
        device = registry.create("litert")
        assert device.role is Role.HOST_CPU and device.runs_on_host and device.kernel == "xnnpack"
        availability = device.probe()
        assert availability.available, availability.reason
        assert "CompiledModel" in availability.reason
        assert device.describe()["api"] == "CompiledModel"
    finally:
        if added:
            registry.unregister("litert")
