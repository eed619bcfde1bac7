"""What a night costs to record into, and read back from, each history backend (pytest-benchmark;
not part of the test suite):

    python3 -m pytest benchmarks/test_bench_history_backends.py --benchmark-only

SQLite is the default file; PostgreSQL is a throwaway local server (Debian's postgresql, on a
loopback port, fsync off: the network and disk of a real lab server come on top). A night is
the tiny recorded report (one model on cpu: its claims, latencies with raw samples, speed-up);
``load`` reads a history of 20 such nights back, as ``history`` does."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import recorded_reports  # noqa: E402  (a test helper, found on the path just added)

from qat_harness import history  # noqa: E402

pytest_plugins = ["postgres_cluster"]   # its fixtures: postgres, history_url

NIGHTS_READ = 20


def test_record_a_night(benchmark, history_url, tmp_path):
    run = recorded_reports.night("2026-12-06T02:00:00+00:00")
    history.record(history_url, run, tmp_path / "report.json")   # created and migrated outside the timing
    benchmark.pedantic(history.record, args=(history_url, run, tmp_path / "report.json"), rounds=30)


def test_load_a_history(benchmark, history_url, tmp_path):
    for i in range(NIGHTS_READ):
        history.record(history_url, recorded_reports.night(f"2026-12-{i + 1:02d}T02:00:00+00:00", seed=i),
                       tmp_path / f"night{i}" / "report.json")
    loaded = benchmark.pedantic(history.load, args=(history_url,), rounds=10)
    assert len(loaded.nights) == NIGHTS_READ
