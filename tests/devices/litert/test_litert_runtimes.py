"""The LiteRT devices load the runtime package they are told to (``--litert-runtime DIR``) and time
two runtimes against each other in one ABBA schedule (``benchmark_runtimes``): how the nightly
confirms that a new runtime is slower than last night's. The slower runtime here is a real copy
of the installed ai_edge_litert whose ``Interpreter.invoke`` spins 1 ms more."""
from __future__ import annotations

import shutil
import statistics

import pytest

from qat_harness.core.files import folder_digest
from qat_harness.devices.base import BenchSettings, DeviceError
from qat_harness.devices.litert import runtime
from qat_harness.devices.litert.compiled import LiteRTCompiledDevice
from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice

EXTRA_MS = 1.0
SLOWER = f'''

import time as _qat_time

_qat_invoke = Interpreter.invoke


def _qat_slower_invoke(self):
  _qat_invoke(self)
  until = _qat_time.perf_counter() + {EXTRA_MS / 1000}
  while _qat_time.perf_counter() < until:
    pass


Interpreter.invoke = _qat_slower_invoke
'''


@pytest.fixture(scope="module")
def slower_runtime(tmp_path_factory):
    """A folder holding a copy of the installed LiteRT package, its invoke 1 ms slower."""
    installed = runtime.installed()
    if installed is None or installed.module != "ai_edge_litert":
        pytest.skip("ai-edge-litert is not installed")
    root = tmp_path_factory.mktemp("slower-litert")
    shutil.copytree(installed.folder, root / installed.module, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / installed.module / "interpreter.py", "a") as f:
        f.write(SLOWER)
    return root


def _settings() -> BenchSettings:
    return BenchSettings(warmup_runs=3, min_runs=60, min_seconds=0.3, max_runs=400, num_threads=1)


def test_two_runtimes_are_timed_in_one_schedule_and_the_slower_one_shows(tiny_models, slower_runtime):
    model = tiny_models["float"]
    labels = {"previous:float": model, "tonight:float": model}
    device = CpuDevice(num_threads=1)
    result = device.benchmark_runtimes(labels, {"previous:float": None, "tonight:float": slower_runtime},
                                       {k: tiny_models["x"][:1] for k in labels}, _settings())
    blocks = result.details["blocks"]
    assert blocks["order"] == [["previous:float", "tonight:float"], ["tonight:float", "previous:float"]]
    assert blocks["rounds"] >= 10 and len(result.times_ms["tonight:float"]) == blocks["rounds"] * 9
    extra = statistics.median(result.times_ms["tonight:float"]) - statistics.median(result.times_ms["previous:float"])
    assert 0.8 * EXTRA_MS < extra < 3 * EXTRA_MS
    assert result.details["runtimes"] == {"previous:float": None, "tonight:float": str(slower_runtime)}


def test_a_device_told_another_runtime_loads_it_and_says_which(tiny_models, slower_runtime):
    device = CpuRefDevice(litert_runtime=str(slower_runtime))
    described = device.describe()
    assert described["runtime_path"] == str((slower_runtime / "ai_edge_litert").resolve())
    assert described["runtime_digest"] == folder_digest(slower_runtime / "ai_edge_litert")
    assert described["runtime_digest"] != CpuRefDevice().describe()["runtime_digest"]
    timed = device.benchmark({"int8": tiny_models["float"]}, tiny_models["x"][:1], _settings())
    assert statistics.median(timed.times_ms["int8"]) > 0.8 * EXTRA_MS
    installed = CpuRefDevice().run(tiny_models["float"], tiny_models["x"])
    assert (device.run(tiny_models["float"], tiny_models["x"]).outputs == installed.outputs).all()


def test_compiled_model_times_two_runtimes_too(tiny_models, slower_runtime):
    model = tiny_models["float"]
    labels = {"previous:float": model, "tonight:float": model}
    result = LiteRTCompiledDevice(num_threads=1).benchmark_runtimes(
        labels, {"previous:float": slower_runtime, "tonight:float": None},
        {k: tiny_models["x"][:1] for k in labels}, _settings())
    # the slower copy only slows the Interpreter: CompiledModel is as fast under both
    previous, tonight = (statistics.median(result.times_ms[k]) for k in labels)
    assert abs(previous - tonight) < 0.5 * EXTRA_MS


@pytest.mark.parametrize("folder, said", [
    ("missing", "is not a folder"), ("empty", "holds no ai_edge_litert or tflite_runtime package")])
def test_a_runtime_folder_that_holds_no_runtime_is_one_line_and_the_device_unavailable(tmp_path, tiny_models,
                                                                                      folder, said):
    (tmp_path / "empty").mkdir()
    device = CpuDevice(litert_runtime=str(tmp_path / folder))
    availability = device.probe()
    assert not availability.available and said in availability.reason and "\n" not in availability.reason
    with pytest.raises(DeviceError, match=said):
        device.run(tiny_models["float"], tiny_models["x"])


def test_a_kept_runtime_that_fails_to_import_is_a_device_error_saying_why(tiny_models, tmp_path):
    decoy = tmp_path / "decoy" / "ai_edge_litert"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('__version__ = "0"\nraise ImportError("the decoy was imported")\n')
    labels = {"a": tiny_models["float"], "b": tiny_models["float"]}
    with pytest.raises(DeviceError, match="the decoy was imported"):
        CpuDevice(num_threads=1).benchmark_runtimes(labels, {"a": tmp_path / "decoy", "b": None},
                                                    {k: tiny_models["x"][:1] for k in labels}, _settings())
