"""Talking to an adb server: device list, shell commands with exit codes and an overall
deadline, and file push/pull over the sync protocol.

Why ``adbutils`` and not the ``adb`` command line: it is a pure-Python client of the adb
server's socket protocol, so the harness needs no ``adb`` binary at all when the server is on
another machine (device farms export ``ADB_SERVER_SOCKET=tcp:host:port``), and every answer
(device states, FAIL messages, exit codes) arrives as data instead of text to scrape. Three
things it does not do the way the harness needs, handled here:

- It ignores ``ADB_SERVER_SOCKET`` (it reads only ``ANDROID_ADB_SERVER_PORT`` and a non-standard
  ``ANDROID_ADB_SERVER_HOST``): ``server_address`` parses the variables the way ``adb`` does.
- When the server does not answer it silently runs ``adb start-server`` (with the adb binary it
  bundles). A probe must never start daemons, and starting a local server is wrong for a remote
  one: ``_NoAutoStartConnection`` only connects.
- Its shell timeout is per ``recv`` (a chatty command never times out) and its sync push drops
  the device's FAIL message ("No space left on device"): shell v2 and sync are read here, on
  its transport connections, with one deadline per call.

Every failure becomes a ``DeviceError`` with a kind: 'offline' (server or device gone,
unauthorized), 'timeout', 'disk-full', 'failed'.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path

from adbutils import AdbClient, AdbConnection, AdbDevice, AdbError

from qat_harness.devices.base import DeviceError

DEFAULT_PORT = 5037
INSTALL_HINT = ("start one with `adb start-server` (Debian/Ubuntu: `apt install adb`; or Google's "
                "SDK platform-tools, https://developer.android.com/tools/releases/platform-tools)")
SYNC_CHUNK = 64 * 1024  # the sync protocol's maximum DATA size
_EXIT_MARK = "@@qat-exit:"


@dataclasses.dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int
    source: str  # which setting chose it, for messages

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class AdbConfigError(ValueError):
    """An adb environment variable the harness cannot use."""


def server_address(env: Mapping[str, str] | None = None) -> ServerAddress:
    """Where the adb server is, read as ``adb`` itself reads it: ``ADB_SERVER_SOCKET``
    (``tcp:HOST:PORT``, ``tcp:PORT``, ``tcp:[IPv6]:PORT``) first, then
    ``ANDROID_ADB_SERVER_ADDRESS`` / ``ANDROID_ADB_SERVER_PORT``, then 127.0.0.1:5037."""
    env = os.environ if env is None else env
    spec = env.get("ADB_SERVER_SOCKET", "").strip()
    if spec:
        return _parse_socket_spec(spec)
    host = env.get("ANDROID_ADB_SERVER_ADDRESS", "").strip()
    port_text = env.get("ANDROID_ADB_SERVER_PORT", "").strip()
    port = _parse_port(port_text, "ANDROID_ADB_SERVER_PORT") if port_text else DEFAULT_PORT
    source = ", ".join(n for n, v in (("ANDROID_ADB_SERVER_ADDRESS", host),
                                      ("ANDROID_ADB_SERVER_PORT", port_text)) if v) or "default"
    return ServerAddress(host or "127.0.0.1", port, source)


def _parse_socket_spec(spec: str) -> ServerAddress:
    if not spec.startswith("tcp:"):
        raise AdbConfigError(f"ADB_SERVER_SOCKET={spec!r}: only tcp:HOST:PORT servers are supported "
                             "(a local socket spec such as localfilesystem: is not)")
    rest = spec[len("tcp:"):]
    if rest.startswith("["):  # tcp:[::1]:5037
        host, sep, port = rest[1:].partition("]:")
        if not sep:
            raise AdbConfigError(f"ADB_SERVER_SOCKET={spec!r}: expected tcp:[IPv6]:PORT")
    elif ":" in rest:
        host, port = rest.rsplit(":", 1)
    else:
        host, port = "localhost", rest
    if not host:
        raise AdbConfigError(f"ADB_SERVER_SOCKET={spec!r}: empty host")
    return ServerAddress(host, _parse_port(port, "ADB_SERVER_SOCKET"), "ADB_SERVER_SOCKET")


def _parse_port(text: str, var: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise AdbConfigError(f"{var}: {text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise AdbConfigError(f"{var}: port {port} is out of range")
    return port


@dataclasses.dataclass
class DeviceEntry:
    serial: str
    state: str  # 'device', 'unauthorized', 'offline', 'recovery', ...
    tags: dict


@dataclasses.dataclass
class ShellResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def quote_command(argv: list[str]) -> str:
    """One command line for the device's shell, every argument quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class _NoAutoStartConnection(AdbConnection):
    """adbutils' connection without its fallback of running ``adb start-server``."""

    def _safe_connect(self):
        return self._create_socket()


class _Client(AdbClient):
    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        conn = _NoAutoStartConnection(self.host, self.port)
        if timeout:
            conn.conn.settimeout(timeout)
        return conn


def classify(message: str) -> str:
    """DeviceError kind for an adb server / adbd / device-side failure message."""
    low = message.lower()
    if "no space left" in low:
        return "disk-full"
    if any(s in low for s in ("offline", "not found", "unauthorized", "no devices",
                              "connection refused", "connection reset", "closed")):
        return "offline"
    return "failed"


class AdbTransport:
    """One adb server. Methods taking ``serial`` talk to that device through the server."""

    def __init__(self, address: ServerAddress, connect_timeout_s: float = 3.0):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self._client = _Client(address.host, address.port)
        self._features: dict[str, set[str]] = {}

    # --- server ----------------------------------------------------------------------------

    def unreachable_reason(self) -> str | None:
        """None when something accepts connections at the address, else why not (never
        starts a server)."""
        try:
            with socket.create_connection((self.address.host, self.address.port),
                                          timeout=self.connect_timeout_s):
                return None
        except OSError as exc:
            return (f"no adb server reachable at {self.address} ({self.address.source}): "
                    f"{exc.strerror or exc}; {INSTALL_HINT}")

    def server_version(self) -> int:
        return self._guard(lambda: self._client.server_version(), "asking the adb server's version")

    def devices(self) -> list[DeviceEntry]:
        infos = self._guard(lambda: self._client.list(extended=True), "listing devices")
        return [DeviceEntry(i.serial, i.state, dict(i.tags)) for i in infos]

    def features(self, serial: str) -> set[str]:
        if serial not in self._features:
            text = self._guard(lambda: self._device(serial).get_features(), "reading device features")
            self._features[serial] = {f for f in text.strip().split(",") if f}
        return self._features[serial]

    # --- shell -----------------------------------------------------------------------------

    def shell(self, serial: str, command: str, timeout_s: float) -> ShellResult:
        """Run ``command`` (already quoted) in the device's shell. Exit code from shell v2
        when the device offers it, else from an echoed marker."""
        deadline = time.monotonic() + timeout_s
        v2 = "shell_v2" in self.features(serial)
        service = f"shell,v2,raw:{command}" if v2 else f"shell:{command}; echo {_EXIT_MARK}$?"
        conn = self._open(serial, service, timeout_s, what=f"running `{_short(command)}`")
        try:
            if v2:
                return _read_shell_v2(conn, deadline, command)
            return _read_shell_v1(conn, deadline, command)
        finally:
            conn.close()

    # --- sync (push / pull) ----------------------------------------------------------------

    def push(self, serial: str, files: list[tuple[bytes | Path, str, int]], timeout_s: float) -> None:
        """Send files to the device in one sync session: (content or local path, remote path,
        permission bits). Raises DeviceError(kind='disk-full') when the device runs out of
        space."""
        deadline = time.monotonic() + timeout_s
        conn = self._open(serial, "sync:", timeout_s, what="opening a sync session")
        try:
            for content, remote, mode in files:
                data = content.read_bytes() if isinstance(content, Path) else bytes(content)
                _send_file(conn, data, remote, mode, deadline)
            _sync_request(conn, b"QUIT", b"", deadline)
        finally:
            conn.close()

    def pull(self, serial: str, remotes: list[str], timeout_s: float) -> dict[str, bytes | None]:
        """Fetch files; a file that does not exist maps to None. adbd ends a sync session
        after a FAIL, so a new session is opened after each missing file."""
        deadline = time.monotonic() + timeout_s
        result: dict[str, bytes | None] = {}
        pending = list(remotes)
        while pending:
            conn = self._open(serial, "sync:", max(0.1, deadline - time.monotonic()),
                              what="opening a sync session")
            try:
                while pending:
                    remote = pending.pop(0)
                    data = _recv_file(conn, remote, deadline)
                    result[remote] = data
                    if data is None:
                        break  # the session is over
            finally:
                conn.close()
        return result

    # --- plumbing --------------------------------------------------------------------------

    def _device(self, serial: str) -> AdbDevice:
        return AdbDevice(self._client, serial=serial)

    def _open(self, serial: str, service: str, timeout_s: float, what: str) -> AdbConnection:
        """A connection switched to the device with ``service`` started on it."""
        def go():
            conn = self._device(serial).open_transport(timeout=max(0.1, timeout_s))
            try:
                conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.send_command(service)
                conn.check_okay()
            except BaseException:
                conn.close()
                raise
            return conn
        return self._guard(go, what)

    def _guard(self, fn, what: str):
        """Run an adbutils call; map its exceptions to DeviceError."""
        try:
            return fn()
        except DeviceError:
            raise
        except (socket.timeout, TimeoutError) as exc:
            raise DeviceError(f"adb timed out {what}", kind="timeout") from exc
        except AdbError as exc:
            msg = " ".join(str(a) for a in exc.args).strip() or type(exc).__name__
            if "connect to adb server" in msg:
                raise DeviceError(f"no adb server reachable at {self.address}: {msg}; {INSTALL_HINT}",
                                  kind="offline") from exc
            if "timeout" in type(exc).__name__.lower():
                raise DeviceError(f"adb timed out {what}", kind="timeout") from exc
            first = msg.splitlines()[0]
            raise DeviceError(f"adb failed {what}: {first}", kind=classify(msg)) from exc
        except (EOFError, ConnectionError, OSError) as exc:
            raise DeviceError(f"adb connection lost {what}: {exc or type(exc).__name__}",
                              kind="offline") from exc


def _short(command: str, n: int = 80) -> str:
    return command if len(command) <= n else command[: n - 3] + "..."


def _recv_exact(conn: AdbConnection, n: int, deadline: float) -> bytes:
    """Exactly n bytes before the deadline; TimeoutError / EOFError otherwise."""
    buf = bytearray()
    sock = conn.conn
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed by the adb server")
        buf += chunk
    return bytes(buf)


def _read_shell_v2(conn: AdbConnection, deadline: float, command: str) -> ShellResult:
    """The shell protocol: packets of [id:1][length:4 LE][data]; 1 stdout, 2 stderr, 3 exit."""
    out, err = bytearray(), bytearray()
    try:
        while True:
            header = _recv_exact(conn, 5, deadline)
            kind, length = header[0], struct.unpack("<I", header[1:])[0]
            data = _recv_exact(conn, length, deadline) if length else b""
            if kind == 1:
                out += data
            elif kind == 2:
                err += data
            elif kind == 3:
                return ShellResult(data[0] if data else 255, _text(out), _text(err))
    except TimeoutError:
        raise DeviceError(f"`{_short(command)}` did not finish in time", kind="timeout",
                          details={"partial_output": _text(out + err)[-2000:]}) from None
    except (EOFError, OSError) as exc:
        raise DeviceError(f"connection to the device lost during `{_short(command)}`: {exc}",
                          kind="offline", details={"partial_output": _text(out + err)[-2000:]}) from None


def _read_shell_v1(conn: AdbConnection, deadline: float, command: str) -> ShellResult:
    out = bytearray()
    sock = conn.conn
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except (TimeoutError, socket.timeout):
        raise DeviceError(f"`{_short(command)}` did not finish in time", kind="timeout") from None
    except OSError as exc:
        raise DeviceError(f"connection to the device lost during `{_short(command)}`: {exc}",
                          kind="offline") from None
    text = _text(out)
    marks = list(re.finditer(re.escape(_EXIT_MARK) + r"(\d+)\r?\n?", text))
    if not marks:  # the shell never reached the marker: it was cut off
        raise DeviceError(f"connection to the device lost during `{_short(command)}`", kind="offline",
                          details={"partial_output": text[-2000:]})
    last = marks[-1]  # stderr may come after it: shell v1 has a single stream
    return ShellResult(int(last.group(1)), text[: last.start()] + text[last.end():], "")


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


def _sync_request(conn: AdbConnection, ident: bytes, payload: bytes, deadline: float) -> None:
    _send_all(conn, ident + struct.pack("<I", len(payload)) + payload, deadline)


def _send_all(conn: AdbConnection, data: bytes, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeviceError("adb sync timed out", kind="timeout")
    conn.conn.settimeout(left)
    try:
        conn.conn.sendall(data)
    except (socket.timeout, TimeoutError):
        raise DeviceError("adb sync timed out", kind="timeout") from None


def _send_file(conn: AdbConnection, data: bytes, remote: str, mode: int, deadline: float) -> None:
    spec = f"{remote},{0o100000 | mode}".encode()  # S_IFREG | permission bits
    # whole 64 kB DATA packets per write: many small writes of one file would wait on Nagle
    # and delayed ACKs (~40 ms each on a loopback socket)
    packets = [b"SEND" + struct.pack("<I", len(spec)) + spec]
    for off in range(0, len(data), SYNC_CHUNK):
        chunk = data[off: off + SYNC_CHUNK]
        packets.append(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
    packets.append(b"DONE" + struct.pack("<I", int(time.time())))  # DONE carries the mtime
    try:
        for start in range(0, len(packets), 16):
            _send_all(conn, b"".join(packets[start: start + 16]), deadline)
    except (BrokenPipeError, ConnectionResetError):
        pass  # adbd may answer FAIL and hang up before taking all the data: read why below
    try:
        header = _recv_exact(conn, 8, deadline)
        ident, length = header[:4], struct.unpack("<I", header[4:])[0]
        if ident == b"OKAY":
            return
        message = _text(_recv_exact(conn, length, deadline)) if ident == b"FAIL" else repr(header)
    except TimeoutError:
        raise DeviceError(f"pushing {remote} timed out", kind="timeout") from None
    except (EOFError, OSError) as exc:
        raise DeviceError(f"connection to the device lost while pushing {remote}: {exc}",
                          kind="offline") from None
    raise DeviceError(f"pushing {remote} failed: {message}", kind=classify(message))


def _recv_file(conn: AdbConnection, remote: str, deadline: float) -> bytes | None:
    try:
        _sync_request(conn, b"RECV", remote.encode(), deadline)
        data = bytearray()
        while True:
            header = _recv_exact(conn, 8, deadline)
            ident, length = header[:4], struct.unpack("<I", header[4:])[0]
            if ident == b"DATA":
                data += _recv_exact(conn, length, deadline)
            elif ident == b"DONE":
                return bytes(data)
            elif ident == b"FAIL":
                message = _text(_recv_exact(conn, length, deadline))
                if "no such file" in message.lower():
                    return None
                raise DeviceError(f"pulling {remote} failed: {message}", kind=classify(message))
            else:
                raise DeviceError(f"pulling {remote}: unexpected sync reply {header!r}", kind="failed")
    except TimeoutError:
        raise DeviceError(f"pulling {remote} timed out", kind="timeout") from None
    except (EOFError, OSError) as exc:
        raise DeviceError(f"connection to the device lost while pulling {remote}: {exc}",
                          kind="offline") from None
