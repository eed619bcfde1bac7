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
