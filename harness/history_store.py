"""Where the nightly history lives (``--history``) and the SQLAlchemy Core connection every
query of ``history`` goes through, on either backend:

* a path, or ``sqlite:///PATH``: the SQLite file of today, opened by ``history_db`` with all
  its checks (the file is untrusted input: read-only for readers, nothing in it runs);
* ``postgresql://USER@HOST:PORT/DB``: a PostgreSQL database (psycopg 3) that the hosts of a lab
  all record into. Its tables are created from the one schema of ``history_db`` (TABLES /
  ADDED_COLUMNS, as ``schema_metadata``), and brought up to this harness's schema once, by
  whichever harness opens it first, under ``pg_advisory_xact_lock``: several hosts starting
  at once apply a migration once. Each night is recorded in one transaction and its run id
  comes from the database (``SERIAL``), so writers on several hosts never collide.

Credentials never leave this module: a location prints as its URL with the password masked
(``URL.render_as_string(hide_password=True)``), and a database error is one line naming that
masked URL, with the password scrubbed from the driver's message too. Better still, keep the
password out of the URL: libpq reads ``~/.pgpass`` (or ``PGPASSFILE``) and ``PGPASSWORD``."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool, StaticPool
from sqlalchemy.schema import CreateColumn, ExecutableDDLElement

from qat_harness import history_db
from qat_harness.core.errors import UsageError

POSTGRES_DRIVER = "postgresql+psycopg"
POSTGRES_SCHEMES = ("postgresql", "postgres", POSTGRES_DRIVER)
CONNECT_TIMEOUT_S = 10
# The advisory lock every qat-harness takes to migrate a PostgreSQL history (the key is the
# stamp SQLite files carry: one number for "a qat-harness history").
MIGRATION_LOCK = history_db.APPLICATION_ID
USAGE = "--history takes a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB"

# PostgreSQL's counterpart of SQLite's ``user_version`` stamp: one row per schema version
# applied, so a migration applied twice would be a duplicate key, not silent.
SCHEMA_MARKER = sa.Table(
    "qat_harness_schema", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied", sa.Text, nullable=False))


@dataclasses.dataclass(frozen=True)
class HistoryLocation:
    """A history: a SQLite file (``path``) or a PostgreSQL database (``url``), exactly one."""
    path: Path | None = None
    url: URL | None = None

    @property
    def shown(self) -> str:
        """How the history is named in messages, pages and logs: never with its password."""
        if self.url is not None:
            return self.url.render_as_string(hide_password=True)
        return str(self.path)

    @property
    def name(self) -> str:
        """The short name a page shows: the file's name, or the masked URL."""
        return self.path.name if self.path is not None else self.shown

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"HistoryLocation({self.shown!r})"


def locate(where: HistoryLocation | Path | str) -> HistoryLocation:
    """``where`` as a history location: a path (a ``Path``, or text without ``://``) is a
    SQLite file; otherwise a ``sqlite:///`` or ``postgresql://`` URL. Anything else is a
    one-line ``UsageError`` that does not repeat the text (it may hold a password)."""
    if isinstance(where, HistoryLocation):
        return where
    if isinstance(where, Path) or "://" not in where:
        return HistoryLocation(path=Path(where))
    try:
        url = make_url(where)
    except (sa.exc.ArgumentError, ValueError):
        raise UsageError(f"{USAGE}; this URL could not be read (not repeated here: it may "
                         f"hold a password)") from None
    if url.drivername == "sqlite":
        if not url.database or url.database == ":memory:":
            raise UsageError(f"{USAGE}: sqlite:/// needs a file's path")
        return HistoryLocation(path=Path(url.database))
    if url.drivername in POSTGRES_SCHEMES:
        if not url.database:
            raise UsageError(f"{USAGE}: the PostgreSQL URL {url.render_as_string(hide_password=True)} "
                             f"names no database")
        return HistoryLocation(url=url.set(drivername=POSTGRES_DRIVER))
    raise UsageError(f"{USAGE}, not a {url.drivername!r} URL")


def tables() -> sa.util.FacadeDict[str, sa.Table]:
    """The history's tables (``history_db``'s schema), for the queries of ``history``."""
    return history_db.schema_metadata().tables


@contextlib.contextmanager
def reading(where: HistoryLocation | Path | str) -> Iterator[sa.Connection]:
    """A connection that reads the history at ``where``: a SQLite file read-only (an older
    file through a migrated copy in memory), a PostgreSQL database brought up to this schema
    first and then read in one read-only snapshot (``REPEATABLE READ``), so that a night
    recorded meanwhile by another host is seen whole or not at all."""
    at = locate(where)
    if at.path is not None:
        with history_db.reading(at.path) as raw, _over_sqlite(raw) as conn:
            yield conn
        return
    with _postgres(at) as conn:
        with conn.begin():
            _bring_up(conn, at)
        snapshot = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with snapshot.begin():
            yield snapshot


@contextlib.contextmanager
def writing(where: HistoryLocation | Path | str) -> Iterator[sa.Connection]:
    """One transaction on the history at ``where`` (a SQLite file is created when missing,
    under its write lock; a PostgreSQL database is brought up to this schema in the same
    transaction): committed when the block ends, rolled back if it raises."""
    at = locate(where)
    if at.path is not None:
        # conn.begin() emits no BEGIN on SQLite (history_db's BEGIN IMMEDIATE is open): its
        # commit is the COMMIT of that transaction
        with history_db.write_locked(at.path, over=_over_sqlite) as conn, conn.begin():
            yield conn
        return
    with _postgres(at) as conn, conn.begin():
        _bring_up(conn, at)
        yield conn


@contextlib.contextmanager
def _over_sqlite(raw) -> Iterator[sa.Connection]:
    """``raw`` (a checked ``sqlite3`` connection of ``history_db``) as a SQLAlchemy connection.
    The pool never resets or closes it (``history_db`` ends its transaction and closes it), and a database error is
    raised as sqlite3's, which ``history_db`` turns into one line naming the file."""
    engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool,
                              pool_reset_on_return=None, hide_parameters=True)
    # Not disposed: that would close ``raw``, which ``history_db`` still ends and closes.
    with engine.connect() as conn:
        try:
            yield conn
        except sa.exc.DBAPIError as exc:
            if exc.orig is None:
                raise
            raise exc.orig from None


@contextlib.contextmanager
def _postgres(at: HistoryLocation) -> Iterator[sa.Connection]:
    assert at.url is not None
    engine = sa.create_engine(at.url, poolclass=NullPool, hide_parameters=True, connect_args={
        "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "qat-harness"})
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise UsageError(f"cannot connect to the history at {at.shown}: {_reason(exc, at)}") from None
        with conn:
            try:
                yield conn
            except sa.exc.DBAPIError as exc:
                raise UsageError(f"the history at {at.shown} failed: {_reason(exc, at)}") from None
    finally:
        engine.dispose()


def _reason(exc: sa.exc.DBAPIError, at: HistoryLocation) -> str:
    """The driver's message, first line only, with the password scrubbed should it be there."""
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    reason = lines[0]
    password = at.url.password if at.url is not None else None
    if password:
        reason = reason.replace(str(password), "***")
    return reason


def _bring_up(conn: sa.Connection, at: HistoryLocation) -> None:
    """Bring the PostgreSQL history up to ``SCHEMA_VERSION``, once: whoever finds it older
    takes the advisory lock (held to the end of the transaction), looks again, and migrates
    only if no one did meanwhile."""
    if _schema_version(conn, at) == history_db.SCHEMA_VERSION:
        return
    # wait for another migration as long as for SQLite's write lock, then stop in one line
    conn.execute(sa.select(sa.func.set_config("lock_timeout", f"{int(history_db.WRITE_LOCK_WAIT_S * 1000)}",
                                              True)))
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
    version = _schema_version(conn, at)
    if version < history_db.SCHEMA_VERSION:
        _migrate(conn, at, version)


def _schema_version(conn: sa.Connection, at: HistoryLocation) -> int:
    """The database's schema version (0: none of our tables yet), or a one-line ``UsageError``
    when it is a newer harness's, or holds tables of ours' names without our stamp."""
    if not sa.inspect(conn).has_table(SCHEMA_MARKER.name):
        return 0
    version = conn.execute(sa.select(sa.func.max(SCHEMA_MARKER.c.version))).scalar_one() or 0
    if version > history_db.SCHEMA_VERSION:
        raise UsageError(f"the history at {at.shown} was written by a newer qat-harness (history "
                         f"schema {version}, this one reads up to {history_db.SCHEMA_VERSION}); "
                         f"upgrade qat-harness to use it")
    return version


def _migrate(conn: sa.Connection, at: HistoryLocation, version: int) -> None:
    metadata = history_db.schema_metadata()
    inspector = sa.inspect(conn)
    if version == 0:
        taken = [name for name in metadata.tables if inspector.has_table(name)]
        if taken:
            raise UsageError(f"the database at {at.shown} is not a qat-harness history (it has "
                             f"table(s) {', '.join(taken)} but no {SCHEMA_MARKER.name}); give an "
                             f"empty database or another schema")
    metadata.create_all(conn)
    inspector = sa.inspect(conn)   # afresh: the tables just created
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                conn.execute(_AddColumn(table, column))
    SCHEMA_MARKER.create(conn, checkfirst=True)
    conn.execute(sa.insert(SCHEMA_MARKER).values(version=history_db.SCHEMA_VERSION,
                                                 applied=dt.datetime.now(dt.timezone.utc).isoformat()))


class _AddColumn(ExecutableDDLElement):
    """``ALTER TABLE t ADD COLUMN c``, the column as SQLAlchemy declares it (Core has no
    construct of its own for it)."""

    def __init__(self, table: sa.Table, column: sa.Column) -> None:
        self.table = table
        self.column = column


@compiles(_AddColumn)
def _compile_add_column(element: _AddColumn, compiler, **kw) -> str:
    return (f"ALTER TABLE {compiler.preparer.format_table(element.table)} "
            f"ADD COLUMN {compiler.process(CreateColumn(element.column), **kw)}")
