"""The SQLite file behind the nightly history (``history.sqlite``), opened as untrusted input.

A history sits in a folder others may write to, and SQLite runs what a file holds: a trigger
runs inside our inserts, a view or a generated column computes what we read, and a query
that never ends keeps the process inside SQLite, where no Python signal handler runs. So:

* readers open the file read-only (``mode=ro``): whatever it is, they leave it as it was;
* the file must be ours: ``PRAGMA application_id`` is ``APPLICATION_ID``, or 0 for a new
  (empty) file or a history written before the stamp (our tables only), which is read as it
  is and stamped by the next recorded night; ``user_version`` is no newer than
  ``SCHEMA_VERSION``;
* nothing in its schema may run: no triggers, views, virtual tables or generated columns,
  no table a history does not have, our columns with our types;
* ``trusted_schema=OFF``, values and statements bounded, and SQLITE_DBCONFIG_DEFENSIVE where
  Python exposes it (``Connection.setconfig``, 3.12+; on 3.11 it cannot be set, and nothing
  here runs SQL that defensive mode would stop: the statements are all ours);
* SIGINT and SIGTERM stop a running query within a moment (a progress handler).

A file that fails any of these is a one-line ``UsageError`` naming it.

The schema is written here once (TABLES, ADDED_COLUMNS, SCHEMA_VERSION); ``schema_metadata``
gives it as SQLAlchemy tables, which every query of ``history`` is written against and which a
PostgreSQL history is created from (``history_store``)."""
from __future__ import annotations

import contextlib
import functools
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from qat_harness.core.errors import UsageError

if TYPE_CHECKING:
    from types import FrameType

    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_C = TypeVar("_C")

APPLICATION_ID = 0x51415448   # "QATH", in the header of every history this harness writes
# What ``user_version`` says: 1 = the tables and columns below. A new column or table goes in
# ADDED_COLUMNS / TABLES with the version raised; older files are brought up when written.
SCHEMA_VERSION = 2

TABLES = (
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, started TEXT NOT NULL,"
    " report_path TEXT NOT NULL, cpu TEXT, harness_version TEXT)",
    "CREATE TABLE IF NOT EXISTS claims (run_id INTEGER REFERENCES runs(id), claim TEXT, model TEXT,"
    " device TEXT, verdict TEXT, measured TEXT, simulated INTEGER)",
    "CREATE TABLE IF NOT EXISTS latency (run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT,"
    " variant TEXT, median_ms REAL, p90_ms REAL, n INTEGER)",
    "CREATE TABLE IF NOT EXISTS speedups (run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT,"
    " kind TEXT, ratio REAL, ci_low REAL, ci_high REAL)",
    "CREATE TABLE IF NOT EXISTS accuracy (run_id INTEGER REFERENCES runs(id), model TEXT, device TEXT,"
    " variant TEXT, top1 REAL, n INTEGER)",
    # 2: what the nightly gate needs of a night (compare.night_facts): the machine during each
    # device's timing, the digest of each timed file (kept in files/ beside the history), and
    # what the gate concluded (busy, confirmed regression and its cause)
    "CREATE TABLE IF NOT EXISTS night_machine (run_id INTEGER REFERENCES runs(id), model TEXT,"
    " device TEXT, busy INTEGER, reason TEXT, state TEXT)",
    "CREATE TABLE IF NOT EXISTS night_files (run_id INTEGER REFERENCES runs(id), model TEXT,"
    " variant TEXT, digest TEXT)",
    "CREATE TABLE IF NOT EXISTS night_findings (run_id INTEGER REFERENCES runs(id), model TEXT,"
    " device TEXT, kind TEXT, cause TEXT, text TEXT)",
)

# Columns added after the first schema: (table, column, type). Older files get them when written.
ADDED_COLUMNS = (
    ("runs", "finished", "TEXT"), ("runs", "status", "TEXT"), ("runs", "environment", "TEXT"),
    ("claims", "reason", "TEXT"),
    ("latency", "median_ci_low", "REAL"), ("latency", "median_ci_high", "REAL"),
    ("latency", "raw_ms", "TEXT"),
)

# Tables SQLite itself keeps (ANALYZE, AUTOINCREMENT): ours to ignore, not the file's code.
SQLITE_OWN_TABLES = ("sqlite_sequence", "sqlite_stat1", "sqlite_stat4")
MAX_VALUE_BYTES = 64 << 20      # a raw-samples list is kilobytes; a longer value is not ours
MAX_STATEMENT_BYTES = 1 << 20   # the schema's CREATE statements are parsed under this bound
BUSY_WAIT_S = 2.0               # one wait for another process's lock: signals wait this long at most
WRITE_LOCK_WAIT_S = 60.0        # a nightly run waits this long in all for another one's write
PROGRESS_EVERY = 20_000         # SQLite VM steps between checks for a signal
BACKUP_PAGES_PER_STEP = 256     # pages copied between checks for a signal


class _SignalsStopQueries:
    """While inside (main thread only), SIGINT and SIGTERM are noted instead of handled, the
    progress handler of every connection opened here stops its query at the next check, and
    on the way out the noted signal goes to the handler that was in place (raising
    ``KeyboardInterrupt`` / ``Terminated`` as anywhere else). Why not let that handler run:
    Python runs handlers only between bytecodes, which inside a query means inside the
    progress callback, and sqlite3 swallows whatever a callback raises."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.caught: tuple[int, FrameType | None] | None = None
        self._previous: dict[int, _Handler] = {}

    def __enter__(self) -> _SignalsStopQueries:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not None:   # None: set outside Python, left alone
                    self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum, frame) -> None:
        if self.caught is None:
            self.caught = (signum, frame)

    def should_stop(self) -> bool:
        return self.caught is not None

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self.caught is None:
            return
        signum, frame = self.caught
        handler = self._previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


@contextlib.contextmanager
def _errors_named(db_path: Path) -> Iterator[None]:
    """sqlite's errors about the file itself, as one line naming it."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if _is_busy(exc):
            raise UsageError(f"{db_path} is locked by another process (a nightly run recording?); "
                             f"try again when it has finished") from None
        raise UsageError(f"{db_path} is not a readable qat-harness history ({exc}); move it "
                         f"aside to start a new history") from None


@contextlib.contextmanager
def _connection(target: str, guard: _SignalsStopQueries) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(target, uri=True, timeout=BUSY_WAIT_S, isolation_level=None)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_STATEMENT_BYTES)
        if hasattr(conn, "setconfig"):   # Python 3.12+
            conn.setconfig(sqlite3.SQLITE_DBCONFIG_DEFENSIVE, True)  # type: ignore[attr-defined]  # 3.12+ stubs
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA cell_size_check = ON")   # damaged pages found when read, not later
        conn.set_progress_handler(guard.should_stop, PROGRESS_EVERY)
        yield conn
    finally:
        conn.close()


def _stop_if(guard: _SignalsStopQueries) -> None:
    if guard.should_stop():
        raise sqlite3.OperationalError("interrupted")


def _uri(db_path: Path, mode: str) -> str:
    return f"{db_path.absolute().as_uri()}?mode={mode}"


@contextlib.contextmanager
def reading(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the history at ``db_path``, checked to be ours. A history
    written before the current schema is read through a migrated copy in memory: reading
    never writes."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise UsageError(f"no history at {db_path} (a nightly run writes it)")
    with _SignalsStopQueries() as guard, _errors_named(db_path), \
            _connection(_uri(db_path, "ro"), guard) as conn:
        if _checked_version(conn, db_path) == SCHEMA_VERSION:
            yield conn
            return
        with _connection(":memory:", guard) as copy:
            conn.backup(copy, pages=BACKUP_PAGES_PER_STEP, progress=lambda *_: _stop_if(guard))
            _migrate(copy)
            yield copy


@contextlib.contextmanager
def writing(db_path: Path) -> Iterator[sqlite3.Connection]:
    """One transaction on the history at ``db_path`` (created when missing), checked to be
    ours, brought up to the current schema and stamped; committed when the block ends, rolled
    back if it raises."""
    with write_locked(db_path, _as_is) as conn:
        yield conn
        conn.execute("COMMIT")


def _as_is(conn: sqlite3.Connection) -> contextlib.AbstractContextManager[sqlite3.Connection]:
    return contextlib.nullcontext(conn)


@contextlib.contextmanager
def write_locked(db_path: Path,
                 over: Callable[[sqlite3.Connection], contextlib.AbstractContextManager[_C]]) -> Iterator[_C]:
    """A connection holding the write lock of the history at ``db_path`` (created when
    missing), checked to be ours, brought up to the current schema and stamped, inside a
    transaction the caller ends; rolled back if it has not when the block ends. ``over`` wraps
    the connection before that transaction begins (a SQLAlchemy connection: it rolls back what
    is open when it first connects). Errors raised as sqlite3's, from inside the block too,
    are one line naming the file."""
    db_path = Path(db_path)
    if db_path.exists() and not db_path.is_file():
        raise UsageError(f"{db_path} is not a file; a nightly history is one SQLite file")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _SignalsStopQueries() as guard, _errors_named(db_path), \
            _connection(_uri(db_path, "rwc"), guard) as conn, over(conn) as wrapped:
        _begin_immediate(conn, guard)
        try:
            if _checked_version(conn, db_path) < SCHEMA_VERSION:
                _migrate(conn)
            yield wrapped
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _begin_immediate(conn: sqlite3.Connection, guard: _SignalsStopQueries) -> None:
    """Take the write lock (one process at a time checks, migrates and inserts), waiting for
    another nightly run in short waits, so that a signal is not held for the whole wait."""
    deadline = time.monotonic() + WRITE_LOCK_WAIT_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or guard.should_stop() \
                    or time.monotonic() > deadline:
                raise


def _migrate(conn: sqlite3.Connection) -> None:
    for statement in TABLES:
        conn.execute(statement)
    for table, column, sql_type in ADDED_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@functools.cache
def _our_columns() -> dict[str, dict[str, tuple]]:
    """table -> column -> (type, notnull, default, pk), as the current schema makes them."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _migrate(conn)
        return {table: _columns(conn, table) for (table,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


# How the declared types of TABLES / ADDED_COLUMNS read in SQLAlchemy. REAL is SQLite's 8-byte
# float: ``Double``, so that PostgreSQL keeps the same precision (its REAL has 4 bytes).
SQLALCHEMY_TYPES: dict[str, type[sa.types.TypeEngine]] = {
    "INTEGER": sa.Integer, "TEXT": sa.Text, "REAL": sa.Double, "BLOB": sa.LargeBinary}


@functools.cache
def schema_metadata() -> sa.MetaData:
    """The tables of TABLES / ADDED_COLUMNS as SQLAlchemy Core tables, read back from an
    in-memory database built by them, so that the schema is written once: what every query is
    written against, and what a PostgreSQL history is created from."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _migrate(conn)
        metadata = sa.MetaData()
        for table, columns in _our_columns().items():
            references = {column: f"{target}.{key}" for _id, _seq, target, column, key, *_rest
                          in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (table,))}
            sa.Table(table, metadata, *(
                sa.Column(name, SQLALCHEMY_TYPES[sql_type](),
                          *([sa.ForeignKey(references[name])] if name in references else []),
                          primary_key=bool(pk), nullable=not notnull)
                for name, (sql_type, notnull, _default, pk) in columns.items()))
        return metadata
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple]:
    return {name: (sql_type.upper(), notnull, default, pk)
            for _cid, name, sql_type, notnull, default, pk, _hidden in conn.execute(
                "SELECT * FROM pragma_table_xinfo(?)", (table,))}


def _listed(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])   # repr: a name from the file prints as one line
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _checked_version(conn: sqlite3.Connection, db_path: Path) -> int:
    """The file's schema version (0: new, or written before the stamp), or a one-line
    ``UsageError`` saying why the file is not a history this harness may open."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    objects = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    not_ours = f"{db_path} is not a qat-harness history"
    if app_id not in (0, APPLICATION_ID):
        raise UsageError(f"{not_ours} (application_id {app_id:#010x} is another application's); "
                         f"give the history.sqlite of a nightly folder")
    if app_id == APPLICATION_ID and version > SCHEMA_VERSION:
        raise UsageError(f"{db_path} was written by a newer qat-harness (history schema {version}, "
                         f"this one reads up to {SCHEMA_VERSION}); upgrade qat-harness to read it")
    if (app_id == 0 and version != 0) or version < 0:
        raise UsageError(f"{not_ours} (no application_id, user_version {version})")
    tables = [(name, sql or "") for kind, name, sql in objects
              if kind == "table" and name not in SQLITE_OWN_TABLES]
    runs_code = ([f"trigger {name!r}" for kind, name, _ in objects if kind == "trigger"]
                 + [f"view {name!r}" for kind, name, _ in objects if kind == "view"]
                 + [f"virtual table {name!r}" for name, sql in tables
                    if sql.upper().startswith("CREATE VIRTUAL")])
    ours = _our_columns()
    known = [name for name, sql in tables if name in ours and not sql.upper().startswith("CREATE VIRTUAL")]
    runs_code += [f"generated column {table}.{name}" for table in known
                  for _cid, name, *_rest, hidden in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))
                  if hidden]
    if runs_code:
        raise UsageError(f"{db_path} holds code that would run inside the harness "
                         f"({_listed(runs_code)}); a qat-harness history has none, so it is refused")
    foreign = [name for name, _ in tables if name not in ours]
    if foreign:
        raise UsageError(f"{not_ours} (it has table(s) {_listed(foreign)}, which a history does not)")
    for table in known:
        for name, column in _columns(conn, table).items():
            if ours[table].get(name) != column:
                raise UsageError(f"{not_ours} (column {table}.{name!r} is not one a history has)")
    if app_id == 0 and objects and "runs" not in known:
        raise UsageError(f"{not_ours} (no application_id and no runs table)")
    return version if app_id == APPLICATION_ID else 0
