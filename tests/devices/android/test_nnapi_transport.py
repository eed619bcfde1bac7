"""The adb transport of the nnapi adapter: where the server is, shell exit codes and
deadlines, push/pull over the sync protocol and the error kinds, against the fake adb server."""
from __future__ import annotations

import time

import pytest
from simulators.fake_adb import FakeDevice, running

from qat_harness.devices.android.adb import (
    AdbConfigError,
    AdbTransport,
    ServerAddress,
    classify,
    quote_command,
    server_address,
)
from qat_harness.devices.base import DeviceError

pytestmark = pytest.mark.simulated


@pytest.mark.parametrize("env, expect", [
    ({}, ("127.0.0.1", 5037, "default")),
    ({"ADB_SERVER_SOCKET": "tcp:farm.example:15037"}, ("farm.example", 15037, "ADB_SERVER_SOCKET")),
    ({"ADB_SERVER_SOCKET": "tcp:5038"}, ("localhost", 5038, "ADB_SERVER_SOCKET")),
    ({"ADB_SERVER_SOCKET": "tcp:[::1]:5039"}, ("::1", 5039, "ADB_SERVER_SOCKET")),
    ({"ANDROID_ADB_SERVER_PORT": "5040"}, ("127.0.0.1", 5040, "ANDROID_ADB_SERVER_PORT")),
    ({"ANDROID_ADB_SERVER_ADDRESS": "10.0.0.2", "ANDROID_ADB_SERVER_PORT": "5041"},
     ("10.0.0.2", 5041, "ANDROID_ADB_SERVER_ADDRESS, ANDROID_ADB_SERVER_PORT")),
    # ADB_SERVER_SOCKET wins over the older variables, as in adb itself
    ({"ADB_SERVER_SOCKET": "tcp:h:1", "ANDROID_ADB_SERVER_PORT": "5040"}, ("h", 1, "ADB_SERVER_SOCKET")),
])
def test_server_address(env, expect):
    addr = server_address(env)
    assert (addr.host, addr.port, addr.source) == expect


@pytest.mark.parametrize("env, words", [
    ({"ADB_SERVER_SOCKET": "localabstract:adb"}, "only tcp:HOST:PORT"),
    ({"ADB_SERVER_SOCKET": "tcp:host:notaport"}, "not a port number"),
    ({"ADB_SERVER_SOCKET": "tcp::5037"}, "empty host"),
    ({"ANDROID_ADB_SERVER_PORT": "70000"}, "out of range"),
])
def test_bad_server_settings(env, words):
    with pytest.raises(AdbConfigError, match=words):
        server_address(env)


def test_quote_command_never_lets_the_shell_interpret_arguments():
    assert quote_command(["rm", "-rf", "/data/local/tmp/a b; reboot"]) == "rm -rf '/data/local/tmp/a b; reboot'"


def test_classify():
    assert classify("write failed: No space left on device") == "disk-full"
    assert classify("device offline") == "offline"
    assert classify("device 'X' not found") == "offline"
    assert classify("something else") == "failed"


@pytest.fixture
def server(tmp_path):
    with running([FakeDevice("S1"), FakeDevice("S2", features="cmd", disk_free=200_000)], tmp_path) as srv:
        yield srv


def transport(srv) -> AdbTransport:
    return AdbTransport(ServerAddress("127.0.0.1", srv.port, "test"))


def test_devices_version_and_reachability(server):
    t = transport(server)
    assert t.unreachable_reason() is None
    assert t.server_version() == 41
    entries = t.devices()
    assert [(e.serial, e.state) for e in entries] == [("S1", "device"), ("S2", "device")]
    assert entries[0].tags["model"] == "QAT_Simulated_Phone" and entries[0].tags["transport_id"] == "1"
    assert "shell_v2" in t.features("S1") and "shell_v2" not in t.features("S2")


@pytest.mark.parametrize("serial", ["S1", "S2"])  # S1 speaks shell v2, S2 only shell v1
def test_shell_exit_codes_and_quoting(server, serial):
    t = transport(server)
    ok = t.shell(serial, quote_command(["echo", "it's $HOME; fine"]), timeout_s=10)
    assert ok.returncode == 0 and ok.stdout == "it's $HOME; fine\n"
    bad = t.shell(serial, "ls /no/such/dir", timeout_s=10)
    assert bad.returncode == 1 and "No such file or directory" in bad.output
    assert t.shell(serial, "true && false || echo recovered", timeout_s=10).stdout == "recovered\n"


def test_shell_deadline_is_overall(server):
    t = transport(server)
    start = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        t.shell("S1", "sleep 30", timeout_s=1.0)
    assert exc.value.kind == "timeout"
    assert time.monotonic() - start < 5


def test_push_and_pull_large_and_missing_files(server):
    t = transport(server)
    big = bytes(range(256)) * 1000  # 256 kB: several 64 kB DATA chunks
    t.push("S1", [(big, "/data/local/tmp/t/big.bin", 0o644), (b"x", "/data/local/tmp/t/x.bin", 0o755)], 10)
    got = t.pull("S1", ["/data/local/tmp/t/big.bin", "/data/local/tmp/t/none.bin", "/data/local/tmp/t/x.bin"], 10)
    assert got == {"/data/local/tmp/t/big.bin": big, "/data/local/tmp/t/none.bin": None,
                   "/data/local/tmp/t/x.bin": b"x"}
    assert server.device("S1").host_path("/data/local/tmp/t/x.bin").stat().st_mode & 0o777 == 0o755


def test_push_on_a_full_disk_keeps_the_device_message(server):
    t = transport(server)
    with pytest.raises(DeviceError) as exc:
        t.push("S2", [(bytes(300_000), "/data/local/tmp/too-big.bin", 0o644)], 10)
    assert exc.value.kind == "disk-full" and "No space left on device" in exc.value.reason
    assert server.device("S2").files() == []


def test_unknown_serial_and_offline_device(server):
    t = transport(server)
    with pytest.raises(DeviceError) as exc:
        t.shell("S9", "true", timeout_s=5)
    assert exc.value.kind == "offline" and "not found" in exc.value.reason
    server.device("S1").state = "offline"
    with pytest.raises(DeviceError) as exc:
        t.push("S1", [(b"x", "/data/local/tmp/x", 0o644)], 5)
    assert exc.value.kind == "offline" and "device offline" in exc.value.reason


def test_no_server(tmp_path):
    with running([], tmp_path) as srv:
        port = srv.port
    t = AdbTransport(ServerAddress("127.0.0.1", port, "test"))
    assert "no adb server reachable at 127.0.0.1" in t.unreachable_reason()
    with pytest.raises(DeviceError) as exc:
        t.devices()
    assert exc.value.kind == "offline"
