"""Run a piece of work in a child Python process, so that a runtime that aborts (LiteRT's
reference kernels SIGABRT on some int8 graphs), segfaults or hangs becomes a DeviceError with
its signal or timeout, and the harness goes on.

The child gets a JSON request file and writes a JSON response file; arrays travel as .npy
files (loaded with allow_pickle=False). No shell is involved anywhere.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from qat_harness.devices.base import DeviceError


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_child(module: str, request: dict, timeout_s: float, workdir: Path | None = None) -> dict:
    """Run ``python -m module request.json response.json`` and return the response dict.

    Raises DeviceError(kind='crash') when the child dies by a signal, kind='timeout' when it
    outlives ``timeout_s`` (the whole process group is killed), kind='failed' when it exits
    non-zero or reports an error itself.
    """
    with tempfile.TemporaryDirectory(prefix="qat-child-", dir=workdir) as tmp:
        req_path = Path(tmp) / "request.json"
        resp_path = Path(tmp) / "response.json"
        req_path.write_text(json.dumps(request))
        cmd = [sys.executable, "-m", module, str(req_path), str(resp_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env=os.environ.copy())
        try:
            _out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise DeviceError(f"timed out after {timeout_s:.0f} s", kind="timeout")
        tail = _stderr_tail(err)
        if proc.returncode < 0:
            raise DeviceError(f"runtime crashed with {_signal_name(proc.returncode)}"
                              + (f": {tail}" if tail else ""), kind="crash",
                              details={"signal": _signal_name(proc.returncode)})
        if not resp_path.exists():
            raise DeviceError(f"child exited with code {proc.returncode} and no result"
                              + (f": {tail}" if tail else ""), kind="failed")
        response = json.loads(resp_path.read_text())
        if "error" in response:
            raise DeviceError(response["error"], kind=response.get("kind", "failed"))
        return response


def _stderr_tail(err: bytes, lines: int = 3) -> str:
    """The last meaningful stderr lines, without TensorFlow's log noise."""
    text = err.decode("utf-8", "replace").strip().splitlines()
    keep = [l for l in text if l.strip() and not l.startswith(("WARNING: All log", "I0000", "W0000"))]
    return " | ".join(keep[-lines:])[:500]
