"""The Edge TPU adapter end to end through the test suite's fake ``edgetpu_compiler``:
compile (full / partial / failures), simulated runs and benchmarks on the host CPU, and the
fake's fidelity to real compiler outputs. Real small int8 models, made on the spot.

The fake is always started with the interpreter running the tests (``write_launcher``), never
through its ``python3`` shebang."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from simulators.edgetpu.support import FAKE_COMPILER, REAL_OUTPUTS, tool_output, write_launcher

from qat_harness.devices import registry
from qat_harness.devices.base import BenchSettings, DeviceError
from qat_harness.devices.edgetpu import compiler as etc
from qat_harness.devices.edgetpu import device as edgetpu
from qat_harness.devices.litert.cpu import CpuDevice

ENV = ("QAT_EDGETPU_COMPILER", "QAT_EDGETPU_SIMULATOR", "QAT_EDGETPU_LIBRARY",
       "QAT_EDGETPU_SIM_SCENARIO", "QAT_EDGETPU_SIM_UNMAPPABLE")

pytestmark = [pytest.mark.simulated, pytest.mark.device("edgetpu")]


@pytest.fixture(scope="session")
def launcher(tmp_path_factory) -> Path:
    """The fake compiler, started with ``sys.executable``."""
    return write_launcher(tmp_path_factory.mktemp("edgetpu-bin"))


@pytest.fixture(autouse=True)
def fake_compiler(monkeypatch, launcher):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QAT_EDGETPU_COMPILER", str(launcher))


@pytest.fixture(scope="session")
def leaky_model(tmp_path_factory):
    """Conv2D -> LeakyReLU -> GAP -> Dense as full int8: LEAKY_RELU is not an Edge TPU op."""
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3),
        keras.layers.LeakyReLU(0.1),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    x = np.random.default_rng(1).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("leaky") / "leaky_int8.tflite"
    path.write_bytes(to_tflite(model, full_int8=True, calibration=x))
    return path


def int8_inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, 8, 8, 1), dtype=np.int64).astype(np.int8)


def fast_bench() -> BenchSettings:
    return BenchSettings(warmup_runs=0, min_runs=4, min_seconds=0.0, max_runs=4, timeout_s=120)


# --- compile -----------------------------------------------------------------------------

def test_fake_compiler_makes_the_adapter_simulated():
    dev = registry.create("edgetpu", device="usb:0")
    assert isinstance(dev, edgetpu.EdgeTpuDevice)
    assert dev.simulated and dev.compiler_simulated
    avail = dev.probe()
    assert avail.available and avail.reason.startswith("SIMULATED Edge TPU")
    info = dev.describe()
    assert info["simulated"] is True and info["kind"] == "usb" and info["device"] == "usb:0"
    assert "qat-harness simulator" in info["compiler_version"]
    assert info["runtime_version"].startswith("simulated")


def test_compiler_found_on_path(monkeypatch, launcher):
    monkeypatch.delenv("QAT_EDGETPU_COMPILER")
    monkeypatch.setenv("PATH", f"{launcher.parent}:/usr/bin:/bin")
    dev = edgetpu.EdgeTpuDevice()
    assert dev.compiler == str(launcher) and dev.simulated


def test_prepare_full_mapping(tiny_models, tmp_path):
    dev = edgetpu.EdgeTpuDevice()
    compiled, deleg = dev.prepare(tiny_models["int8"], tmp_path)
    assert compiled.name == "int8_edgetpu.tflite" and compiled.is_file()
    assert compiled.with_suffix(".log").is_file()
    assert (deleg.backend, deleg.ops_total, deleg.ops_delegated, deleg.fallback) == ("edgetpu", 4, 4, [])
    assert deleg.details["subgraphs"] == 1
    assert deleg.details["on_chip_memory"] > 0 and deleg.details["off_chip_memory"] == 0
    assert deleg.details["compiler_simulated"] is True
    assert "qat-harness simulator" in deleg.details["compiler_version"]


def test_prepare_partial_mapping_from_an_unsupported_op(leaky_model, tmp_path):
    _, deleg = edgetpu.EdgeTpuDevice().prepare(leaky_model, tmp_path)
    assert (deleg.ops_total, deleg.ops_delegated) == (5, 1)
    assert deleg.fallback == [("LEAKY_RELU", "Operation not supported"),
                              ("MEAN", "More than one subgraph is not supported"),
                              ("FULLY_CONNECTED", "More than one subgraph is not supported"),
                              ("SOFTMAX", "More than one subgraph is not supported")]


def test_prepare_partial_mapping_unspecified_limitation(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("QAT_EDGETPU_SIM_UNMAPPABLE", "FULLY_CONNECTED")
    _, deleg = edgetpu.EdgeTpuDevice().prepare(tiny_models["int8"], tmp_path)
    assert (deleg.ops_total, deleg.ops_delegated) == (4, 2)
    assert deleg.fallback[0] == ("FULLY_CONNECTED", "Operation is otherwise supported, but not "
                                                    "mapped due to some unspecified limitation")


def test_float_model_is_unsupported(tiny_models, tmp_path):
    with pytest.raises(DeviceError) as err:
        edgetpu.EdgeTpuDevice().prepare(tiny_models["float"], tmp_path)
    assert err.value.kind == "unsupported"
    assert err.value.reason.endswith("Model not quantized")


@pytest.mark.parametrize("scenario, kind, reason", [
    ("internal-error", "crash", "crashed on int8.tflite: Internal compiler error. Aborting!"),
    ("crash", "crash", "libc++abi: terminating with uncaught exception of type std::out_of_range"),
    ("large-activations", "unsupported", "Compilation failed due to large activation tensors in model."),
    ("dynamic-tensors", "unsupported", "Model failed in Tflite interpreter"),
    ("didnt-find-op", "unsupported", "Didn't find op for builtin opcode 'TRANSPOSE_CONV' version '4'"),
    ("failed-no-reason", "unsupported", "the compiler gave no reason"),
    ("compilation-timeout", "timeout", "Compilation timeout. This is usually caused by large activations."),
])
def test_compiler_failures(tiny_models, tmp_path, monkeypatch, scenario, kind, reason):
    monkeypatch.setenv("QAT_EDGETPU_SIM_SCENARIO", scenario)
    with pytest.raises(DeviceError) as err:
        edgetpu.EdgeTpuDevice().prepare(tiny_models["int8"], tmp_path)
    assert err.value.kind == kind and reason in err.value.reason


def test_corrupt_model(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DeviceError) as err:
        edgetpu.EdgeTpuDevice().prepare(bad, tmp_path)
    assert err.value.kind == "unsupported"
    assert "Model failed in Tflite interpreter" in err.value.reason


def test_compiler_timeout(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("QAT_EDGETPU_SIM_SCENARIO", "hang")
    dev = edgetpu.EdgeTpuDevice()
    dev.compile_timeout_s = 1.0
    with pytest.raises(DeviceError) as err:
        dev.prepare(tiny_models["int8"], tmp_path)
    assert err.value.kind == "timeout"


# --- the fake follows the real compiler's layout ---------------------------------------------

def shape(text: str) -> list[str]:
    """Lines with numbers, sizes, paths and the version blanked out: the report's layout."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"Edge TPU Compiler version .*", "Edge TPU Compiler version #", line)
        line = re.sub(r"\S+\.(tflite|log)", "<path>", line)
        line = re.sub(r"\d+(\.\d+)?(B|KiB|MiB)?", "#", line)
        out.append(line.rstrip())
    return out


def real_output(prefix: str) -> str:
    (path,) = REAL_OUTPUTS.glob(prefix + "*.txt")
    return tool_output(path)


def fake_output(launcher: Path, model: Path, outdir: Path, *flags: str,
                env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(launcher), *flags, "-o", str(outdir), str(model)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_fake_full_mapping_matches_a_real_16_0_run(tiny_models, tmp_path, launcher):
    proc = fake_output(launcher, tiny_models["int8"], tmp_path)  # without -s, as fixture 13 was
    assert proc.returncode == 0
    assert shape(proc.stdout) == shape(real_output("13_"))


def test_fake_full_mapping_table_matches_a_real_16_0_run(tiny_models, tmp_path, launcher):
    proc = fake_output(launcher, tiny_models["int8"], tmp_path, "-s")
    real = [line for line in real_output("26_").splitlines()  # drop what -d added
            if not line.startswith(("Searching for valid delegate", "Try to compile segment"))]
    assert shape(proc.stdout)[:18] == shape("\n".join(real))[:18]  # up to the first row
    row = re.compile(r"^[A-Z0-9_]+ +\d+ +Mapped to Edge TPU$")
    assert all(row.match(line) for line in real[18:])
    assert all(row.match(line) for line in proc.stdout.splitlines()[18:22])


def test_fake_partial_mapping_matches_a_real_run(leaky_model, tmp_path, launcher):
    proc = fake_output(launcher, leaky_model, tmp_path, "-s")
    # 15.0 (fixture 25) lacks 16.0's timer line; the summary, notice and table header agree
    assert shape(proc.stdout)[2:22] == shape(real_output("25_"))[1:21]
    assert proc.stdout.rstrip().endswith("Compilation succeeded!")


def test_fake_float_model_matches_a_real_rejection(tiny_models, tmp_path, launcher):
    proc = fake_output(launcher, tiny_models["float"], tmp_path, "-s")
    assert proc.returncode == 1
    assert shape(proc.stdout) == shape(real_output("11_"))


@pytest.mark.parametrize("scenario, prefix", [("internal-error", "10_"), ("crash", "16_"),
                                               ("large-activations", "14_"), ("dynamic-tensors", "15_"),
                                               ("didnt-find-op", "17_")])
def test_fake_replays_real_outputs(tiny_models, tmp_path, launcher, scenario, prefix):
    proc = fake_output(launcher, tiny_models["int8"], tmp_path, "-s",
                       env={"QAT_EDGETPU_SIM_SCENARIO": scenario})
    assert proc.returncode != 0
    version, rest = real_output(prefix).split("\n", 1)
    assert proc.stdout == f"{version} {etc.SIMULATOR_MARKER}\n{rest}"


# --- the fake runs on the tests' interpreter, whatever python3 PATH offers ---------------------

def test_simulated_flow_ignores_the_python3_on_path(tiny_models, tmp_path, monkeypatch):
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    decoy = decoy_dir / "python3"
    decoy.write_text("#!/bin/sh\nexit 1\n")
    decoy.chmod(0o755)
    others = [d for d in os.environ["PATH"].split(os.pathsep)
              if d and not (Path(d) / "python3").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join([str(decoy_dir), *others]))
    assert shutil.which("python3") == str(decoy)
    # the shebang route is broken here, which is the point of the test
    assert subprocess.run([str(FAKE_COMPILER), "--version"], capture_output=True).returncode == 1

    dev = edgetpu.EdgeTpuDevice()
    assert dev.simulated and dev.probe().available
    compiled, deleg = dev.prepare(tiny_models["int8"], tmp_path)
    assert (deleg.ops_total, deleg.ops_delegated) == (4, 4)
    assert dev.run(compiled, int8_inputs(2)).outputs.shape == (2, 3)


# --- simulated runs ----------------------------------------------------------------------

def test_simulated_run_matches_the_cpu_adapter(tiny_models, tmp_path):
    dev = edgetpu.EdgeTpuDevice()
    compiled, deleg = dev.prepare(tiny_models["int8"], tmp_path)
    x = int8_inputs(6)
    res = dev.run(compiled, x)
    cpu = CpuDevice().run(tiny_models["int8"], x)
    assert res.simulated is True
    assert res.outputs.dtype == np.int8 and res.outputs.shape == (6, 3)
    np.testing.assert_array_equal(res.outputs, cpu.outputs)
    assert res.delegation == deleg
    assert "SIMULATED" in res.details["executed_on"]


def test_simulated_run_uses_the_source_when_the_compiled_file_cannot_run(tiny_models, tmp_path):
    """A real compiled model holds an edgetpu-custom-op the CPU cannot run: the simulator
    executes the source model that prepare() compiled."""
    dev = edgetpu.EdgeTpuDevice()
    compiled, _ = dev.prepare(tiny_models["int8"], tmp_path)
    compiled.write_bytes(b"not a model any more")
    res = dev.run(compiled, int8_inputs(2))
    assert res.simulated and res.outputs.shape == (2, 3)


def test_simulated_benchmark_times_first_invoke_apart(tiny_models, tmp_path):
    dev = edgetpu.EdgeTpuDevice()
    compiled, deleg = dev.prepare(tiny_models["int8"], tmp_path)
    models = {"float": tiny_models["float"], "qat_int8": compiled}
    x = int8_inputs(1)
    sample = {"float": (x.astype(np.float32) + 128) / 255, "qat_int8": x}
    bench = dev.benchmark(models, sample, fast_bench())
    assert bench.simulated is True
    assert set(bench.times_ms) == set(models) == set(bench.first_invoke_ms)
    lengths = {len(t) for t in bench.times_ms.values()}
    assert len(lengths) == 1 and min(lengths) >= 4  # steady-state runs only, as many per model
    assert bench.details["blocks"]["timing"] == "abba-blocks"  # first runs of blocks kept apart
    assert all(v > 0 for v in bench.first_invoke_ms.values())
    assert bench.delegation == {"qat_int8": deleg}  # the float model was not compiled
    assert "simulated" in bench.details["first_invoke"]


def test_unknown_compiled_model_in_simulation_is_a_clear_error(tmp_path):
    bad = tmp_path / "x_edgetpu.tflite"
    bad.write_bytes(b"\x00" * 32)
    with pytest.raises(DeviceError) as err:
        edgetpu.EdgeTpuDevice().run(bad, int8_inputs(1))
    assert err.value.kind in ("failed", "unsupported")
    assert "\n" not in err.value.reason


def test_hardware_runtime_that_cannot_load_is_missing_tool(tiny_models, tmp_path, monkeypatch):
    """The real delegate path (not simulated) with a file that is no libedgetpu: LiteRT's
    load_delegate fails in the child and the adapter says what to install."""
    monkeypatch.delenv("QAT_EDGETPU_COMPILER")
    real = tmp_path / "bin" / "edgetpu_compiler"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\necho 'Edge TPU Compiler version 16.0.384591198'\n")
    real.chmod(0o755)
    lib = tmp_path / "libedgetpu.so.1"
    lib.write_bytes(b"not a shared library")
    monkeypatch.setenv("QAT_EDGETPU_LIBRARY", str(lib))
    dev = edgetpu.EdgeTpuDevice(device="usb:0", compiler=str(real))
    assert dev.simulated is False
    with pytest.raises(DeviceError) as err:
        dev.run(tiny_models["int8"], int8_inputs(1), timeout_s=60)
    assert err.value.kind == "missing-tool"
    assert "libedgetpu1-std" in err.value.reason

