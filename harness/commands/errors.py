"""Exit codes, and how every failure of a command ends: errors the user can fix are one line
on stderr and exit code 2; nothing prints a traceback (an unexpected internal error writes its
traceback to a file and says where)."""
from __future__ import annotations

import errno
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from qat_harness.commands.folders import stamp
from qat_harness.core.child import Terminated, sigterm_as_interrupt
from qat_harness.core.errors import UsageError

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERNAL, EXIT_DISK_FULL = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal number, as a shell reports them
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def guarded(command: Callable[[], int]) -> int:
    """Run ``command`` (SIGTERM taken as an interrupt) and turn whatever stops it into its exit
    code and at most one line on stderr."""
    try:
        with sigterm_as_interrupt():
            return command()
    except UsageError as exc:
        error_line(f"qat-harness: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"qat-harness: {what}; the report keeps what was measured", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            return internal_error(exc)
        where = f" writing {exc.filename}" if exc.filename else ""
        error_line(f"qat-harness: error: disk full{where} ({exc.strerror or exc}); the last saved "
                   "report is kept, free some space and run again (or --resume the run)")
        return EXIT_DISK_FULL
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback on the console
        return internal_error(exc)


def internal_error(exc: BaseException) -> int:
    text = traceback.format_exc()
    try:
        where = f"traceback in {write_crash_log(text)}"
    except OSError as log_exc:
        where = f"the traceback could not be saved: {log_exc.strerror or log_exc}"
    error_line(f"qat-harness: internal error: {type(exc).__name__}: {exc} ({where})")
    return EXIT_INTERNAL


def error_line(text: str) -> None:
    """One line on stderr, every control character from a name shown as its escape."""
    from qat_harness.writers.text import visible

    print(visible(text), file=sys.stderr)


def write_crash_log(text: str) -> Path:
    """Save a traceback under a name nobody can predict or pre-create: mkstemp opens with
    O_CREAT|O_EXCL (never follows a planted symlink, never reuses a file) and mode 0600; two
    crashes in the same second get two files."""
    fd, path = tempfile.mkstemp(prefix=f"qat-harness-crash-{stamp()}-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(path)
