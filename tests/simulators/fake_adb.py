"""A fake adb server with fake Android phones, for the test suite only (the product never
uses it). It lets the NNAPI adapter be tested end to end without a phone.

It listens on 127.0.0.1 (a free port) and speaks the adb server's host protocol as documented
in Android's adb sources (SERVICES.TXT, SYNC.TXT, the shell protocol of shell_protocol.h):
4-hex-digit length-prefixed requests answered OKAY / FAIL; ``host:version``,
``host:devices`` / ``host:devices-l``, ``host:features`` / ``host:host-features``,
``host:transport:<serial>`` / ``host:transport-any`` / ``host:tport:serial:<serial>`` /
``host:tport:any`` / ``host:transport-id:<n>``, ``host-serial:<serial>:<request>``; on a device,
``shell:``, ``shell,v2,...:`` (stdout / stderr / exit packets), ``exec:`` and ``sync:``
(STAT, LIST, SEND, RECV, DONE, DATA, QUIT). Enough for adbutils and for the real ``adb`` CLI
(``adb -H 127.0.0.1 -P PORT devices|shell|push|pull``).

Each phone keeps pushed files for real, in a temporary folder, and its shell understands a
small language: ``;`` ``&&`` ``||``, ``2>&1`` and ``>``/``>>`` redirections, ``$?``, and the
commands ``getprop [NAME]``, ``echo``, ``rm``, ``mkdir``, ``ls``, ``df``, ``chmod``, ``cat``,
``sleep``, ``pkill``, ``service list``, ``true``/``false``, plus executing pushed files;
``/proc/cpuinfo`` holds the phone's ``cpuinfo``. A pushed executable named ``benchmark_model``
behaves as TFLite's benchmark tool with the NNAPI, GPU or XNNPACK delegate (``--use_nnapi`` /
``--use_gpu`` / ``--use_xnnpack``): it parses its flags, runs the pushed .tflite on the host
CPU with LiteRT (in a child process, ``fake_adb_runner.py``), prints benchmark_model's real output format (parameters,
the delegate's ``Replacing K out of M node(s)`` line, the statistics lines, the op-profiling
tables, the ``Inference timings in us`` summary) and writes ``--output_filepath``.

Every phone's ``qat_harness.simulator`` property is ``1``, which is how the adapter knows its
results are simulated. What it simulates is the protocol and the tool, not a phone's speed:
timings are the host CPU's, and the op-profiling table splits each run's time evenly across
nodes.

Faults, per device (``FakeDevice`` fields): ``state`` unauthorized / offline; ``offline_after``
(the device drops off the bus after N device services, mid-command); ``hang`` (benchmark_model
never returns); ``delegate_nodes`` (the delegate takes only the first K nodes; 0: none);
``replacing_line`` False (a TFLite build that never prints ``Replacing N out of M node(s)``);
``disk_free`` (bytes left: pushes beyond fail "No space left on device"); ``noexec``
(executing pushed files: Permission denied); an old ``ro.build.version.sdk`` (below 29 NNAPI
takes no node of an int8 graph); several devices on one server.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import select
import shlex
import shutil
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVER_VERSION = 41
FEATURES = "shell_v2,cmd,fixed_push_mkdir"
RUNNER = Path(__file__).with_name("fake_adb_runner.py")
RUNNER_REPLY = "@@runner "
SH = "/system/bin/sh"


# a big.LITTLE arm64 phone whose cores have int8 dot product but no i8mm
DEFAULT_CPUINFO = "".join(
    f"processor\t: {n}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    f"asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    f"CPU variant\t: 0x1\nCPU part\t: {'0xd05' if n < 4 else '0xd0d'}\nCPU revision\t: 0\n\n" for n in range(8)
) + "Hardware\t: SIM8000\n"


def default_properties() -> dict[str, str]:
    return {
        "ro.product.model": "QAT Simulated Phone", "ro.product.manufacturer": "qat-harness",
        "ro.product.device": "qatsim", "ro.product.name": "qatsim",
        "ro.soc.manufacturer": "QAT", "ro.soc.model": "SIM8000", "ro.board.platform": "simboard",
        "ro.hardware": "qatsim", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
        "ro.product.cpu.abi": "arm64-v8a", "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "qat_harness.simulator": "1",
    }


@dataclasses.dataclass
class FakeDevice:
    """One simulated phone and its faults."""
    serial: str = "QATSIM0001"
    state: str = "device"                 # 'device', 'unauthorized', 'offline'
    properties: dict = dataclasses.field(default_factory=dict)  # merged over default_properties()
    accelerators: tuple = ("sim-npu", "nnapi-reference")
    delegate_nodes: int | None = None     # None: the delegate takes every node; K: the first K only
    replacing_line: bool = True           # False: a TFLite build that never prints "Replacing ..."
    cpuinfo: str = DEFAULT_CPUINFO        # /proc/cpuinfo ("" : unreadable)
    offline_after: int | None = None      # device services served before it drops off
    hang: bool = False                    # benchmark_model never finishes
    disk_free: int | None = None          # bytes the disk still takes
    noexec: bool = False                  # executing a pushed file: Permission denied
    features: str = FEATURES              # without shell_v2, clients fall back to shell:
    # filled in by the server
    transport_id: int = 0
    root: Path | None = None
    services: int = 0
    commands: list = dataclasses.field(default_factory=list)
    _used: int = 0

    def __post_init__(self):
        self.properties = {**default_properties(), **self.properties}
        self._lock = threading.Lock()
        self._runner: subprocess.Popen | None = None
        self._kill_events: list[tuple[str, threading.Event]] = []

    # --- filesystem ------------------------------------------------------------------------

    def host_path(self, device_path: str, cwd: str = "/") -> Path:
        full = posixpath.normpath(posixpath.join(cwd, device_path))
        return self.root / full.lstrip("/")

    def files(self, under: str = "/data/local/tmp") -> list[str]:
        """Every file (not folder) below a device folder, as device paths."""
        base = self.host_path(under)
        if not base.exists():
            return []
        return sorted("/" + str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def space_left(self) -> int | None:
        return None if self.disk_free is None else self.disk_free - self._used

    def write_file(self, device_path: str, data: bytes, mode: int | None = None) -> bool:
        """Store a file; False when the disk is full (nothing written)."""
        path = self.host_path(device_path)
        old = path.stat().st_size if path.is_file() else 0
        left = self.space_left()
        if left is not None and len(data) - old > left:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self._used += len(data) - old
        if mode is not None:
            os.chmod(path, mode & 0o777)
        return True

    def remove(self, path: Path) -> None:
        if path.is_dir():
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path)
        else:
            size = path.stat().st_size
            path.unlink()
        self._used -= size

    # --- the LiteRT child ------------------------------------------------------------------

    def run_model(self, request: dict) -> dict | None:
        """One request to the runner child; None when it died (a crash of the 'tool')."""
        with self._lock:
            if self._runner is None or self._runner.poll() is not None:
                env = dict(os.environ)
                self._runner = subprocess.Popen([sys.executable, str(RUNNER)], stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                                text=True, env=env, start_new_session=True)
            try:
                self._runner.stdin.write(json.dumps(request) + "\n")
                self._runner.stdin.flush()
                for line in self._runner.stdout:
                    if line.startswith(RUNNER_REPLY):
                        return json.loads(line[len(RUNNER_REPLY):])
            except (BrokenPipeError, OSError):
                pass
            self._runner.wait()
            return None

    def stop(self) -> None:
        with self._lock:
            if self._runner is not None and self._runner.poll() is None:
                self._runner.stdin.close()
                try:
                    self._runner.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._runner.kill()
                    self._runner.wait()
            self._runner = None


class FakeAdbServer:
    """The server; ``start()`` returns the port, ``socket_spec`` is the ADB_SERVER_SOCKET value."""

    def __init__(self, devices: list[FakeDevice], root: Path):
        self.devices = list(devices)
        self.root = Path(root)
        self.requests: list[str] = []
        self.stopping = threading.Event()
        for n, dev in enumerate(self.devices, 1):
            dev.transport_id = n
            dev.root = self.root / f"device-{n}"
            (dev.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
            if dev.cpuinfo:
                (dev.root / "proc").mkdir(exist_ok=True)
                (dev.root / "proc/cpuinfo").write_text(dev.cpuinfo)
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def socket_spec(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def device(self, serial: str) -> FakeDevice:
        return next(d for d in self.devices if d.serial == serial)

    def start(self) -> int:
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                _Connection(server, self.request).serve()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-adb", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for dev in self.devices:
            dev.stop()


@contextlib.contextmanager
def running(devices: list[FakeDevice], root: Path):
    server = FakeAdbServer(devices, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_fake_benchmark_model(path: Path, machine: int = 183) -> Path:
    """A stand-in for the Android benchmark_model binary: an ELF header for the given machine
    (183 = AArch64) and a note. The fake phone executes any executable file named
    benchmark_model; the adapter checks the ELF machine against the phone's ABI."""
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1          # 64-bit, little-endian, version 1
    header[16:18] = (3).to_bytes(2, "little")          # ET_DYN
    header[18:20] = machine.to_bytes(2, "little")
    Path(path).write_bytes(bytes(header) + b"qat-harness test stand-in for TFLite's benchmark_model\n")
    return Path(path)


# --- one client connection ------------------------------------------------------------------

class _Closed(Exception):
    pass


class _Connection:
    def __init__(self, server: FakeAdbServer, sock: socket.socket):
        self.server, self.sock = server, sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # wire helpers
    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Closed
            buf += chunk
        return buf

    def read_request(self) -> str:
        length = int(self.recv_exact(4).decode("ascii"), 16)
        return self.recv_exact(length).decode("utf-8", "replace")

    def okay(self, payload: str | None = None) -> None:
        data = b"OKAY"
        if payload is not None:
            raw = payload.encode()
            data += f"{len(raw):04x}".encode() + raw
        self.sock.sendall(data)

    def fail(self, message: str) -> None:
        raw = message.encode()
        self.sock.sendall(b"FAIL" + f"{len(raw):04x}".encode() + raw)

    def client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            return bool(readable) and self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # protocol
    def serve(self) -> None:
        try:
            while True:
                request = self.read_request()
                self.server.requests.append(request)
                if request.startswith(("host:", "host-serial:", "host-transport-id:", "host-usb:", "host-local:")):
                    device = self.host_request(request)
                    if device is None:
                        return
                    request = self.read_request()
                    self.server.requests.append(request)
                    self.device_service(device, request)
                    return
                self.fail(f"unknown request {request!r}: select a device first")
                return
        except (_Closed, ConnectionError, OSError):
            return

    def host_request(self, req: str) -> FakeDevice | None:
        """Answer a host request; returns the device when the connection switched to it."""
        devs = self.server.devices
        if req == "host:version":
            self.okay(f"{SERVER_VERSION:04x}")
        elif req in ("host:devices", "host:devices-l"):
            self.okay("".join(_device_line(d, long=req.endswith("-l")) for d in devs))
        elif req == "host:host-features":
            self.okay(FEATURES)
        elif req == "host:kill":
            self.okay()
        elif req.startswith("host:transport:"):
            return self.switch(self.by_serial(req[len("host:transport:"):]), tport=False)
        elif req.startswith("host:tport:serial:"):
            return self.switch(self.by_serial(req[len("host:tport:serial:"):]), tport=True)
        elif req in ("host:transport-any", "host:transport-usb", "host:transport-local",
                     "host:tport:any", "host:tport:usb", "host:tport:local"):
            return self.switch(self.only_one(), tport=req.startswith("host:tport"))
        elif req.startswith("host:transport-id:"):
            tid = req.rsplit(":", 1)[1]
            match = [d for d in devs if str(d.transport_id) == tid]
            return self.switch(match[0] if match else f"no device with transport id '{tid}'", tport=False)
        elif req.startswith("host-serial:"):
            serial, command = self.split_serial(req[len("host-serial:"):])
            self.device_query(self.by_serial(serial), command)
        elif req.startswith("host-transport-id:"):
            tid, _, command = req[len("host-transport-id:"):].partition(":")
            match = [d for d in devs if str(d.transport_id) == tid]
            self.device_query(match[0] if match else f"no device with transport id '{tid}'", command)
        elif req.startswith(("host-usb:", "host-local:", "host:")):
            self.device_query(self.only_one(), req.split(":", 1)[1])
        else:
            self.fail(f"unknown host service {req!r}")
        return None

    def split_serial(self, rest: str) -> tuple[str, str]:
        # a serial may itself contain ':' (HOST:PORT of a network device): match known ones first
        for dev in sorted(self.server.devices, key=lambda d: -len(d.serial)):
            if rest.startswith(dev.serial + ":"):
                return dev.serial, rest[len(dev.serial) + 1:]
        serial, _, command = rest.partition(":")
        return serial, command

    def by_serial(self, serial: str) -> FakeDevice | str:
        match = [d for d in self.server.devices if d.serial == serial]
        return match[0] if match else f"device '{serial}' not found"

    def only_one(self) -> FakeDevice | str:
        devs = self.server.devices
        if not devs:
            return "no devices/emulators found"
        if len(devs) > 1:
            return "more than one device/emulator"
        return devs[0]

    def usable(self, dev: FakeDevice | str) -> str | None:
        if isinstance(dev, str):
            return dev
        if dev.state == "offline":
            return "device offline"
        if dev.state == "unauthorized":
            return ("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                    "Try 'adb kill-server' if that seems wrong.\n"
                    "Otherwise check for a confirmation dialog on your device.")
        return None

    def switch(self, dev: FakeDevice | str, tport: bool) -> FakeDevice | None:
        problem = self.usable(dev)
        if problem:
            self.fail(problem)
            return None
        self.sock.sendall(b"OKAY" + (struct.pack("<Q", dev.transport_id) if tport else b""))
        return dev

    def device_query(self, dev: FakeDevice | str, command: str) -> None:
        if isinstance(dev, str):
            self.fail(dev)
        elif command == "get-state":
            self.okay(dev.state)
        elif command == "get-serialno":
            self.okay(dev.serial)
        elif command == "get-devpath":
            self.okay(f"usb:1-{dev.transport_id}")
        elif command == "features":
            self.okay(dev.features)
        else:
            self.fail(f"unsupported host-serial request {command!r}")

    # device services
    def device_service(self, dev: FakeDevice, req: str) -> None:
        dev.services += 1
        if dev.offline_after is not None and dev.services > dev.offline_after:
            dev.state = "offline"  # the phone drops off the bus in the middle of this command
            self.okay()
            return
        if req.startswith(("shell:", "shell,", "exec:")):
            options, _, command = req.partition(":")
            dev.commands.append(command)
            shell = _Shell(dev, self.server, self.client_gone)
            out, err, rc = shell.execute(command)
            if rc is None:
                return  # the client went away while the command hung
            if options.startswith("shell,") and "v2" in options.split(",")[1:]:
                self.okay()
                self.sock.sendall(_packet(1, out) + _packet(2, err) + _packet(3, bytes([rc & 0xFF])))
            else:  # shell v1 / exec: one stream, in the order the commands wrote it
                self.okay()
                self.sock.sendall(bytes(shell.combined))
        elif req == "sync:":
            self.okay()
            self.sync(dev)
        else:
            self.fail(f"unsupported device service {req!r}")

    def sync(self, dev: FakeDevice) -> None:
        while True:
            ident, length = self.recv_exact(4), struct.unpack("<I", self.recv_exact(4))[0]
            if ident == b"QUIT":
                return
            arg = self.recv_exact(length).decode("utf-8", "replace")
            if ident == b"STAT":
                path = dev.host_path(arg)
                if path.exists():
                    st = path.stat()
                    self.sock.sendall(b"STAT" + struct.pack("<III", st.st_mode, st.st_size, int(st.st_mtime)))
                else:
                    self.sock.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif ident == b"LIST":
                path = dev.host_path(arg)
                if path.is_dir():
                    for child in sorted(path.iterdir()):
                        st, name = child.stat(), child.name.encode()
                        self.sock.sendall(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size,
                                                                 int(st.st_mtime), len(name)) + name)
                self.sock.sendall(b"DONE" + bytes(16))
            elif ident == b"SEND":
                remote, _, mode = arg.rpartition(",")
                data = bytearray()
                while True:
                    cid, n = self.recv_exact(4), struct.unpack("<I", self.recv_exact(4))[0]
                    if cid == b"DATA":
                        data += self.recv_exact(n)
                    elif cid == b"DONE":
                        break
                    else:
                        return self.sync_fail(f"unexpected {cid!r} during SEND")
                if not remote.startswith("/"):
                    return self.sync_fail(f"remote path {remote!r} is not absolute")
                if dev.host_path(remote).is_dir():
                    return self.sync_fail(f"write failed: {remote}: Is a directory")
                if not dev.write_file(remote, bytes(data), int(mode or "420") & 0o777):
                    return self.sync_fail("write failed: No space left on device")
                self.sock.sendall(b"OKAY" + bytes(4))
            elif ident == b"RECV":
                path = dev.host_path(arg)
                if not path.is_file():
                    return self.sync_fail("open failed: No such file or directory")
                data = path.read_bytes()
                reply = b"".join(b"DATA" + struct.pack("<I", len(data[off: off + 65536])) + data[off: off + 65536]
                                 for off in range(0, len(data), 65536))
                self.sock.sendall(reply + b"DONE" + bytes(4))
            else:
                return self.sync_fail(f"unknown sync command {ident!r}")

    def sync_fail(self, message: str) -> None:
        raw = message.encode()
        self.sock.sendall(b"FAIL" + struct.pack("<I", len(raw)) + raw)  # adbd ends the session


def _packet(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + struct.pack("<I", len(data)) + data if data or kind == 3 else b""


def _device_line(dev: FakeDevice, long: bool) -> str:
    if not long:
        return f"{dev.serial}\t{dev.state}\n"
    extra = f" usb:1-{dev.transport_id}"
    if dev.state == "device":
        p = dev.properties
        extra += (f" product:{p.get('ro.product.name', '')} model:{p.get('ro.product.model', '').replace(' ', '_')}"
                  f" device:{p.get('ro.product.device', '')}")
    return f"{dev.serial:<22} {dev.state}{extra} transport_id:{dev.transport_id}\n"


# --- the phone's shell ----------------------------------------------------------------------

class _Shell:
    def __init__(self, dev: FakeDevice, server: FakeAdbServer, client_gone):
        self.dev, self.server, self.client_gone = dev, server, client_gone

    def cancelled(self) -> bool:
        return self.server.stopping.is_set() or self.client_gone()

    def execute(self, command: str) -> tuple[bytes, bytes, int | None]:
        """Run a command line; (stdout, stderr, exit code), exit code None when the client
        left while a command was hanging."""
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:
            self.combined = bytearray(f"{SH}: syntax error: {exc}\n".encode())
            return b"", bytes(self.combined), 2
        out, err, rc = bytearray(), bytearray(), 0
        self.combined = bytearray()
        connector, words = ";", []
        for tok in tokens + [";"]:
            if tok in (";", "&&", "||"):
                if words:
                    run = connector == ";" or (connector == "&&" and rc == 0) or (connector == "||" and rc != 0)
                    if run:
                        result = self.simple([w.replace("$?", str(rc)) for w in words])
                        if result is None:
                            return bytes(out), bytes(err), None
                        o, e, rc = result
                        out += o
                        err += e
                        self.combined += o + e  # what a single-stream (shell v1) client sees
                connector, words = tok, []
            elif tok in ("|", "&", "|&"):
                message = f"{SH}: '{tok}' is not supported by the simulator\n".encode()
                self.combined += message
                return bytes(out), bytes(err) + message, 2
            else:
                words.append(tok)
        return bytes(out), bytes(err), rc

    def simple(self, words: list[str]) -> tuple[bytes, bytes, int] | None:
        argv, merge, stdout_file, append = [], False, None, False
        i = 0
        while i < len(words):
            w = words[i]
            if w == "2" and i + 2 < len(words) + 1 and words[i + 1:i + 3] == [">&", "1"]:
                merge, i = True, i + 3
            elif w == "2" and i + 1 < len(words) and words[i + 1] == ">":
                i += 3  # 2> FILE: stderr discarded
            elif w in (">", ">>"):
                stdout_file, append, i = (words[i + 1] if i + 1 < len(words) else None), w == ">>", i + 2
            else:
                argv.append(w)
                i += 1
        if not argv:
            return b"", b"", 0
        result = self.command(argv)
        if result is None:
            return None
        out, err, rc = result
        if merge:
            out, err = out + err, b""
        if stdout_file and stdout_file != "/dev/null":
            path = self.dev.host_path(stdout_file)
            data = (path.read_bytes() if append and path.is_file() else b"") + out
            if not self.dev.write_file(stdout_file, data):
                err += f"{SH}: can't create {stdout_file}: No space left on device\n".encode()
                rc = 1
            out = b""
        elif stdout_file == "/dev/null":
            out = b""
        return out, err, rc

    def command(self, argv: list[str]) -> tuple[bytes, bytes, int] | None:
        name, args = argv[0], argv[1:]
        if "/" in name:
            return self.execute_file(name, args)
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None:
            return b"", f"{SH}: {name}: inaccessible or not found\n".encode(), 127
        return handler(args)

    # files on the device
    def execute_file(self, name: str, args: list[str]):
        path = self.dev.host_path(name)
        if not path.is_file():
            return b"", f"{SH}: {name}: inaccessible or not found\n".encode(), 127
        if self.dev.noexec or not os.access(path, os.X_OK):
            return b"", f"{SH}: {name}: can't execute: Permission denied\n".encode(), 126
        if path.name != "benchmark_model":
            return b"", f"{SH}: {name}: not executable: the simulator only runs benchmark_model\n".encode(), 126
        return FakeBenchmarkModel(self.dev, self).main(args)

    def wait_cancelled(self, seconds: float | None = None, kill: threading.Event | None = None) -> bool:
        """Sleep until the client leaves / the server stops / killed (True), or the time is up."""
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or time.monotonic() < end:
            if self.cancelled() or (kill is not None and kill.is_set()):
                return True
            time.sleep(0.02)
        return False

    # builtins
    def cmd_true(self, args):
        return b"", b"", 0

    def cmd_false(self, args):
        return b"", b"", 1

    def cmd_echo(self, args):
        newline = True
        if args and args[0] == "-n":
            newline, args = False, args[1:]
        return (" ".join(args) + ("\n" if newline else "")).encode(), b"", 0

    def cmd_getprop(self, args):
        props = self.dev.properties
        if args:
            return (props.get(args[0], "") + "\n").encode(), b"", 0
        return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())).encode(), b"", 0

    def cmd_sleep(self, args):
        try:
            seconds = float(args[0])
        except (IndexError, ValueError):
            return b"", b"sleep: bad duration\n", 1
        return None if self.wait_cancelled(seconds) else (b"", b"", 0)

    def cmd_rm(self, args):
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        err, rc = bytearray(), 0
        for target in (a for a in args if not a.startswith("-")):
            path = self.dev.host_path(target)
            if not path.exists():
                if "f" not in flags:
                    err += f"rm: {target}: No such file or directory\n".encode()
                    rc = 1
            elif path.is_dir() and "r" not in flags.lower():
                err += f"rm: {target}: Is a directory\n".encode()
                rc = 1
            else:
                self.dev.remove(path)
        return b"", bytes(err), rc

    def cmd_mkdir(self, args):
        parents = "-p" in args
        for target in (a for a in args if not a.startswith("-")):
            path = self.dev.host_path(target)
            if path.exists() and not parents:
                return b"", f"mkdir: '{target}': File exists\n".encode(), 1
            if not path.parent.exists() and not parents:
                return b"", f"mkdir: '{target}': No such file or directory\n".encode(), 1
            path.mkdir(parents=True, exist_ok=True)
        return b"", b"", 0

    def cmd_chmod(self, args):
        if len(args) < 2:
            return b"", b"chmod: Need 2 arguments\n", 1
        mode, targets = args[0], args[1:]
        for target in targets:
            path = self.dev.host_path(target)
            if not path.exists():
                return b"", f"chmod: {target}: No such file or directory\n".encode(), 1
            if mode == "+x":
                os.chmod(path, path.stat().st_mode | 0o111)
            else:
                try:
                    os.chmod(path, int(mode, 8) & 0o777)
                except ValueError:
                    return b"", f"chmod: bad mode '{mode}'\n".encode(), 1
        return b"", b"", 0

    def cmd_ls(self, args):
        long = any(a.startswith("-") and "l" in a for a in args)
        targets = [a for a in args if not a.startswith("-")] or ["/"]
        out, err, rc = bytearray(), bytearray(), 0
        for target in targets:
            path = self.dev.host_path(target)
            if not path.exists():
                err += f"ls: {target}: No such file or directory\n".encode()
                rc = 1
                continue
            for entry in (sorted(path.iterdir()) if path.is_dir() else [path]):
                if long:
                    st = entry.stat()
                    out += f"{stat.filemode(st.st_mode)} 1 shell shell {st.st_size} {entry.name}\n".encode()
                else:
                    out += (entry.name + "\n").encode()
        return bytes(out), bytes(err), rc

    def cmd_cat(self, args):
        out = bytearray()
        for target in args:
            path = self.dev.host_path(target)
            if not path.is_file():
                return bytes(out), f"cat: {target}: No such file or directory\n".encode(), 1
            out += path.read_bytes()
        return bytes(out), b"", 0

    def cmd_df(self, args):
        left = self.dev.space_left()
        avail = (10 ** 8) if left is None else max(0, left) // 1024
        used = max(0, self.dev._used) // 1024
        text = ("Filesystem       1K-blocks    Used Available Use% Mounted on\n"
                f"/dev/block/dm-48 {avail + used:>9} {used:>7} {avail:>9} "
                f"{(100 * used // max(1, avail + used)):>3}% /data\n")
        return text.encode(), b"", 0

    def cmd_service(self, args):
        if args[:1] != ["list"]:
            return b"", b"service: only `service list` is simulated\n", 1
        hals = [a for a in self.dev.accelerators if a != "nnapi-reference"]
        lines = [f"Found {len(hals) + 1} services:"]
        lines += [f"{i}\tandroid.hardware.neuralnetworks.IDevice/{a}: [android.hardware.neuralnetworks.IDevice]"
                  for i, a in enumerate(hals)]
        lines.append(f"{len(hals)}\tactivity: [android.app.IActivityManager]")
        return ("\n".join(lines) + "\n").encode(), b"", 0

    def cmd_pkill(self, args):
        pattern = next((a for a in args if not a.startswith("-")), None)
        hit = False
        for command, event in list(self.dev._kill_events):
            if pattern and pattern in command:
                event.set()
                hit = True
        return b"", b"", 0 if hit else 1


# --- benchmark_model ------------------------------------------------------------------------

_KNOWN_FLAGS = {
    "graph", "num_threads", "warmup_runs", "warmup_min_secs", "num_runs", "min_secs", "max_secs",
    "enable_op_profiling", "input_layer", "input_layer_shape", "input_layer_value_files",
    "input_layer_value_range", "output_filepath", "use_nnapi", "disable_nnapi_cpu",
    "nnapi_accelerator_name", "nnapi_execution_preference", "use_xnnpack", "use_gpu", "verbose", "run_delay",
}
# flag -> (the tool's provider name, the delegate kernel's node type, creation log lines)
_DELEGATES = {
    "use_nnapi": ("NNAPI", "TfLiteNnapiDelegate", ["Created TensorFlow Lite delegate for NNAPI."]),
    "use_gpu": ("GPU", "TfLiteGpuDelegateV2", ["Created TensorFlow Lite delegate for GPU.",
                                               "Initialized OpenCL-based API.", "Created 1 GPU delegate kernels."]),
    "use_xnnpack": ("XNNPACK", "TfLiteXNNPackDelegate", ["Created TensorFlow Lite XNNPACK delegate for CPU."]),
}


class FakeBenchmarkModel:
    """benchmark_model with one delegate on the fake phone; output in the real tool's format."""

    def __init__(self, dev: FakeDevice, shell: _Shell):
        self.dev, self.shell = dev, shell
        self.out: list[str] = []

    def log(self, level: str, text: str) -> None:
        self.out.append(f"{level}: {text}")

    def failed(self, *errors: str, rc: int = 1):
        for e in errors:
            self.log("ERROR", e)
        self.log("ERROR", "Benchmarking failed.")
        return self.text(), b"", rc

    def text(self) -> bytes:
        return ("\n".join(self.out) + "\n").encode()

    def main(self, args: list[str]):
        flags, unconsumed = {}, []
        for a in args:
            key, eq, value = a[2:].partition("=") if a.startswith("--") else ("", "", "")
            if eq and key in _KNOWN_FLAGS:
                flags[key] = value
            else:
                unconsumed.append(a)
        self.log("INFO", "STARTING!")
        if unconsumed:
            self.log("WARN", "Unconsumed cmdline flags: " + " ".join(unconsumed))
        graph = flags.get("graph", "")
        if not graph:
            return self.failed("Please specify the name of your TF Lite input file with --graph")
        names = [n for n in flags.get("input_layer", "").split(",") if n]
        shapes = [s for s in flags.get("input_layer_shape", "").split(":") if s]
        if len(names) != len(shapes):
            return self.failed(f"The number of items in --input_layer_shape ({flags.get('input_layer_shape', '')}, "
                               f"with {len(shapes)} items) must match the number of items in --input_layer "
                               f"({flags.get('input_layer', '')}, with {len(names)} items). For example "
                               "--input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20")
        value_files = {}
        for item in (i for i in flags.get("input_layer_value_files", "").split(",") if i):
            name, sep, path = item.partition(":")
            if not sep:
                return self.failed(f"Wrong input value file item specified: {item}")
            if name not in names:
                self.log("FATAL", f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
                                  f"{flags.get('input_layer', '')}")
                return self.text(), b"Aborted\n", 134
            value_files[name] = path
        self.log_params(flags)
        host_graph = self.dev.host_path(graph)
        if not host_graph.is_file():
            return self.failed(f"Could not open '{graph}'.", f"Failed to load model {graph}")
        self.log("INFO", f"Loaded model {graph}")
        use_nnapi = flags.get("use_nnapi", "false") in ("true", "1")
        accel = flags.get("nnapi_accelerator_name", "")
        if use_nnapi and accel and accel not in self.dev.accelerators:
            return self.failed(f"Could not find the specified NNAPI accelerator: {accel}. Must be one of: "
                               f"{{{','.join(self.dev.accelerators)}}}.", "Failed to apply NNAPI delegate.")
        if self.dev.hang:
            kill = threading.Event()
            self.dev._kill_events.append((" ".join([graph] + args), kill))
            try:
                self.shell.wait_cancelled(kill=kill)
            finally:
                self.dev._kill_events.remove((" ".join([graph] + args), kill))
            return None  # never finished: the client or pkill ended it
        input_file = value_files.get(names[0]) if names else None
        output = flags.get("output_filepath") or None
        host_out = self.dev.root / ".runner-output.bin"
        request = {"model": str(host_graph), "num_threads": int(flags.get("num_threads", "-1")),
                   "input": str(self.dev.host_path(input_file)) if input_file else None,
                   "warmup_runs": int(flags.get("warmup_runs", "1")),
                   "warmup_min_secs": float(flags.get("warmup_min_secs", "0.5")),
                   "num_runs": int(flags.get("num_runs", "50")), "min_secs": float(flags.get("min_secs", "1")),
                   "max_secs": float(flags.get("max_secs", "150")),
                   "output": str(host_out) if output else None}
        if input_file and not self.dev.host_path(input_file).is_file():
            self.log("FATAL", f"Failed to read the input_layer_value_file:{input_file}")
            return self.text(), b"Aborted\n", 134
        reply = self.dev.run_model(request)
        if reply is None:
            return self.text(), b"Segmentation fault\n", 139
        if reply.get("error") == "input-size":
            self.log("FATAL", f"The size of {input_file} is {reply['actual']} bytes. It should be "
                              f"{reply['expected']} bytes.")
            return self.text(), b"Aborted\n", 134
        if reply.get("error"):
            return self.failed(reply.get("message", reply["error"]))
        plan = self.delegate(reply, flags)
        self.log("INFO", f"The input model file size (MB): {host_graph.stat().st_size / 1e6:g}")
        self.log("INFO", f"Initialized session in {reply['init_us'] / 1e3:g}ms.")
        warmup, runs = reply["warmup_us"], reply["runs_us"]
        self.log("INFO", f"Running benchmark for at least {request['warmup_runs']} iterations and at least "
                         f"{request['warmup_min_secs']:g} seconds but terminate if exceeding "
                         f"{request['max_secs']:g} seconds.")
        self.log("INFO", _stat_line(warmup) + "\n")
        self.log("INFO", f"Running benchmark for at least {request['num_runs']} iterations and at least "
                         f"{request['min_secs']:g} seconds but terminate if exceeding "
                         f"{request['max_secs']:g} seconds.")
        self.log("INFO", _stat_line(runs) + "\n")
        if flags.get("enable_op_profiling", "false") in ("true", "1"):
            self.log("INFO", _profile(plan, runs))
        first = int(warmup[0]) if warmup else 0
        warm_avg = sum(warmup) / len(warmup) if warmup else float("nan")
        avg = sum(runs) / len(runs) if runs else float("nan")
        self.log("INFO", f"Inference timings in us: Init: {int(reply['init_us'])}, First inference: {first}, "
                         f"Warmup (avg): {warm_avg:g}, Inference (avg): {avg:g}")
        if output:
            data = host_out.read_bytes()
            host_out.unlink()
            self.dev.write_file(output, data, 0o644)  # the real tool ignores a failed write too
        return self.text(), b"", 0

    def log_params(self, flags: dict) -> None:
        self.log("INFO", "Log parameter values verbosely: [0]")
        labels = [("num_runs", "Min num runs"), ("min_secs", "Min runs duration (seconds)"),
                  ("num_threads", "Num threads"), ("warmup_runs", "Min warmup runs"),
                  ("warmup_min_secs", "Min warmup runs duration (seconds)"), ("graph", "Graph"),
                  ("input_layer", "Input layers"), ("input_layer_shape", "Input shapes"),
                  ("input_layer_value_files", "Input value files"), ("enable_op_profiling", "Enable op profiling"),
                  ("output_filepath", "File path to export outputs layer as binary data")]
        for key, label in labels:
            if key in flags:
                value = flags[key]
                value = {"true": "1", "false": "0"}.get(value, value)
                self.log("INFO", f"{label}: [{value}]")
        if flags.get("use_nnapi", "false") in ("true", "1"):
            self.log("INFO", "Use NNAPI: [1]")
            if flags.get("nnapi_accelerator_name"):
                self.log("INFO", f"NNAPI accelerator name: [{flags['nnapi_accelerator_name']}]")
            self.log("INFO", f"NNAPI accelerators available: [{','.join(self.dev.accelerators)}]")
            if flags.get("disable_nnapi_cpu") in ("true", "1"):
                self.log("INFO", "Disable NNAPI cpu: [1]")
        if flags.get("use_gpu", "false") in ("true", "1"):
            self.log("INFO", "Use gpu: [1]")
        if flags.get("use_xnnpack", "false") in ("true", "1"):
            self.log("INFO", "Use xnnpack: [1]")

    def delegate(self, reply: dict, flags: dict) -> list[str]:
        """Print what TFLite and the tool print when applying the requested delegate; the
        execution plan (node types in order, a delegate partition as one node)."""
        ops = reply["ops"]
        total = len(ops)
        chosen = [f for f in _DELEGATES if flags.get(f, "false") in ("true", "1")]
        if not chosen:
            return ops
        provider, kernel, created = _DELEGATES[chosen[0]]
        for line in created:
            self.log("INFO", line)
        api = int(self.dev.properties.get("ro.build.version.sdk", "34"))
        if provider == "NNAPI" and api < 29 and reply.get("has_int8"):
            taken = 0  # NNAPI 1.1: no per-channel / signed int8 operands
        elif self.dev.delegate_nodes is None:
            taken = total
        else:
            taken = max(0, min(self.dev.delegate_nodes, total))
        if taken and self.dev.replacing_line:
            partitions = 1 if taken == total else 2
            self.log("INFO", f"Replacing {taken} out of {total} node(s) with delegate ({kernel}) "
                             f"node, yielding {partitions} partitions for subgraph 0 (main).")
        plan = ([kernel] if taken else []) + ops[taken:]
        if taken and len(plan) == 1:
            self.log("INFO", f"Explicitly applied {provider} delegate, and the model graph will be completely "
                             "executed by the delegate.")
        elif taken:
            self.log("INFO", f"Explicitly applied {provider} delegate, and the model graph will be partially "
                             "executed by the delegate w/ 1 delegate kernels.")
        else:
            self.log("INFO", f"Though {provider} delegate is explicitly applied, the model graph will not be "
                             "executed by the delegate.")
        return plan


def _stat_line(values: list[float]) -> str:
    """tensorflow::Stat<int64_t>::OutputToStream."""
    v = [int(x) for x in values]
    if not v:
        return "count=0"
    if min(v) == max(v):
        return f"count={len(v)} curr={v[-1]}" + ("(all same)" if len(v) > 1 else "")
    avg = sum(v) / len(v)
    std = int((sum(x * x for x in v) / len(v) - avg * avg) ** 0.5)
    return f"count={len(v)} first={v[0]} curr={v[-1]} min={min(v)} max={max(v)} avg={avg:g} std={std}"


def _profile(plan: list[str], runs: list[float]) -> str:
    """The op-profiling block of benchmark_model (ProfileSummaryDefaultFormatter layout); each
    run's time split evenly across the plan's nodes (the simulator has no per-op timer)."""
    avg_ms = (sum(runs) / len(runs) / 1e3) if runs else 0.0
    per = avg_ms / max(1, len(plan))
    head = "\t" + "\t".join(["             [node type]", "  [first]", " [avg ms]", "     [%]", "  [cdf%]",
                             "  [mem KB]", "[times called]", "[Name]"])
    rows, cdf = [], 0.0
    for i, op in enumerate(plan):
        pct = 100.0 / len(plan)
        cdf += pct
        rows.append("\t" + "\t".join([f"{op:>24}", f"{per:9.3f}", f"{per:9.3f}", f"{pct:7.3f}%", f"{cdf:7.3f}%",
                                      f"{0:10.3f}", f"{1:>9}", f"[{op.lower()}:{i}]"]))
    counts: dict[str, int] = {}
    for op in plan:
        counts[op] = counts.get(op, 0) + 1
    summary_head = "\t" + "\t".join(["             [Node type]", "  [count]", "  [avg ms]", "    [avg %]",
                                     "    [cdf %]", "  [mem KB]", "[times called]"])
    summary, cdf = [], 0.0
    for op, n in counts.items():
        pct = 100.0 * n / len(plan)
        cdf += pct
        summary.append("\t" + "\t".join([f"{op:>24}", f"{n:>9}", f"{per * n:10.3f}", f"{pct:10.3f}%",
                                         f"{cdf:10.3f}%", f"{0:10.3f}", f"{n:>9}"]))
    return "\n".join(["Operator-wise Profiling Info for Regular Benchmark Runs:",
                      "============================== Run Order ==============================", head, *rows, "",
                      "============================== Top by Computation Time ==============================",
                      head, *rows, "", f"Number of nodes executed: {len(plan)}",
                      "============================== Summary by node type ==============================",
                      summary_head, *summary, "",
                      "Timings (microseconds): " + _stat_line(runs), "Memory (bytes): count=0",
                      f"{len(plan)} nodes observed", ""])
