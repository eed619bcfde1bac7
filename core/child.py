"""Every piece of work the harness isolates runs in a child Python process started here: model
executions (LiteRT's reference kernels SIGABRT on some int8 graphs), Keras 2 training and
conversion, the layer probes, runtime queries. A child that aborts, segfaults or hangs becomes
a ``DeviceError`` with its signal or timeout, and the harness goes on.

Two shapes, one start-up:

- ``run_child(module, request)``: a one-shot child. It gets a JSON request file and writes a
  JSON response file (arrays travel as .npy files, loaded with ``allow_pickle=False``). The
  child side is ``serve_once(handler)``.
- ``ServingChild(module)``: a long-lived child that answers JSON-lines requests on stdin with
  ``{"event": "ready"}`` once, then ``{"event": "stage", ...}`` progress and one
  ``{"event": "result", ...}`` per request; restarted after it dies. The child side is
  ``serve_lines(handler)``.

Every child starts the same way (``child_command``/``child_environment``): the interpreter that
runs the harness, ``-P`` so that neither the current folder nor the script folder is put on
``sys.path`` (a ``json.py`` lying in the user's folder must never run), started in a private
temporary folder, in its own process group (a timeout kills the whole group), with the Keras 2
environment of ``core.keras2``. No shell is involved anywhere.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Callable, cast

from qat_harness.core import keras2
from qat_harness.core.errors import DeviceError

PROGRESS_PREFIX = "@qat-progress "
_STDERR_NOISE = ("WARNING: All log", "I0000", "W0000", "E0000", "WARNING:tensorflow", "warnings.warn")


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI systems and ``timeout`` send), raised in the main thread so that it
    takes the same way out as Ctrl-C: children killed, the report finished as interrupted.
    A subclass of KeyboardInterrupt so that every ``except KeyboardInterrupt`` covers it."""


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside, SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt`` in the main
    thread, whatever disposition the process inherited (outside the main thread, or on a
    platform without SIGTERM, nothing changes).

    SIGINT is taken even when it was inherited as ignored: a shell ignores it in every job a
    script starts with ``&`` (and ``nohup ... &`` in a script), and some CI runners start steps
    that way, yet a CI system that cancels with SIGINT must get an ``interrupted`` report, not
    a run that goes on unseen. A run started in the background keeps what it measured when
    stopped and ``--resume`` finishes it; to keep a terminal's Ctrl-C away from it, start it in
    its own session (``setsid``)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def child_command(module: str) -> list[str]:
    return [sys.executable, "-P", "-m", module]


#: Set in every child's environment: the harness process the child must not outlive.
PARENT_ENV = "QAT_HARNESS_PARENT_PID"
#: Where Python's tempfile (and most libraries) put temporary files.
TEMP_FOLDER_ENV = ("TMPDIR", "TEMP", "TMP")


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = keras2.child_environment()
    env.update(extra or {})
    env[PARENT_ENV] = str(os.getpid())
    return env


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(module: str, request: dict, timeout_s: float, workdir: Path | None = None,
              env: dict[str, str] | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Run ``module`` as a one-shot child on ``request`` and return its response dict.

    Raises DeviceError(kind='crash') when the child dies by a signal, kind='timeout' when it
    outlives ``timeout_s`` (the whole process group is killed), kind='failed' when it exits
    non-zero or reports an error itself (the child's own ``kind`` is kept). An interrupt of
    the harness (Ctrl-C, SIGTERM turned into an exception) kills the child before it
    propagates, so no child outlives the harness. ``progress`` receives what the child says
    with ``report_progress`` while it works.
    """
    with tempfile.TemporaryDirectory(prefix="qat-child-", dir=workdir) as tmp:
        req_path = Path(tmp) / "request.json"
        resp_path = Path(tmp) / "response.json"
        req_path.write_text(json.dumps(request))
        # The child's temporary files (tf_keras unpacks a .keras archive there) live in its
        # private folder, deleted below whatever the child leaves behind.
        private_temp = {name: tmp for name in TEMP_FOLDER_ENV}
        proc = subprocess.Popen(child_command(module) + [str(req_path), str(resp_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp,
                                start_new_session=True,
                                env=child_environment({**(env or {}), **private_temp}))
        reader = None
        if progress is not None:
            reader = threading.Thread(target=_relay_progress, args=(proc.stdout, progress), daemon=True)
            reader.start()
        try:
            if reader is None:
                _out, err = proc.communicate(timeout=timeout_s)
            else:
                err = _wait_reading_stderr(proc, timeout_s)
                reader.join(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait() if reader is not None else proc.communicate()
            raise DeviceError(f"timed out after {timeout_s:.0f} s", kind="timeout") from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        tail = stderr_tail(err)
        if proc.returncode < 0:
            raise DeviceError(f"runtime crashed with {signal_name(proc.returncode)}"
                              + (f": {tail}" if tail else ""), kind="crash",
                              details={"signal": signal_name(proc.returncode)})
        if not resp_path.exists():
            raise DeviceError(f"child exited with code {proc.returncode} and no result"
                              + (f": {tail}" if tail else ""), kind="failed")
        response = json.loads(resp_path.read_text())
        if "error" in response:
            # a runtime message can span lines (LiteRT adds "Registration failed."): one line
            raise DeviceError(" ".join(str(response["error"]).split()), kind=response.get("kind", "failed"))
        return response


def _relay_progress(stream, progress: Callable[[str], None]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line.startswith(PROGRESS_PREFIX):
            try:
                progress(line[len(PROGRESS_PREFIX):])
            except Exception:  # noqa: BLE001 - a progress display must not stop the work
                pass


def _wait_reading_stderr(proc: subprocess.Popen, timeout_s: float) -> bytes:
    """``communicate`` for a child whose stdout another thread reads."""
    chunks: list[bytes] = []
    stderr = cast(IO[bytes], proc.stderr)  # the caller started it with stderr=PIPE
    drain = threading.Thread(target=lambda: chunks.append(stderr.read()), daemon=True)
    drain.start()
    proc.wait(timeout=timeout_s)
    drain.join(timeout=5)
    return b"".join(chunks)


def report_progress(message: str) -> None:
    """Child side: tell the parent's ``progress`` callback what is happening."""
    sys.stdout.write(PROGRESS_PREFIX + message.replace("\n", " ") + "\n")
    sys.stdout.flush()


def stderr_tail(err: bytes | str, lines: int = 3, offset: int = 0) -> str:
    """The last meaningful stderr lines, without TensorFlow's log noise."""
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
    keep = [line.strip() for line in text[offset:].splitlines()
            if line.strip() and not line.startswith(_STDERR_NOISE)]
    return " | ".join(keep[-lines:])[:500]


# -- child side ---------------------------------------------------------------------------------
def exit_with_parent(poll_s: float = 1.0) -> None:
    """Guard a child against outliving the harness. A harness killed by SIGKILL (an OOM killer,
    ``kill -9``, a CI runner's hard stop) runs none of its handlers, and its children, in their
    own sessions, would train or time on for minutes. A daemon thread notices the change of
    parent (reparented to init or a subreaper) within ``poll_s`` and kills this child's process
    group: the child and whatever it started (adb, a compiler). Only in a process the harness
    started as a session leader: called in-process (tests), it does nothing."""
    try:
        parent = int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return
    if os.getpid() != os.getpgrp():
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def serve_once(handler: Callable[[dict], dict], error_kind: str = "failed",
               describe: Callable[[BaseException], str] | None = None,
               argv: list[str] | None = None) -> int:
    """The ``__main__`` of a one-shot child: read the request file, call ``handler`` and write
    its dict (or ``{"error": one line, "kind": error_kind}``) to the response file."""
    argv = sys.argv[1:] if argv is None else argv
    exit_with_parent()
    req_path, resp_path = Path(argv[0]), Path(argv[1])
    try:
        result = handler(json.loads(req_path.read_text()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a DeviceError
        text = describe(exc) if describe else f"{type(exc).__name__}: {exc}".strip()
        if not text:
            text = traceback.format_exc(limit=2).strip().splitlines()[-1]
        result = {"error": text[:400], "kind": getattr(exc, "kind", error_kind)}
    resp_path.write_text(json.dumps(result))
    return 0


def serve_lines(handler: Callable[[dict, Callable[[dict], None]], dict],
                prepare: Callable[[], None] = lambda: None,
                describe: Callable[[BaseException], str] = lambda e: f"{type(e).__name__}: {e}") -> int:
    """The ``__main__`` of a long-lived child. File descriptor 1 is pointed at stderr at once,
    so whatever a library or a user's code prints can never corrupt the protocol."""
    exit_with_parent()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(message: dict) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    prepare()
    emit({"event": "ready", "pid": os.getpid()})
    for raw in sys.stdin:
        if not raw.strip():
            continue
        try:
            result = handler(json.loads(raw), emit)
        except Exception as exc:  # noqa: BLE001 - the work's own failure, reported per request
            result = {"error": describe(exc)}
        emit({"event": "result", **result})
    return 0


# -- parent side of a long-lived child ------------------------------------------------------------
class ChildFailure(Exception):
    """The child died or hung; ``stage`` is the stage it was in."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


class ServingChild:
    """Parent-side handle of one ``serve_lines`` child. ``run(request, timeout_s)`` returns
    the child's result or raises ChildFailure naming the stage it died or hung in; the next
    ``run`` then starts a fresh child. ``first_stage`` names the stage before any progress."""

    def __init__(self, module: str, log_path: Path, startup_timeout_s: float = 180.0,
                 first_stage: str = "start", env: dict[str, str] | None = None, own_session: bool = True):
        self.module = module
        #: False: a process group of its own in the harness's session (killed as a group all the
        #: same). Where the kernel groups processes by session for CPU time (autogroup, on by
        #: default on Linux desktops and many VMs), children timed against each other must share
        #: one session, or each meets the machine's other load with a share of its own.
        self.own_session = own_session
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.first_stage = first_stage
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.events: queue.Queue | None = None
        self.starts = 0
        self._log_offset = 0
        self._cwd: tempfile.TemporaryDirectory | None = None

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._cwd = self._cwd or tempfile.TemporaryDirectory(prefix="qat-child-")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(child_command(self.module), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, cwd=self._cwd.name,
                                         start_new_session=self.own_session,
                                         process_group=None if self.own_session else 0,
                                         env=child_environment(self.env))
        self.starts += 1
        self.events = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self.events), daemon=True).start()
        try:
            msg = self._next(time.monotonic() + self.startup_timeout_s, "start")
        except (KeyboardInterrupt, SystemExit):
            self._kill()  # interrupted while the child starts: it must not outlive us
            raise
        if msg.get("event") != "ready":
            raise ChildFailure("start", f"child {self.module} did not start: {msg}")

    def _next(self, deadline: float, stage: str) -> dict:
        assert self.events is not None  # set by _start(), before any wait
        try:
            msg = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self._kill()
            raise ChildFailure(stage, f"timed out in stage {stage}") from None
        if msg is None:  # EOF: the child died
            raise ChildFailure(stage, self._death(stage))
        return msg

    def _death(self, stage: str) -> str:
        assert self.proc is not None  # the child whose output ended (only _kill() clears it, then raises)
        code = self.proc.wait()
        self.proc = None
        what = f"crashed with {signal_name(code)}" if code < 0 else f"exited with code {code}"
        try:
            tail = stderr_tail(self.log_path.read_bytes()[self._log_offset:][-8000:])
        except OSError:
            tail = ""
        return f"child {what} in stage {stage}" + (f": {tail}" if tail else "")

    def kill(self) -> None:
        """Stop the child now (from another thread: the waiting ``run`` then sees EOF)."""
        if self.proc is not None:
            _kill_group(self.proc)

    def _kill(self) -> None:
        if self.proc is None:
            return
        _kill_group(self.proc)
        self.proc.wait()
        self.proc = None

    def run(self, request: dict, timeout_s: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None  # started just above when it was not running
        stdin = cast(IO[bytes], self.proc.stdin)  # started with stdin=PIPE
        deadline = time.monotonic() + timeout_s
        stage = self.first_stage
        try:
            self._log_offset = self.log_path.stat().st_size
        except OSError:
            self._log_offset = 0
        try:
            try:
                stdin.write((json.dumps(request) + "\n").encode())
                stdin.flush()
            except (BrokenPipeError, OSError):
                raise ChildFailure(stage, self._death(stage)) from None
            while True:
                try:
                    msg = self._next(deadline, stage)
                except ChildFailure as exc:
                    if "timed out" in exc.reason:
                        exc.reason = f"timed out after {timeout_s:.0f} s in stage {stage}"
                    raise
                if msg.get("event") == "stage":
                    stage = msg["stage"]
                elif msg.get("event") == "result":
                    return msg
        except (KeyboardInterrupt, SystemExit):
            self._kill()
            raise

    def close(self) -> None:
        if self.proc is not None:
            try:
                cast(IO[bytes], self.proc.stdin).close()  # started with stdin=PIPE
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a child that will not leave is killed
                self._kill()
            self.proc = None
        if self._cwd is not None:
            self._cwd.cleanup()
            self._cwd = None


def _pump(stream, events: queue.Queue) -> None:
    """Protocol lines -> queue; None at EOF. Non-JSON lines are ignored (they cannot come
    from the child, whose stray output goes to stderr)."""
    for raw in stream:
        try:
            events.put(json.loads(raw))
        except ValueError:
            continue
    events.put(None)
