"""One history for a lab: ``--history`` takes a SQLite file or a PostgreSQL URL. Two hosts
recording a night at the same moment both land, and ``history`` shows both; two harnesses
finding the history older than their schema migrate it once; and a password in the URL never
shows, in an error, a page or the console. The PostgreSQL cases run against a real server
(Debian's postgresql, started here on a loopback port)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("postgres_cluster")   # also a plugin here (pytest_plugins, below)

import postgres_cluster  # noqa: E402
import recorded_reports  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from qat_harness import cli, history, history_db, history_store  # noqa: E402
from qat_harness.core.errors import UsageError  # noqa: E402

pytest_plugins = ["postgres_cluster"]   # its fixtures: postgres, history_url

TESTS = Path(__file__).resolve().parents[1]


def _processes(script: str, *argv_per_process: list[str]) -> list[str]:
    """Run ``script`` once per argv, all at the same time; their outputs (each must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", script, *argv], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argv_per_process]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _err in outputs]


# Waits for every process to be ready (imports done), so that what follows runs at once.
BARRIER = """
import sys, time
from pathlib import Path
def all_ready(folder, index, count):
    Path(folder, str(index)).touch()
    deadline = time.monotonic() + 120
    while len(list(Path(folder).iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.005)
"""

# A host recording a night into the history. Each finds the history new and would migrate it,
# slowly (so that, unlocked, both would be inside the migration together), saying so when it does.
RECORD_A_NIGHT = BARRIER + """
import time
import recorded_reports
from qat_harness import history, history_db, history_store
history_db.schema_metadata()   # built in memory first: that build is no migration of the history
sqlite_migrate, postgres_migrate = history_db._migrate, history_store._migrate
def slow_sqlite(conn):
    if conn.execute("PRAGMA database_list").fetchone()[2]:   # the history's file, not a memory copy
        print("migrated", flush=True)
        time.sleep(1)
    sqlite_migrate(conn)
def slow_postgres(conn, at, version):
    print("migrated", flush=True)
    time.sleep(1)
    postgres_migrate(conn, at, version)
history_db._migrate, history_store._migrate = slow_sqlite, slow_postgres
url, index, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
run = recorded_reports.night(f"2026-12-0{index + 1}T02:00:00+00:00", seed=index, cpu=f"lab host {index}")
all_ready(ready, index, 2)
print(history.record(url, run, Path(f"/lab/host{index}/nightly/report.json")))
"""


def test_two_hosts_record_a_night_at_once_and_history_shows_both(history_url, tmp_path, capsys):
    """The two find the history new: one migrates it, under the lock; both nights land."""
    ready = tmp_path / "ready"
    ready.mkdir()
    outputs = _processes(RECORD_A_NIGHT, *[[history_url, str(i), str(ready)] for i in range(2)])
    assert sum(out.count("migrated") for out in outputs) == 1, outputs
    assert sorted(int(out.split()[-1]) for out in outputs) == [1, 2]   # ids from the database, one each
    page = tmp_path / "history.html"
    assert cli.main(["history", "--history", history_url, "--out", str(page)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "2 night(s)" in out and "lab host 0" in out and "lab host 1" in out
    loaded = history.load(history_url)
    assert sorted(n.report_path for n in loaded.nights) == ["/lab/host0/nightly/report.json",
                                                            "/lab/host1/nightly/report.json"]
    assert {c.run_id for c in loaded.claims} == {1, 2} and {r.run_id for r in loaded.latency} == {1, 2}
    assert "lab host 1" in page.read_text()
    assert postgres_cluster.PASSWORD not in page.read_text() + out
    at = history_store.locate(history_url)
    if at.url is not None:   # the migration is stamped once
        engine = sa.create_engine(at.url)
        try:
            with engine.connect() as conn:
                versions = conn.scalars(sa.select(history_store.SCHEMA_MARKER.c.version)).all()
        finally:
            engine.dispose()
        assert versions == [history_db.SCHEMA_VERSION]


# -- credentials ---------------------------------------------------------------------------------

def test_a_location_never_shows_its_password():
    at = history_store.locate(f"postgresql://qat:{postgres_cluster.PASSWORD}@db.lab:5432/nightly")
    for shown in (at.shown, str(at), repr(at), at.name, f"{at}"):
        assert postgres_cluster.PASSWORD not in shown and "qat:***@db.lab:5432/nightly" in shown
    assert history_store.locate("reports/nightly/history.sqlite").path == Path("reports/nightly/history.sqlite")
    assert history_store.locate("sqlite:////tmp/h.sqlite").path == Path("/tmp/h.sqlite")   # SQLAlchemy's spelling
    assert history_store.locate("sqlite:///h.sqlite").path == Path("h.sqlite")


@pytest.mark.parametrize("argv", [
    ["history", "--history", f"postgresql://qat:{postgres_cluster.PASSWORD}@127.0.0.1:notaport/db"],
    ["history", "--history", f"mysql://qat:{postgres_cluster.PASSWORD}@127.0.0.1/db"],
])
def test_a_bad_history_url_is_refused_without_repeating_it(argv, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "--history takes a path" in err and "\n" not in err and postgres_cluster.PASSWORD not in err


def test_a_server_that_cannot_be_reached_is_one_line_without_the_password(postgres, capsys):
    closed_port = postgres_cluster._free_port()
    url = f"postgresql://qat:{postgres_cluster.PASSWORD}@127.0.0.1:{closed_port}/postgres"
    assert cli.main(["history", "--history", url]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("qat-harness: error: cannot connect to the history at ") and "\n" not in err, err
    assert postgres_cluster.PASSWORD not in err and f"qat:***@127.0.0.1:{closed_port}" in err


def test_a_wrong_password_is_one_line_naming_neither_password(postgres, tmp_path):
    wrong = "Wr0ng-" + postgres_cluster.PASSWORD
    with pytest.raises(UsageError) as exc:
        history.record(postgres.url(password=wrong), recorded_reports.tiny(), tmp_path / "report.json")
    message = str(exc.value)
    assert "password authentication failed" in message and "\n" not in message
    assert wrong not in message and postgres_cluster.PASSWORD not in message


def test_a_database_holding_tables_of_another_application_is_refused(postgres):
    url = postgres.new_history()
    at = history_store.locate(url)
    engine = sa.create_engine(at.url)
    try:
        with engine.begin() as conn:
            sa.Table("runs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True)).create(conn)
    finally:
        engine.dispose()
    with pytest.raises(UsageError, match="not a qat-harness history .*runs"):
        history.load(url)
