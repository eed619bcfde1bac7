"""The harness's folder on a phone and the adb calls made in it.

Everything goes to ``/data/local/tmp/qat-harness/<session>/``: the benchmark_model binary once
per session, each run's files in a sub-folder removed after the run; ``close()`` removes the
session folder. Every call is bound to the caller's deadline, and a lost connection is
explained (did the phone go away, or only the connection?).
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from qat_harness.core.errors import DeviceError
from qat_harness.devices.android.adb import ShellResult, quote_command
from qat_harness.devices.android.benchmark_tool import shell_error
from qat_harness.devices.android.phone import Phone

REMOTE_ROOT = "/data/local/tmp/qat-harness"


class RemoteFolder:
    """One session's folder on the phone. ``serial`` must be selected before any call."""

    def __init__(self, phone: Phone):
        self.phone = phone
        self.session = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.path = f"{REMOTE_ROOT}/{self.session}"
        self.binary = f"{self.path}/benchmark_model"
        self._binary_pushed = False
        self._used = False
        self._runs = 0

    @property
    def serial(self) -> str:
        return self.phone.select()

    def new_run_dir(self) -> str:
        self._runs += 1
        return f"{self.path}/run{self._runs}"

    def ensure_binary(self, local: Path, deadline: float) -> None:
        if self._binary_pushed:
            return
        self._used = True  # from here on close() may have a folder to remove
        self.push([(Path(local), self.binary, 0o755)], deadline)
        self._binary_pushed = True
        res = self.shell(quote_command(["chmod", "755", self.binary]), deadline)
        if res.returncode != 0:
            raise shell_error(res.output, res.returncode, f"chmod of {self.binary}")

    # --- adb calls bound to a deadline ---------------------------------------------------------

    def shell(self, command: str, deadline: float, kill_on_timeout: bool = False) -> ShellResult:
        try:
            return self.phone.transport.shell(self.serial, command, _left(deadline))
        except DeviceError as exc:
            if exc.kind == "timeout" and kill_on_timeout:
                self._kill_leftovers()
                raise DeviceError(f"benchmark_model did not finish in time on {self.serial}", kind="timeout",
                                  details=exc.details) from None
            raise self._explain(exc) from None

    def push(self, files: list[tuple[bytes | Path, str, int]], deadline: float) -> None:
        try:
            self.phone.transport.push(self.serial, files, _left(deadline))
        except DeviceError as exc:
            raise self._explain(exc) from None

    def pull(self, remotes: list[str], deadline: float) -> dict[str, bytes | None]:
        try:
            return self.phone.transport.pull(self.serial, remotes, _left(deadline))
        except DeviceError as exc:
            raise self._explain(exc) from None

    def disk_full(self, deadline: float) -> bool:
        try:
            res = self.shell(quote_command(["df", REMOTE_ROOT.rsplit("/", 1)[0]]), deadline)
        except DeviceError:
            return False
        for line in res.stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 4 and cols[3].isdigit():
                return int(cols[3]) == 0
        return False

    # --- cleanup -------------------------------------------------------------------------------

    def remove(self, remote_path: str) -> None:
        """Best-effort; a phone that went away keeps its files until the next session."""
        if not remote_path.startswith(REMOTE_ROOT + "/"):
            return  # never remove anything outside the harness's folder
        try:
            self.phone.transport.shell(self.serial, quote_command(["rm", "-rf", remote_path]), timeout_s=30)
        except DeviceError:
            pass

    def close(self) -> None:
        if self.phone.serial is not None and self._used:
            self.remove(self.path)
        self._used = self._binary_pushed = False

    def _kill_leftovers(self) -> None:
        """After a timeout: stop what still runs from this session on the phone (best effort)."""
        try:
            self.phone.transport.shell(self.serial, quote_command(["pkill", "-f", self.path]), timeout_s=10)
        except DeviceError:
            pass

    def _explain(self, exc: DeviceError) -> DeviceError:
        """A connection lost mid-run: say whether the phone went away."""
        if exc.kind != "offline":
            return exc
        serial = self.serial
        try:
            states = {e.serial: e.state for e in self.phone.transport.devices()}
        except DeviceError:
            return DeviceError(f"device {serial} went offline: {exc.reason}", kind="offline")
        state = states.get(serial, "gone")
        if state == "device":
            return DeviceError(f"connection to {serial} lost: {exc.reason}", kind="offline")
        return DeviceError(f"device {serial} went offline during the run (adb state now: {state}); "
                           "check the cable or `adb reconnect`", kind="offline")


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeviceError("ran out of time", kind="timeout")
    return left
