"""Judging what load cannot move first (the int8/float ratio of one night, across nights) and
confirming before blaming: a slowdown is a regression only when re-timing last night's files
beside tonight's reproduces it (the model file) or the versions changed (the runtime); else it
is the machine, a WARN (issue #25). The timer is a fake: no model is timed here."""
import dataclasses

import numpy as np
import pytest
import recorded_reports

from qat_harness import compare
from qat_harness.compare import blame, load
from qat_harness.compare.blame import Cause, Suspect, Timed
from qat_harness.compare.gates import LatencyGate, Outcome
from qat_harness.compare.machine import NightEnvironment, runtime_changes
from qat_harness.compare.night_facts import FileStore
from qat_harness.compare.ratios import compare_ratio
from qat_harness.stats import RatioCI

GATE = LatencyGate(tolerance=0.10)
BUSY = load.MachineJudgement(True, ("tonight: other processes used 70% of the 2 CPU(s) during timing",))


# -- the int8/float ratio -----------------------------------------------------------------------
def _speedup(ratio: float, half_width: float = 0.03) -> RatioCI:
    return RatioCI(ratio, ratio * (1 - half_width), ratio * (1 + half_width), 10, 0.95)


def test_the_same_speedup_is_unchanged_and_a_relatively_slower_int8_is_a_regression():
    assert compare_ratio(GATE, "m", "cpu", "qat_vs_float", _speedup(2.0), _speedup(2.0)).outcome is Outcome.UNCHANGED
    slower = compare_ratio(GATE, "m", "cpu", "qat_vs_float", _speedup(2.0), _speedup(2.0 / 1.3))
    assert slower.outcome is Outcome.REGRESSION and slower.change == pytest.approx(0.3)
    assert slower.baseline == pytest.approx(0.5) and slower.current == pytest.approx(0.65)
    assert "int8/float latency ratio (qat_vs_float) 0.500 -> 0.650: +30%" in slower.explain()
    wide = compare_ratio(GATE, "m", "cpu", "qat_vs_float", _speedup(2.0, 0.2), _speedup(2.0 / 1.15, 0.2))
    assert wide.outcome is Outcome.WITHIN_NOISE


def test_the_spread_of_earlier_nights_widens_the_ratios_interval():
    earlier = [2.0, 2.3, 1.8, 2.2, 1.7, 2.1]
    row = compare_ratio(GATE, "m", "cpu", "qat_vs_float", _speedup(2.0), _speedup(2.0 / 1.3), earlier)
    assert row.noise_nights == 5 and row.outcome is not Outcome.REGRESSION


def test_a_night_slower_on_both_files_keeps_its_ratio():
    base = recorded_reports.night("2026-01-01T02:00:00+00:00", seed=1, noise=0.02)
    busy = recorded_reports.night("2026-01-02T02:00:00+00:00", seed=2, noise=0.02, int8_ms=0.8, float_ms=1.6)
    int8_only = recorded_reports.night("2026-01-02T02:00:00+00:00", seed=2, noise=0.02, int8_ms=0.7, float_ms=1.0)
    same = compare.compare(base, busy).ratios
    assert [r.outcome for r in same] == [Outcome.UNCHANGED]
    worse = compare.compare(base, int8_only)
    assert [r.outcome for r in worse.ratios] == [Outcome.REGRESSION]
    assert any(f.rule == "int8/float ratio" for f in worse.regressions)


# -- attribution ----------------------------------------------------------------------------------
def _retimed(ratio: float) -> blame.Retimed:
    ci = RatioCI(ratio, ratio * 0.97, ratio * 1.03, 10, 0.95)
    return blame.Retimed("qat_int8", ci, GATE.outcome(ratio, ci.ci_low, ci.ci_high))


SUSPECT = Suspect("m", "cpu", "qat_int8 median +20%", significant=True)


def test_a_slowdown_reproduced_beside_last_nights_file_is_the_model_file():
    b = blame.attribute(SUSPECT, ["qat_int8"], [_retimed(1.2)], [])
    assert b.regression and b.cause is Cause.MODEL
    assert "confirmed" in b.text and "changed: the model file (qat_int8)" in b.text


def test_not_reproduced_with_a_new_runtime_is_the_runtime():
    b = blame.attribute(SUSPECT, ["qat_int8"], [_retimed(1.0)], ["ai-edge-litert 2.3.0 -> 2.4.0"])
    assert b.regression and b.cause is Cause.RUNTIME and "ai-edge-litert 2.3.0 -> 2.4.0" in b.text
    same_files = blame.attribute(SUSPECT, [], None, ["ai-edge-litert 2.3.0 -> 2.4.0"])
    assert same_files.regression and same_files.cause is Cause.RUNTIME and "did not change" in same_files.text


def test_nothing_changed_is_the_machine_and_never_a_regression():
    b = blame.attribute(SUSPECT, [], None, [])
    assert not b.regression and b.cause is Cause.MACHINE and b.text.startswith("not reproduced")
    retimed = blame.attribute(SUSPECT, ["qat_int8"], [_retimed(1.02)], [])
    assert not retimed.regression and retimed.cause is Cause.MACHINE


def test_a_slowdown_inside_the_noise_is_not_blamed_on_a_new_runtime():
    within = dataclasses.replace(SUSPECT, significant=False)
    b = blame.attribute(within, [], None, ["ai-edge-litert 2.3.0 -> 2.4.0"])
    assert not b.regression and b.text.startswith("not significant") and "ai-edge-litert 2.3.0 -> 2.4.0" in b.text
    assert b.cause is Cause.RUNTIME    # suspected, not confirmed: a WARN that names the runtime


def test_on_a_busy_machine_only_what_load_cannot_move_blames_the_runtime():
    busy = dataclasses.replace(SUSPECT, machine=BUSY, significant=False)
    b = blame.attribute(busy, [], None, ["ai-edge-litert 2.3.0 -> 2.4.0"])
    assert not b.regression and b.text.startswith("machine busy: tonight: other processes used 70%")
    assert "ai-edge-litert 2.3.0 -> 2.4.0, not significant" in b.text
    ratio = dataclasses.replace(busy, significant=True)
    assert blame.attribute(ratio, [], None, ["ai-edge-litert 2.3.0 -> 2.4.0"]).cause is Cause.RUNTIME
    # a changed file reproduced in the same blocks is the file's, busy or not
    assert blame.attribute(busy, ["qat_int8"], [_retimed(1.25)], []).cause is Cause.MODEL


def test_runtime_changes_are_the_decisive_libraries_and_the_device_not_the_cpu():
    before = NightEnvironment(cpu="A", python="3.11.9", libraries={"ai-edge-litert": "2.3.0", "tabulate": "0.9"},
                              devices={"cpu": "num_threads=2"})
    after = NightEnvironment(cpu="B", python="3.11.9", libraries={"ai-edge-litert": "2.4.0", "tabulate": "0.10"},
                             devices={"cpu": "num_threads=4"})
    assert runtime_changes(before, after, "cpu") == ["ai-edge-litert 2.3.0 -> 2.4.0",
                                                     "device cpu num_threads=2 -> num_threads=4"]
    assert runtime_changes(before, before, "cpu") == []


# -- re-timing with a fake timer -------------------------------------------------------------------
def _store_with(tmp_path, contents: dict[str, bytes]) -> tuple[FileStore, dict[str, str]]:
    store = FileStore(tmp_path / "files")
    digests = {}
    for name, data in contents.items():
        path = tmp_path / name
        path.write_bytes(data)
        digests[name] = store.keep(path)
    return store, digests


class FakeTimer:
    """Tonight's file ``slowdown`` times last night's; every round meets a load of its own
    (1x to 3x), the same for every file timed in it, as the ABBA blocks make it."""

    def __init__(self, slowdown: float, per_block: int = 9, rounds: int = 12):
        self.slowdown, self.per_block, self.rounds, self.calls = slowdown, per_block, rounds, []

    def __call__(self, device: str, labels: dict) -> Timed:
        self.calls.append((device, dict(labels)))
        rng = np.random.default_rng(0)
        loads = rng.uniform(1.0, 3.0, self.rounds)
        times = {}
        for label in labels:
            base = 2.0 * (self.slowdown if label.startswith(blame.TONIGHT) else 1.0)
            times[label] = [float(base * load_ * rng.normal(1, 0.01)) for load_ in loads
                            for _ in range(self.per_block)]
        return Timed(times, self.per_block)


def test_a_changed_file_is_retimed_beside_last_nights_and_a_20_percent_slowdown_reproduces(tmp_path):
    store, d = _store_with(tmp_path, {"old.tflite": b"old model", "new.tflite": b"new model"})
    previous, tonight = {("m", "qat_int8"): d["old.tflite"]}, {("m", "qat_int8"): d["new.tflite"]}
    timer = FakeTimer(1.2)
    busy = dataclasses.replace(SUSPECT, machine=BUSY)
    b = blame.settle(busy, previous, tonight, store, timer, [], GATE)
    assert b.regression and b.cause is Cause.MODEL
    assert b.retimed[0].ratio.ratio == pytest.approx(1.2, rel=0.02)
    (device, labels), = timer.calls
    assert device == "cpu" and set(labels) == {"previous:qat_int8", "tonight:qat_int8"}
    assert labels["previous:qat_int8"] == store.path(d["old.tflite"])


def test_a_changed_file_as_fast_as_last_nights_is_not_blamed(tmp_path):
    store, d = _store_with(tmp_path, {"old.tflite": b"old model", "new.tflite": b"new model"})
    b = blame.settle(SUSPECT, {("m", "qat_int8"): d["old.tflite"]}, {("m", "qat_int8"): d["new.tflite"]},
                     store, FakeTimer(1.0), [], GATE)
    assert not b.regression and b.cause is Cause.MACHINE and "not slower" in b.text


def test_unchanged_files_are_not_retimed_and_a_lost_file_leaves_it_unconfirmed(tmp_path):
    store, d = _store_with(tmp_path, {"old.tflite": b"old model", "new.tflite": b"new model"})
    timer = FakeTimer(1.2)
    same = {("m", "qat_int8"): d["old.tflite"]}
    assert not blame.settle(SUSPECT, same, same, store, timer, [], GATE).regression and not timer.calls
    store.path(d["old.tflite"]).unlink()
    lost = blame.settle(SUSPECT, same, {("m", "qat_int8"): d["new.tflite"]}, store, timer, [], GATE)
    assert not lost.regression and "no longer kept" in lost.text and not timer.calls


class NoisyTimer:
    """Each schedule meets a noise of its own (sd 30% per block, no common load): one schedule
    of 6 rounds leaves a slowdown of twice the tolerance undecided; pooled ones decide it."""

    def __init__(self, slowdown: float, rounds: int = 6, per_block: int = 9):
        self.slowdown, self.rounds, self.per_block, self.calls = slowdown, rounds, per_block, 0

    def __call__(self, device: str, labels: dict) -> Timed:
        rng = np.random.default_rng(self.calls)
        self.calls += 1
        times = {}
        for label in labels:
            base = 2.0 * (self.slowdown if label.startswith(blame.TONIGHT) else 1.0)
            times[label] = [float(base * rng.lognormal(0, 0.3) * rng.normal(1, 0.01))
                            for _ in range(self.rounds) for _ in range(self.per_block)]
        return Timed(times, self.per_block)


def test_an_undecided_retime_is_timed_again_with_its_rounds_pooled(tmp_path):
    pairs = {"qat_int8": (tmp_path / "old.tflite", tmp_path / "new.tflite")}
    one = blame.retime(NoisyTimer(1.2), "cpu", pairs, GATE, max_schedules=1)
    assert blame.undecided(one[0], GATE) and one[0].ratio.n_pairs == 6
    timer = NoisyTimer(1.2, rounds=6)
    pooled = blame.retime(timer, "cpu", pairs, GATE, max_schedules=8)
    assert timer.calls > 1 and pooled[0].ratio.n_pairs == 6 * timer.calls
    assert pooled[0].outcome is Outcome.REGRESSION and "rounds" in pooled[0].explain()


def test_a_decided_retime_is_timed_once(tmp_path):
    timer = FakeTimer(1.0, rounds=30)
    out = blame.retime(timer, "cpu", {"qat_int8": (tmp_path / "a", tmp_path / "b")}, GATE)
    assert len(timer.calls) == 1 and out[0].outcome is Outcome.UNCHANGED
