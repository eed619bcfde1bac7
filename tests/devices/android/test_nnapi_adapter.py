"""The nnapi adapter end to end against the test suite's fake adb server and phones
(tests/simulators/fake_adb.py): discovery, description, runs that agree with the CPU adapter,
benchmarks, delegation reporting, every fault, cleanup, and the simulated flag."""
from __future__ import annotations

import re
import socket
import stat
from pathlib import Path

import numpy as np
import pytest
from simulators.fake_adb import FakeAdbServer, FakeDevice, write_fake_benchmark_model

from qat_harness.core.errors import UsageError
from qat_harness.devices import registry
from qat_harness.devices.android.nnapi import NnapiDevice, api_warnings
from qat_harness.devices.base import BenchSettings, DeviceError
from qat_harness.devices.litert.cpu import CpuDevice

pytest_plugins = ["simulators.android_fixtures"]
pytestmark = pytest.mark.simulated


# --- fixtures ------------------------------------------------------------------------------

def adapter(server: FakeAdbServer | None, binary: Path | None, **options) -> NnapiDevice:
    env = dict(options.pop("env", {}))
    if server is not None:
        env.setdefault("ADB_SERVER_SOCKET", server.socket_spec)
    if binary is not None:
        env.setdefault("QAT_BENCHMARK_MODEL", str(binary))
    return NnapiDevice(env=env, **options)


@pytest.fixture(scope="module")
def int8_inputs(tiny_models) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from qat_harness.core.tflite import quantize_input
    scale, zero_point = Interpreter(str(tiny_models["int8"])).get_input_details()[0]["quantization"]
    return quantize_input(tiny_models["x"], scale, zero_point)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def graphs_run(device: FakeDevice, since: int = 0) -> list[str]:
    """The --graph of every benchmark_model invocation the fake phone received, in order."""
    return [g for c in device.commands[since:] for g in re.findall(r"--graph=(\S+)", c)]


# --- finding the phone -----------------------------------------------------------------------

def test_no_adb_server_says_what_is_missing_and_starts_none(tmp_path, monkeypatch, binary):
    marker = tmp_path / "started"
    fake_adb_exe = tmp_path / "adb"
    fake_adb_exe.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake_adb_exe.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(fake_adb_exe))  # what adbutils would launch
    port = closed_port()
    dev = adapter(None, binary, env={"ADB_SERVER_SOCKET": f"tcp:127.0.0.1:{port}"})
    avail = dev.probe()
    assert not avail.available
    assert f"no adb server reachable at 127.0.0.1:{port} (ADB_SERVER_SOCKET)" in avail.reason
    assert "apt install adb" in avail.reason and "platform-tools" in avail.reason
    with pytest.raises(DeviceError) as exc:
        dev.run(Path("unused.tflite"), np.zeros((1, 1), np.int8))
    assert exc.value.kind == "offline"
    assert dev.describe()["available"] is False
    assert not marker.exists(), "the adapter must never start an adb server"


def test_bad_server_socket_spec_is_a_clear_error(binary):
    dev = adapter(None, binary, env={"ADB_SERVER_SOCKET": "localfilesystem:/tmp/adb.sock"})
    avail = dev.probe()
    assert not avail.available and "only tcp:HOST:PORT" in avail.reason
    with pytest.raises(DeviceError, match="only tcp:HOST:PORT"):  # not an AttributeError on the missing transport
        dev.phone.properties()


def test_one_phone_probe_describe_and_simulated_flag(phone, binary):
    dev = adapter(phone, binary)
    avail = dev.probe()
    assert avail.available, avail.reason
    assert "QAT Simulated Phone (QATSIM0001)" in avail.reason and "API 34" in avail.reason
    assert dev.simulated is True  # from the qat_harness.simulator property
    d = dev.describe()
    assert d["simulated"] is True and d["serial"] == "QATSIM0001"
    assert (d["model"], d["soc_model"], d["board_platform"], d["hardware"]) == (
        "QAT Simulated Phone", "SIM8000", "simboard", "qatsim")
    assert (d["android_release"], d["api_level"], d["abi"]) == ("14", 34, "arm64-v8a")
    assert d["nnapi_accelerators"] == ["sim-npu"]  # the HAL services; nnapi-reference is no HAL
    assert d["warnings"] == []
    assert d["adb_server"] == f"127.0.0.1:{phone.port}" and d["adb_server_source"] == "ADB_SERVER_SOCKET"


def test_adb_server_port_variable_is_honoured(phone, binary):
    dev = adapter(None, binary, env={"ANDROID_ADB_SERVER_PORT": str(phone.port)})
    assert dev.probe().available
    assert dev.describe()["adb_server_source"] == "ANDROID_ADB_SERVER_PORT"


def test_several_phones_need_a_choice(fake_adb, binary):
    server = fake_adb(FakeDevice("PHONE_A"), FakeDevice("PHONE_B", state="unauthorized"))
    avail = adapter(server, binary).probe()
    assert not avail.available
    assert "2 devices attached" in avail.reason
    assert "PHONE_A (device)" in avail.reason and "PHONE_B (unauthorized)" in avail.reason
    assert "ANDROID_SERIAL" in avail.reason

    chosen = adapter(server, binary, env={"ANDROID_SERIAL": "PHONE_A"})
    assert chosen.probe().available and chosen.serial == "PHONE_A"
    assert adapter(server, binary, serial="PHONE_A").probe().available

    unauthorized = adapter(server, binary, env={"ANDROID_SERIAL": "PHONE_B"}).probe()
    assert not unauthorized.available and "unauthorized" in unauthorized.reason
    assert "Allow USB debugging" in unauthorized.reason

    missing = adapter(server, binary, serial="PHONE_C").probe()
    assert not missing.available
    assert "PHONE_C (from the serial option) is not attached" in missing.reason
    assert "PHONE_A (device)" in missing.reason


def test_no_phone_and_offline_phone(fake_adb, binary):
    none = adapter(fake_adb(), binary).probe()
    assert not none.available and "no Android device attached" in none.reason
    offline = adapter(fake_adb(FakeDevice(state="offline")), binary).probe()
    assert not offline.available and "is offline" in offline.reason


def test_benchmark_model_not_configured_or_wrong_abi(phone, binary, tmp_path):
    dev = adapter(phone, None)
    avail = dev.probe()
    assert not avail.available and avail.details["kind"] == "missing-tool"
    assert "QAT_BENCHMARK_MODEL" in avail.reason and "ai.google.dev/edge/litert" in avail.reason
    assert "never downloads" in avail.reason
    with pytest.raises(DeviceError) as exc:
        dev.run(Path("unused.tflite"), np.zeros((1, 1), np.int8))
    assert exc.value.kind == "missing-tool"

    absent = adapter(phone, tmp_path / "nope" / "benchmark_model").probe()
    assert not absent.available and "does not exist" in absent.reason

    x86 = write_fake_benchmark_model(tmp_path / "benchmark_model", machine=62)
    wrong = adapter(phone, x86).probe()
    assert not wrong.available and "built for x86-64" in wrong.reason and "arm64-v8a" in wrong.reason


def test_registry_builds_the_adapter_from_options(phone, binary, monkeypatch):
    monkeypatch.setenv("ADB_SERVER_SOCKET", phone.socket_spec)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("QAT_BENCHMARK_MODEL", raising=False)
    dev = registry.create("nnapi", serial="QATSIM0001", benchmark_model=str(binary), accelerator="sim-npu",
                          num_threads=3)
    assert isinstance(dev, NnapiDevice)
    assert (dev.requested_serial, dev.benchmark_model, dev.accelerator, dev.num_threads) == (
        "QATSIM0001", str(binary), "sim-npu", 3)
    assert dev.probe().available
    assert "nnapi" in registry.names() and "benchmark_model" in registry.entries()["nnapi"].description
    with pytest.raises(UsageError, match="has no option device"):
        registry.create("nnapi", device="an edgetpu option")


# --- API levels --------------------------------------------------------------------------------

def test_api_level_warnings():
    assert api_warnings(34) == []
    old = " ".join(api_warnings(28))
    assert "per-channel" in old and "signed int8" in old
    assert "signed int8" in " ".join(api_warnings(29)) and "per-channel" not in " ".join(api_warnings(29))
    assert "deprecated from Android 15" in " ".join(api_warnings(35))


def test_old_phone_is_described_and_runs_nothing_on_nnapi(fake_adb, binary, tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(properties={"ro.build.version.sdk": "28", "ro.build.version.release": "9"}))
    dev = adapter(server, binary)
    d = dev.describe()
    assert d["api_level"] == 28 and any("per-channel" in w for w in d["warnings"])
    res = dev.run(tiny_models["int8"], int8_inputs[:2], timeout_s=120)
    deleg = res.delegation
    assert deleg.ops_delegated == 0 and deleg.ops_total == 4 and deleg.fraction == 0.0
    assert deleg.details["status"] == "none" and deleg.details["tool_says"] == "none"
    assert [op for op, _ in deleg.fallback] == ["CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert "API 28" in deleg.fallback[0][1]
    assert np.array_equal(res.outputs, CpuDevice().run(tiny_models["int8"], int8_inputs[:2]).outputs)
    dev.close()


# --- running ---------------------------------------------------------------------------------

def test_run_agrees_with_the_cpu_adapter_and_cleans_up(phone, binary, tiny_models, int8_inputs):
    dev = adapter(phone, binary)
    x = int8_inputs[:5]
    res = dev.run(tiny_models["int8"], x, timeout_s=120)
    ref = CpuDevice().run(tiny_models["int8"], x)
    assert res.outputs.dtype == np.int8 and res.outputs.shape == (5, 3)
    assert np.array_equal(res.outputs, ref.outputs)
    assert res.simulated is True
    assert res.delegation.backend == "nnapi"
    assert (res.delegation.ops_total, res.delegation.ops_delegated) == (4, 4)
    assert res.delegation.details["status"] == "full" and res.delegation.fallback == []
    assert res.details["invocations"] == 5
    phone_files = phone.devices[0].files()
    assert phone_files == [f"{dev.remote_dir}/benchmark_model"]  # the run's own files are gone
    mode = phone.devices[0].host_path(f"{dev.remote_dir}/benchmark_model").stat().st_mode
    assert mode & stat.S_IXUSR
    dev.close()
    assert phone.devices[0].files() == []
    dev.close()  # twice is harmless


def test_run_in_batches_and_float_model(phone, binary, tiny_models, int8_inputs):
    dev = adapter(phone, binary, run_batch=2)
    before = len(phone.devices[0].commands)
    res = dev.run(tiny_models["int8"], int8_inputs[:5], timeout_s=120)
    assert np.array_equal(res.outputs, CpuDevice().run(tiny_models["int8"], int8_inputs[:5]).outputs)
    chained = [c for c in phone.devices[0].commands[before:] if "benchmark_model --graph" in c]
    assert len(chained) == 3  # 2 + 2 + 1 examples
    x = tiny_models["x"][:3]
    fres = dev.run(tiny_models["float"], x, timeout_s=120)
    assert fres.outputs.dtype == np.float32
    np.testing.assert_allclose(fres.outputs, CpuDevice().run(tiny_models["float"], x).outputs, rtol=1e-5, atol=1e-6)
    dev.close()


def test_named_accelerator_is_passed_and_unknown_one_fails(phone, binary, tiny_models, int8_inputs):
    dev = adapter(phone, binary, accelerator="sim-npu")
    res = dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    assert res.delegation.details["accelerator"] == "sim-npu"
    assert "--nnapi_accelerator_name=sim-npu" in " ".join(phone.devices[0].commands[-4:])
    dev.close()
    bad = adapter(phone, binary, accelerator="npu9")
    with pytest.raises(DeviceError) as exc:
        bad.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    assert exc.value.kind == "failed"
    assert "Could not find the specified NNAPI accelerator: npu9" in exc.value.reason
    bad.close()


def test_bad_inputs_and_corrupt_model(phone, binary, tiny_models, tmp_path):
    dev = adapter(phone, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], tiny_models["x"][:1], timeout_s=60)  # float for an int8 model
    assert exc.value.kind == "failed" and "quantize" in exc.value.reason
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(DeviceError) as exc:
        dev.run(junk, np.zeros((1, 4), np.int8), timeout_s=60)
    assert exc.value.kind == "failed" and "not a TFLite flatbuffer" in exc.value.reason
    dev.close()


def test_benchmark_interleaves_and_reports_aggregates(phone, binary, tiny_models, int8_inputs):
    dev = adapter(phone, binary, bench_invocations=3)
    before = len(phone.devices[0].commands)
    settings = BenchSettings(warmup_runs=1, min_runs=4, min_seconds=0.0, timeout_s=120)
    bench = dev.benchmark({"float": tiny_models["float"], "qat_int8": tiny_models["int8"]},
                          {"float": tiny_models["x"][:1], "qat_int8": int8_inputs[:1]}, settings)
    assert bench.simulated is True
    assert set(bench.times_ms) == {"float", "qat_int8"}
    assert all(len(v) == 3 and all(t > 0 for t in v) for v in bench.times_ms.values())
    assert bench.details["runs_per_invocation"] == 2  # ceil(min_runs / invocations)
    per = bench.details["per_invocation_us"]["qat_int8"]
    assert len(per) == 3 and all(p["count"] >= 2 and p["avg_us"] > 0 for p in per)
    assert [round(p["avg_us"] / 1000, 9) for p in per] == [round(t, 9) for t in bench.times_ms["qat_int8"]]
    assert set(bench.first_invoke_ms) == {"float", "qat_int8"}
    assert bench.delegation["qat_int8"].ops_delegated == 4
    # one untimed profiling pass, then timed passes a, b, a, b, ...
    graphs = [Path(g).name for g in graphs_run(phone.devices[0], since=before)]
    assert graphs == ["m0.tflite", "m1.tflite"] * 4
    assert phone.devices[0].files() == [f"{dev.remote_dir}/benchmark_model"]
    dev.close()


def test_partial_delegation_is_reported_as_partial(fake_adb, binary, tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(delegate_nodes=2))
    dev = adapter(server, binary, bench_invocations=1)
    deleg = dev.run(tiny_models["int8"], int8_inputs[:2], timeout_s=120).delegation
    assert (deleg.ops_total, deleg.ops_delegated, deleg.fraction) == (4, 2, 0.5)
    assert deleg.details["status"] == "partial" and deleg.details["partitions"] == 2
    assert [op for op, _ in deleg.fallback] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert all("ran on the CPU" in why for _, why in deleg.fallback)
    bench = dev.benchmark({"qat_int8": tiny_models["int8"]}, int8_inputs[:1],
                          BenchSettings(warmup_runs=0, min_runs=1, min_seconds=0.0, timeout_s=120))
    assert bench.delegation["qat_int8"].ops_delegated == 2
    assert bench.delegation["qat_int8"].details["status"] == "partial"
    assert bench.first_invoke_ms["qat_int8"] > 0  # no warmup: the first timed run
    dev.close()


# --- faults ----------------------------------------------------------------------------------

def test_phone_going_offline_mid_run(fake_adb, binary, tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(offline_after=5))  # getprop, 2 pushes, chmod, inputs; then the run
    dev = adapter(server, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:2], timeout_s=60)
    assert exc.value.kind == "offline"
    assert "went offline during the run" in exc.value.reason and "offline" in exc.value.reason
    dev.close()  # the phone is gone: close() must not raise


def test_hanging_benchmark_model_times_out(fake_adb, binary, tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(hang=True))
    dev = adapter(server, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=3)
    assert exc.value.kind == "timeout" and "did not finish in time" in exc.value.reason
    assert any(c.startswith("pkill") for c in server.devices[0].commands)
    assert server.devices[0].files() == [f"{dev.remote_dir}/benchmark_model"]
    dev.close()
    assert server.devices[0].files() == []


def test_full_disk_on_push(fake_adb, binary, tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(disk_free=0))
    dev = adapter(server, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    assert exc.value.kind == "disk-full" and "No space left on device" in exc.value.reason


def test_permission_denied_on_execution(fake_adb, binary, tiny_models, int8_inputs):
    server = fake_adb(FakeDevice(noexec=True))
    dev = adapter(server, binary)
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    assert exc.value.kind == "failed" and "permission denied" in exc.value.reason
    dev.close()
    assert server.devices[0].files() == []


def test_binary_missing_on_the_phone(phone, binary, tiny_models, int8_inputs):
    dev = adapter(phone, binary)
    dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    phone.devices[0].host_path(dev.remote_binary).unlink()  # e.g. wiped by another tool
    with pytest.raises(DeviceError) as exc:
        dev.run(tiny_models["int8"], int8_inputs[:1], timeout_s=60)
    assert exc.value.kind == "missing-tool" and "not found on the device" in exc.value.reason
    dev.close()
    assert phone.devices[0].files() == []
