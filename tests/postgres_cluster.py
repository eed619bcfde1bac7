"""A throwaway PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` binaries
(initdb, pg_ctl), a cluster in a temporary folder, listening on a free loopback port only, with a
password (scram) for TCP, stopped and removed afterwards. PostgreSQL refuses to run as root: as
root, the cluster belongs to ``nobody`` and its commands run through ``runuser``."""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "qat"
PASSWORD = "s3cret-Pa55w0rd"   # what a test looks for in every message and page
UNPRIVILEGED = "nobody"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or the newest of Debian's
    /usr/lib/postgresql/*/bin; None when PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


@dataclasses.dataclass
class Cluster:
    port: int
    _names: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_history(self) -> str:
        """The URL (password included) of a new, empty history: a schema of its own (CREATE
        SCHEMA is much cheaper than CREATE DATABASE), made the connection's search_path."""
        import sqlalchemy as sa

        name = f"history_{next(self._names)}"
        engine = sa.create_engine(self.url().replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.begin() as conn:
                conn.execute(sa.schema.CreateSchema(name))
        finally:
            engine.dispose()
        return self.url() + f"?options=-csearch_path%3D{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(bin_dir: Path) -> Iterator[Cluster]:
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="qat-postgres-"))
    if as_root:   # the server's files must be its user's, and reachable by it
        account = pwd.getpwnam(UNPRIVILEGED)
        os.chown(folder, account.pw_uid, account.pw_gid)
    prefix = ["runuser", "-u", UNPRIVILEGED, "--"] if as_root else []
    data, log, pwfile = folder / "data", folder / "server.log", folder / "password"
    pwfile.write_text(PASSWORD + "\n")
    if as_root:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    port = _free_port()
    try:
        try:
            subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
                            "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                            "--no-sync"], check=True, capture_output=True, text=True)
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                                  f"-c full_page_writes=off -c synchronous_commit=off", "start"],
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.strip() or exc}; "
                               f"{log.read_text()[-2000:] if log.exists() else ''}") from None
        try:
            yield Cluster(port)
        finally:
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                            "stop"], capture_output=True, text=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A server for the session, or the test skipped in one line when PostgreSQL is missing.
    A test module takes it with ``from postgres_cluster import postgres, history_url``."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with running(bin_dir) as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request, tmp_path: Path) -> str:
    """An empty history's URL: a SQLite file (as ``sqlite:///``), or a schema of the
    ``postgres`` server (with a password in the URL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nightly' / 'history.sqlite'}"
    return request.getfixturevalue("postgres").new_history()
