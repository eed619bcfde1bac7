"""Errors that reach the user as one line (and a non-zero exit), never as a traceback."""


class UsageError(Exception):
    """Bad input from the user: unknown model, missing folder, mismatched weights, ..."""
