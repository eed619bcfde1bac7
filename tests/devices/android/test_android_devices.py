"""The three Android devices (nnapi, android-gpu, android-cpu) end to end against the fake adb
server and phone (tests/simulators/fake_adb.py): what each declares, probe and description,
runs that agree with the host CPU, benchmarks, delegation accounting from every signal, a
phone that disappears mid-run, and cleanup of the remote folder."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from simulators.fake_adb import FakeAdbServer, FakeDevice

from qat_harness import claims
from qat_harness.core.errors import UsageError
from qat_harness.core.timing import TimingProtocol
from qat_harness.devices import registry
from qat_harness.devices.android import benchmark_output as bmo
from qat_harness.devices.android.cpu import AndroidCpuDevice
from qat_harness.devices.android.delegation import GPU, NNAPI, XNNPACK, account
from qat_harness.devices.android.gpu import AndroidGpuDevice
from qat_harness.devices.android.model_info import ModelInfo, TensorInfo
from qat_harness.devices.android.nnapi import NnapiDevice
from qat_harness.devices.android.phone import parse_cpuinfo
from qat_harness.devices.base import BenchSettings, DeviceError, Role
from qat_harness.devices.litert.cpu import CpuDevice

pytest_plugins = ["simulators.android_fixtures"]
pytestmark = pytest.mark.simulated

# device class, its delegate flag, the delegate kernel's node type, Delegation.backend
BACKENDS = {
    "nnapi": (NnapiDevice, "--use_nnapi=true", "TfLiteNnapiDelegate", "nnapi"),
    "android-gpu": (AndroidGpuDevice, "--use_gpu=true", "TfLiteGpuDelegateV2", "gpu"),
    "android-cpu": (AndroidCpuDevice, "--use_xnnpack=true", "TfLiteXNNPackDelegate", "xnnpack"),
}
ALL_DELEGATE_FLAGS = {"--use_nnapi=true", "--use_gpu=true", "--use_xnnpack=true"}
TINY_OPS = ["CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]


@pytest.fixture(scope="module")
def int8_inputs(tiny_models) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from qat_harness.core.tflite import quantize_input
    scale, zero_point = Interpreter(str(tiny_models["int8"])).get_input_details()[0]["quantization"]
    return quantize_input(tiny_models["x"], scale, zero_point)


def device(backend: str, server: FakeAdbServer, binary: Path, **options):
    cls = BACKENDS[backend][0]
    return cls(env={"ADB_SERVER_SOCKET": server.socket_spec, "QAT_BENCHMARK_MODEL": str(binary)}, **options)


def invocations(fake: FakeDevice, since: int = 0) -> list[str]:
    return [c for c in fake.commands[since:] if "benchmark_model --graph" in c]


# --- what each device declares -------------------------------------------------------------------

def test_declarations_roles_and_shared_options():
    assert (NnapiDevice.role, AndroidGpuDevice.role, AndroidCpuDevice.role) == (
        Role.ACCELERATOR, Role.ACCELERATOR, Role.HOST_CPU)
    assert claims.latency_claim(AndroidCpuDevice.role) is claims.CpuLatency
    assert claims.latency_claim(NnapiDevice.role) is claims.AcceleratorLatency
    options = {name: {o.name: o for o in cls.options} for name, (cls, *_rest) in BACKENDS.items()}
    for shared in ("serial", "benchmark_model", "bench_invocations", "run_batch"):
        assert options["nnapi"][shared] == options["android-gpu"][shared] == options["android-cpu"][shared]
    assert (options["nnapi"]["serial"].flag, options["nnapi"]["serial"].env) == ("--serial", "ANDROID_SERIAL")
    assert (options["nnapi"]["benchmark_model"].flag, options["nnapi"]["benchmark_model"].env) == (
        "--benchmark-model", "QAT_BENCHMARK_MODEL")
    assert set(options["nnapi"]) - set(options["android-cpu"]) == {"accelerator"}
    assert set(options["android-gpu"]) == set(options["android-cpu"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_registry_builds_each_device_and_refuses_foreign_options(backend, phone, binary, monkeypatch):
    monkeypatch.setenv("ADB_SERVER_SOCKET", phone.socket_spec)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    dev = registry.create(backend, num_threads=3, serial="QATSIM0001", benchmark_model=str(binary))
    assert isinstance(dev, BACKENDS[backend][0]) and dev.num_threads == 3
    assert dev.probe().available
    if backend != "nnapi":
        with pytest.raises(UsageError, match="has no option accelerator"):
            registry.create(backend, accelerator="sim-npu")


# --- probe and describe ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_and_describe_the_phone(backend, phone, binary):
    dev = device(backend, phone, binary)
    avail = dev.probe()
    assert avail.available, avail.reason
    assert "QAT Simulated Phone (QATSIM0001)" in avail.reason and "[simulated by the test suite]" in avail.reason
    d = dev.describe()
    assert d["simulated"] is True and d["delegate"] == BACKENDS[backend][3]
    assert BACKENDS[backend][1] in d["delegate_flags"]
    assert (d["soc_model"], d["android_release"], d["api_level"], d["abi"]) == ("SIM8000", "14", 34, "arm64-v8a")
    assert d["cpu_cores"] == 8 and d["cpu_parts"] == ["0xd05", "0xd0d"]
    assert "asimddp" in d["cpu_features"] and d["int8_cpu_features"] == {"asimddp": True, "i8mm": False}
    if backend == "android-gpu":
        assert any("dequantized" in w for w in d["warnings"])
    else:
        assert d["warnings"] == []


def test_cpu_without_int8_dot_product_is_warned_about(fake_adb, binary):
    old_cores = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\nCPU part\t: 0xd03\n"
    d = device("android-cpu", fake_adb(FakeDevice(cpuinfo=old_cores)), binary).describe()
    assert d["int8_cpu_features"] == {"asimddp": False, "i8mm": False}
    assert len(d["warnings"]) == 1 and "asimddp" in d["warnings"][0] and "no faster" in d["warnings"][0]
    unreadable = device("android-cpu", fake_adb(FakeDevice(cpuinfo="")), binary).describe()
    assert unreadable["cpu_features"] is None and "CPU features unknown" in unreadable["warnings"][0]


def test_parse_cpuinfo_reads_features_of_every_core():
    info = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd\n\nprocessor\t: 1\nFeatures\t: fp asimd asimddp i8mm\n")
    assert info.cores == 2 and info.int8_features == {"asimddp": True, "i8mm": True}
    assert parse_cpuinfo("garbage") is None


# --- running ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_run_agrees_with_the_host_cpu_and_cleans_up(backend, phone, binary, tiny_models, int8_inputs):
    _cls, flag, _kernel, backend_name = BACKENDS[backend]
    fake = phone.devices[0]
    dev = device(backend, phone, binary, run_batch=2)
    before = len(fake.commands)
    res = dev.run(tiny_models["int8"], int8_inputs[:3], timeout_s=120)
    assert np.array_equal(res.outputs, CpuDevice().run(tiny_models["int8"], int8_inputs[:3]).outputs)
    assert res.simulated is True and res.details["invocations"] == 3
    runs = invocations(fake, before)
    assert len(runs) == 2  # 2 + 1 examples, chained per adb shell command
    assert all(flag in c and not (ALL_DELEGATE_FLAGS - {flag}) & set(c.split()) for c in runs)
    deleg = res.delegation
    assert (deleg.backend, deleg.ops_total, deleg.ops_delegated, deleg.fraction) == (backend_name, 4, 4, 1.0)
    assert deleg.details["status"] == "full" and deleg.details["source"] == "replacing-line"
    assert deleg.details["simulated"] is True
    if backend == "android-gpu":
        assert "dequantized" in deleg.details["int8_execution"]
    assert fake.files() == [f"{dev.remote_dir}/benchmark_model"]  # the run's own folder is gone
    dev.close()
    assert fake.files() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_benchmark_interleaves_and_says_samples_are_invocation_averages(backend, phone, binary, tiny_models,
                                                                        int8_inputs):
    fake = phone.devices[0]
    dev = device(backend, phone, binary, bench_invocations=2)
    before = len(fake.commands)
    bench = dev.benchmark({"float": tiny_models["float"], "qat_int8": tiny_models["int8"]},
                          {"float": tiny_models["x"][:1], "qat_int8": int8_inputs[:1]},
                          BenchSettings(warmup_runs=1, min_runs=4, min_seconds=0.0, timeout_s=120))
    assert bench.simulated is True and bench.protocol is TimingProtocol.INVOCATION_MEANS
    assert {k: len(v) for k, v in bench.times_ms.items()} == {"float": 2, "qat_int8": 2}
    assert all(t > 0 for v in bench.times_ms.values() for t in v)
    assert bench.details["per_run_times"] is False and "never per-run times" in bench.details["method"]
    per = bench.details["per_invocation_us"]["qat_int8"]
    assert [p["avg_us"] / 1000 for p in per] == pytest.approx(bench.times_ms["qat_int8"])
    assert bench.delegation["qat_int8"].ops_delegated == 4
    assert bench.delegation["qat_int8"].backend == BACKENDS[backend][3]
    graphs = [Path(g).name for c in invocations(fake, before) for g in re.findall(r"--graph=(\S+)", c)]
    assert graphs == ["m0.tflite", "m1.tflite"] * 3  # profiling pass, then a, b, a, b
    assert fake.files() == [f"{dev.remote_dir}/benchmark_model"]
    dev.close()
    assert fake.files() == []


# --- delegation from every signal -----------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_delegation_without_a_replacing_line_comes_from_the_op_profile(backend, fake_adb, binary,
                                                                               tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(delegate_nodes=2, replacing_line=False))
    dev = device(backend, server, binary)
    deleg = dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=120).delegation
    assert (deleg.ops_total, deleg.ops_delegated, deleg.fraction) == (4, 2, 0.5)
    assert deleg.details["source"] == "op-profile" and deleg.details["status"] == "partial"
    assert deleg.details["tool_says"] == "partial"
    assert [op for op, _ in deleg.fallback] == ["FULLY_CONNECTED", "SOFTMAX"]
    dev.close()


def tiny_info() -> ModelInfo:
    t = TensorInfo("x", (1, 8, 8, 1), np.dtype(np.int8))
    return ModelInfo((t,), (TensorInfo("y", (1, 3), np.dtype(np.int8)),), tuple(TINY_OPS))


@pytest.mark.parametrize("kind", [NNAPI, GPU, XNNPACK], ids=lambda k: k.backend)
def test_full_delegation_text_without_counts_means_every_operator(kind):
    parsed = bmo.parse(f"INFO: Explicitly applied {kind.provider} delegate, and the model graph will be "
                       "completely executed by the delegate.\n")
    deleg = account(kind, parsed, tiny_info(), "unused")
    assert (deleg.ops_total, deleg.ops_delegated, deleg.fraction) == (4, 4, 1.0)
    assert deleg.details["status"] == "full" and deleg.details["source"] == "provider-line"
    assert deleg.fallback == []


def test_other_provider_signals_and_silence():
    partial = account(NNAPI, bmo.parse("Explicitly applied NNAPI delegate, and the model graph will be partially "
                                       "executed by the delegate w/ 2 delegate kernels.\n"), tiny_info(), "unused")
    assert partial.ops_delegated is None and partial.details["status"] == "partial"
    assert partial.details["delegate_kernels"] == 2 and partial.fallback[0][0] == "unknown"
    none = account(GPU, bmo.parse("Though GPU delegate is explicitly applied, the model graph will not be executed "
                                  "by the delegate.\n"), tiny_info(), "no GPU support for these ops")
    assert (none.ops_delegated, none.fraction, none.details["status"]) == (0, 0.0, "none")
    assert none.fallback == [(op, "no GPU support for these ops") for op in TINY_OPS]
    silent = account(XNNPACK, bmo.parse("INFO: Inference timings in us: Init: 1, First inference: 2, "
                                        "Warmup (avg): 2, Inference (avg): 3\n"), tiny_info(), "unused")
    assert silent.ops_delegated is None and silent.fraction is None and silent.details["status"] == "unknown"
    # another delegate's Replacing line says nothing about this one
    other = account(GPU, bmo.parse("Replacing 4 out of 4 node(s) with delegate (TfLiteXNNPackDelegate) node, "
                                   "yielding 1 partitions.\n"), tiny_info(), "unused")
    assert other.ops_delegated is None


# --- faults and cleanup ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_phone_disappearing_mid_run_is_a_one_line_offline_error(backend, fake_adb, binary, tiny_models,
                                                                int8_inputs):
    server = fake_adb(FakeDevice(offline_after=5))  # getprop, 2 pushes, chmod, inputs; then the run
    dev = device(backend, server, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:2], timeout_s=60)
    assert exc.value.kind == "offline" and "\n" not in exc.value.reason
    assert "QATSIM0001 went offline during the run" in exc.value.reason
    dev.close()  # the phone is gone: close() must not raise


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_run_removes_its_folder_and_close_removes_the_session(backend, fake_adb, binary, tiny_models,
                                                                     int8_inputs):
    server = fake_adb(FakeDevice(noexec=True))
    fake = server.devices[0]
    dev = device(backend, server, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    assert exc.value.kind == "failed" and "permission denied" in exc.value.reason
    assert fake.files() == [f"{dev.remote_dir}/benchmark_model"]
    dev.close()
    assert fake.files() == [] and any(c == f"rm -rf {dev.remote_dir}" for c in fake.commands)
