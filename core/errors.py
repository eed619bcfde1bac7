"""Errors that reach the user as one line (and a non-zero exit or a recorded verdict), never
as a traceback."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: unknown model, missing folder, mismatched weights, ..."""


class DeviceError(Exception):
    """A model could not be run (on a device, or in an isolated child process). ``kind``
    classifies it for the report: 'crash' (signal), 'timeout', 'offline', 'missing-tool',
    'disk-full', 'unsupported', 'failed'."""

    def __init__(self, reason: str, kind: str = "failed", details: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.details = details or {}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first meaningful line`` of an exception, for an error shown in one line (a
    library's message can span many lines, or start with a traceback or an empty line)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("<unknown>", "Traceback")):
            return f"{type(exc).__name__}: {line[:limit]}"
    return type(exc).__name__
