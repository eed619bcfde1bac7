"""The test suite's fake adb server itself: wire protocol (checked with raw sockets and, when
an ``adb`` binary is around, with the real adb command line), the fake phone's shell, its
benchmark_model and its faults. The nnapi adapter's tests rely on all of this."""
from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from simulators.fake_adb import FakeDevice, running, write_fake_benchmark_model

pytestmark = pytest.mark.simulated


def raw(port: int, *requests: str) -> bytes:
    """Send smart-socket requests on one connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for r in requests:
            s.sendall(f"{len(r.encode()):04x}".encode() + r.encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def shell_v2(port: int, serial: str, command: str) -> tuple[bytes, bytes, int]:
    data = raw(port, f"host:tport:serial:{serial}", f"shell,v2,raw:{command}")
    assert data[:4] == b"OKAY" and data[12:16] == b"OKAY"  # tport: OKAY + 8-byte transport id
    data, out, err, rc = data[16:], b"", b"", None
    while data:
        kind, n = data[0], struct.unpack("<I", data[1:5])[0]
        payload, data = data[5:5 + n], data[5 + n:]
        if kind == 1:
            out += payload
        elif kind == 2:
            err += payload
        elif kind == 3:
            rc = payload[0]
    return out, err, rc


@pytest.fixture
def fake(tmp_path):
    with running([FakeDevice("S1"), FakeDevice("S2", state="unauthorized")], tmp_path / "adb") as srv:
        yield srv


def test_host_requests(fake):
    assert raw(fake.port, "host:version") == b"OKAY0004" + b"%04x" % 41
    listing = raw(fake.port, "host:devices")
    assert listing == b"OKAY" + b"%04x" % len(b"S1\tdevice\nS2\tunauthorized\n") + b"S1\tdevice\nS2\tunauthorized\n"
    long = raw(fake.port, "host:devices-l").decode()
    assert re.search(r"^S1 +device usb:1-1 product:qatsim model:QAT_Simulated_Phone device:qatsim transport_id:1$",
                     long[8:], re.M)
    assert re.search(r"^S2 +unauthorized usb:1-2 transport_id:2$", long[8:], re.M)
    assert raw(fake.port, "host-serial:S1:get-state") == b"OKAY0006device"
    assert raw(fake.port, "host-serial:S1:features").endswith(b"shell_v2,cmd,fixed_push_mkdir")


def test_transport_selection_errors(fake):
    assert raw(fake.port, "host:transport-any") == b"FAIL001dmore than one device/emulator"
    assert raw(fake.port, "host:transport:S9").startswith(b"FAIL") and b"device 'S9' not found" in raw(
        fake.port, "host:transport:S9")
    assert b"device unauthorized" in raw(fake.port, "host:tport:serial:S2")
    assert raw(fake.port, "host:transport:S1", "reboot:").startswith(b"OKAYFAIL")


def test_shell_language(fake):
    out, err, rc = shell_v2(fake.port, "S1", "echo one > /data/local/tmp/f; echo two >> /data/local/tmp/f; "
                                             "cat /data/local/tmp/f; ls /nope 2>&1; echo rc=$?")
    assert out == b"one\ntwo\nls: /nope: No such file or directory\nrc=1\n" and err == b"" and rc == 0
    out, err, rc = shell_v2(fake.port, "S1", "rm /data/local/tmp/missing")
    assert rc == 1 and b"No such file or directory" in err
    assert shell_v2(fake.port, "S1", "rm -f /data/local/tmp/missing")[2] == 0
    out, _, rc = shell_v2(fake.port, "S1", "chmod 755 /data/local/tmp/f && ls -l /data/local/tmp")
    assert rc == 0 and out.startswith(b"-rwxr-xr-x")
    out, _, _ = shell_v2(fake.port, "S1", "getprop")
    assert b"[ro.build.version.sdk]: [34]\n" in out and b"[qat_harness.simulator]: [1]\n" in out
    assert shell_v2(fake.port, "S1", "getprop ro.soc.model")[0] == b"SIM8000\n"
    assert shell_v2(fake.port, "S1", "nosuchcmd")[2] == 127
    _, err, rc = shell_v2(fake.port, "S1", "getprop | grep sdk")
    assert rc == 2 and b"not supported by the simulator" in err
    df = shell_v2(fake.port, "S1", "df /data")[0].decode().splitlines()
    assert df[0].split()[:4] == ["Filesystem", "1K-blocks", "Used", "Available"] and df[1].endswith("/data")


def test_offline_after_n_services(tmp_path):
    with running([FakeDevice("S1", offline_after=1)], tmp_path) as srv:
        assert shell_v2(srv.port, "S1", "true")[2] == 0
        cut = raw(srv.port, "host:tport:serial:S1", "shell,v2,raw:echo never")
        assert cut == b"OKAY" + struct.pack("<Q", 1) + b"OKAY"  # accepted, then the line dies
        assert raw(srv.port, "host:devices").endswith(b"S1\toffline\n")
        assert raw(srv.port, "host:transport:S1") == b"FAIL000edevice offline"


def test_fake_benchmark_model_prints_the_tool_format(tmp_path, tiny_models):
    with running([FakeDevice("S1", delegate_nodes=3)], tmp_path) as srv:
        dev = srv.device("S1")
        dev.write_file("/data/local/tmp/bm/benchmark_model", write_fake_benchmark_model(tmp_path / "b").read_bytes(),
                       0o755)
        dev.write_file("/data/local/tmp/bm/m.tflite", Path(tiny_models["int8"]).read_bytes())
        dev.write_file("/data/local/tmp/bm/in.bin", bytes(64))
        flags = ("--graph=/data/local/tmp/bm/m.tflite --use_nnapi=true --num_runs=3 --warmup_runs=1 "
                 "--warmup_min_secs=0 --min_secs=0 --enable_op_profiling=true --input_layer=x "
                 "--input_layer_shape=1,8,8,1 --input_layer_value_files=x:/data/local/tmp/bm/in.bin "
                 "--output_filepath=/data/local/tmp/bm/out.bin --made_up_flag=1")
        out, _, rc = shell_v2(srv.port, "S1", f"/data/local/tmp/bm/benchmark_model {flags}")
        text = out.decode()
        assert rc == 0, text
        assert "INFO: STARTING!" in text and "WARN: Unconsumed cmdline flags: --made_up_flag=1" in text
        assert "INFO: NNAPI accelerators available: [sim-npu,nnapi-reference]" in text
        assert ("INFO: Replacing 3 out of 4 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 2 "
                "partitions for subgraph 0 (main).") in text
        assert "partially executed by the delegate w/ 1 delegate kernels." in text
        assert len(re.findall(r"^INFO: count=\d+ ", text, re.M)) == 2
        stats = r"first=\d+ curr=\d+ min=\d+ max=\d+ avg=[\d.e+]+ std=\d+|curr=\d+\(all same\)"
        assert re.search(rf"^INFO: count=3 ({stats})$", text, re.M)
        assert re.search(r"^INFO: Inference timings in us: Init: \d+, First inference: \d+, Warmup \(avg\): [\d.e+]+, "
                         r"Inference \(avg\): [\d.e+]+$", text, re.M)
        assert re.search(r"^\t +TfLiteNnapiDelegate\t +1\t", text, re.M)  # summary by node type
        assert re.search(r"^\t +SOFTMAX\t +1\t", text, re.M)
        assert dev.host_path("/data/local/tmp/bm/out.bin").stat().st_size == 3  # one int8 output of 3

        # failures, with the tool's own words and exit codes
        out, err, rc = shell_v2(srv.port, "S1", "/data/local/tmp/bm/benchmark_model --num_runs=1")
        assert rc == 1 and b"ERROR: Please specify the name of your TF Lite input file with --graph" in out
        dev.write_file("/data/local/tmp/bm/in.bin", bytes(63))
        out, err, rc = shell_v2(srv.port, "S1", f"/data/local/tmp/bm/benchmark_model {flags}")
        assert rc == 134 and b"FATAL: The size of /data/local/tmp/bm/in.bin is 63 bytes. It should be 64" in out
        assert err == b"Aborted\n"


def adb_binary() -> str | None:
    found = shutil.which("adb")
    if found:
        return found
    try:
        from adbutils import adb_path
        return adb_path()
    except Exception:  # noqa: BLE001 - no adb anywhere: the test is skipped
        return None


def test_the_real_adb_command_line_works_against_the_fake(fake, tmp_path):
    adb = adb_binary()
    if adb is None:
        pytest.skip("no adb binary on this machine (apt install adb)")
    env = dict(os.environ, ADB_SERVER_SOCKET=fake.socket_spec, HOME=str(tmp_path))
    env.pop("ANDROID_SERIAL", None)

    def run(*args):
        return subprocess.run([adb, *args], env=env, capture_output=True, text=True, timeout=60)

    devices = run("devices", "-l")
    assert devices.returncode == 0 and re.search(r"^S1 +device .*model:QAT_Simulated_Phone", devices.stdout, re.M)
    assert run("-s", "S1", "shell", "getprop", "ro.product.model").stdout == "QAT Simulated Phone\n"
    assert run("-s", "S1", "shell", "ls /nope").returncode == 1  # exit codes through shell v2
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(150_000))
    assert run("-s", "S1", "push", str(src), "/data/local/tmp/p/payload.bin").returncode == 0
    assert fake.device("S1").host_path("/data/local/tmp/p/payload.bin").read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    assert run("-s", "S1", "pull", "/data/local/tmp/p/payload.bin", str(back)).returncode == 0
    assert back.read_bytes() == src.read_bytes()
    unauthorized = run("-s", "S2", "shell", "true")
    assert unauthorized.returncode != 0 and "unauthorized" in unauthorized.stderr


def test_fake_benchmark_model_gpu_and_xnnpack_and_a_build_without_replacing_lines(tmp_path, tiny_models):
    with running([FakeDevice("S1"), FakeDevice("S2", replacing_line=False, cpuinfo="")], tmp_path) as srv:
        for dev in srv.devices:
            dev.write_file("/data/local/tmp/bm/benchmark_model",
                           write_fake_benchmark_model(tmp_path / "b").read_bytes(), 0o755)
            dev.write_file("/data/local/tmp/bm/m.tflite", Path(tiny_models["int8"]).read_bytes())
        base = "/data/local/tmp/bm/benchmark_model --graph=/data/local/tmp/bm/m.tflite --num_runs=1 --warmup_runs=0"
        gpu = shell_v2(srv.port, "S1", base + " --use_gpu=true")[0].decode()
        assert "INFO: Use gpu: [1]" in gpu and "INFO: Created TensorFlow Lite delegate for GPU." in gpu
        assert "Replacing 4 out of 4 node(s) with delegate (TfLiteGpuDelegateV2) node" in gpu
        assert "Explicitly applied GPU delegate, and the model graph will be completely executed" in gpu
        xnn = shell_v2(srv.port, "S1", base + " --use_xnnpack=true")[0].decode()
        assert "(TfLiteXNNPackDelegate) node" in xnn and "Explicitly applied XNNPACK delegate" in xnn
        quiet = shell_v2(srv.port, "S2", base + " --use_nnapi=true")[0].decode()
        assert "Replacing" not in quiet and "Explicitly applied NNAPI delegate" in quiet
        assert b"asimddp" in shell_v2(srv.port, "S1", "cat /proc/cpuinfo")[0]
        assert shell_v2(srv.port, "S2", "cat /proc/cpuinfo")[2] == 1  # no cpuinfo on this phone
