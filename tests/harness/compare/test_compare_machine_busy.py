"""A night timed on a busy or throttled machine: the state sampled around the timing window
says so, and its latency is a WARN "machine busy: ...", never a regression (issue #25)."""
import dataclasses

import recorded_reports

from qat_harness import compare
from qat_harness.compare import load
from qat_harness.compare.gates import Outcome
from qat_harness.measure import machine_state
from qat_harness.measure.machine_state import MachineState
from qat_harness.record.tree import BenchDetails
from qat_harness.writers import compare_text

QUIET = MachineState(window_s=10.0, cpus=2, load1_before=0.3, load1_after=0.9, other_cpu_s=0.4,
                     lowest_frequency_share=1.0, governor="performance", canary_before_ms=10.0,
                     canary_after_ms=10.5)
BUSY = dataclasses.replace(QUIET, other_cpu_s=12.0, load1_after=3.4)


def test_a_quiet_window_is_quiet_and_a_loaded_one_says_by_what():
    assert not load.judge_window(QUIET).busy
    busy = load.judge_window(BUSY)
    assert busy.busy
    assert "other processes used 60% of the 2 CPU(s)" in busy.text()
    assert busy.text().startswith("machine busy: ")


def test_the_load_average_judges_only_where_other_processes_time_is_unreadable():
    own_threads = dataclasses.replace(QUIET, load1_before=2.6, load1_after=2.4)   # our 2 timing threads, and lag
    assert not load.judge_window(own_threads).busy
    unreadable = load.judge_window(dataclasses.replace(own_threads, other_cpu_s=None))
    assert unreadable.busy and "load average 2.6 on 2 CPU(s)" in unreadable.text()


def test_a_throttled_core_and_a_canary_that_slowed_across_the_window_are_busy():
    throttled = load.judge_window(dataclasses.replace(QUIET, lowest_frequency_share=0.5, governor="powersave"))
    assert throttled.busy and "50% of its maximum frequency (governor powersave)" in throttled.text()
    drift = load.judge_window(dataclasses.replace(QUIET, canary_after_ms=14.0))
    assert drift.busy and "canary" in drift.text()


def test_a_canary_much_slower_than_the_other_nights_marks_that_night():
    slow = dataclasses.replace(QUIET, canary_before_ms=15.0, canary_after_ms=15.5)
    judged = load.judge_nights(QUIET, slow)
    assert judged.busy and "tonight's canary" in judged.text()
    assert not load.judge_nights(QUIET, QUIET).busy
    assert not load.judge_nights(None, None).busy


def test_the_state_kept_in_the_timing_details_reads_back_through_the_report():
    details = BenchDetails()
    note = load.keep_state(details, BUSY)
    assert note is not None and "its latency is not judged" in note and "other processes 60%" in note
    assert load.keep_state(BenchDetails(), QUIET) is None
    run = recorded_reports.tiny()
    run.models["int8.tflite"].devices["cpu"].bench_details = details
    back = recorded_reports.through_json(run).models["int8.tflite"].devices["cpu"]
    assert load.state_of(back) == BUSY


def test_watch_samples_this_machine():
    with machine_state.watch() as window:
        sum(i for i in range(10_000))
    state = window.state
    assert state is not None and state.cpus >= 1 and state.window_s >= 0
    assert state.canary_before_ms and state.canary_before_ms > 0
    assert state.summary()


def _nights(tonight_state: MachineState | None):
    base = recorded_reports.night("2026-01-01T02:00:00+00:00", seed=1, noise=0.02)
    cur = recorded_reports.night("2026-01-02T02:00:00+00:00", seed=2, noise=0.02,
                                 int8_ms=0.5 * 1.65, float_ms=1.0 * 1.65)
    for run, state in ((base, QUIET), (cur, tonight_state)):
        details = BenchDetails()
        if state is not None:
            load.keep_state(details, state)
        run.models["int8.tflite"].devices["cpu"].bench_details = details
    return base, cur


def test_a_busy_night_is_a_warning_not_a_regression():
    result = compare.compare(*_nights(BUSY))
    rows = [r for r in result.latency if r.device == "cpu"]
    assert {r.outcome for r in rows} == {Outcome.MACHINE_BUSY}
    assert not [f for f in result.regressions if f.claim == "latency"]
    assert result.warnings and all("machine busy: tonight: other processes used 60%" in w.what
                                   for w in result.warnings)
    assert result.machine[("int8.tflite", "cpu")].busy
    assert "machine busy" in compare_text.render(result)


def test_the_same_slowdown_on_a_quiet_night_is_still_judged():
    result = compare.compare(*_nights(QUIET))
    assert {r.outcome for r in result.latency if r.device == "cpu"} == {Outcome.REGRESSION}
    assert not result.warnings
