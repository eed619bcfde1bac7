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
from qat_harness.compare.machine import NightEnvironment, environment_changes, runtime_changes
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


def test_a_device_that_names_its_runtime_speaks_for_the_runtimes_library():
    """The runtime line tells a rebuild from the build under one version, and names what the
    device loaded (``--litert-runtime``), which the installed version may not be."""
    before = NightEnvironment(libraries={"ai-edge-litert": "2.3.0", "tensorflow": "2.21.0"},
                              runtimes={"cpu": "ai_edge_litert 2.3.0 (sha256 aaaa)"})
    after = NightEnvironment(libraries={"ai-edge-litert": "2.4.0", "tensorflow": "2.22.0"},
                             runtimes={"cpu": "ai_edge_litert 2.3.0 (sha256 bbbb)"})
    line = "device cpu runtime ai_edge_litert 2.3.0 (sha256 aaaa) -> ai_edge_litert 2.3.0 (sha256 bbbb)"
    assert runtime_changes(before, after, "cpu") == ["tensorflow 2.21.0 -> 2.22.0", line]
    assert line in environment_changes(before, after)
    # a device that names no runtime (a phone) is judged on the installed libraries
    assert "ai-edge-litert 2.3.0 -> 2.4.0" in runtime_changes(before, after, "android-cpu")


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
    assert labels["previous:qat_int8"] == blame.Subject(store.path(d["old.tflite"]))


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
    pairs = {"qat_int8": (blame.Subject(tmp_path / "old.tflite"), blame.Subject(tmp_path / "new.tflite"))}
    one = blame.retime(NoisyTimer(1.2), "cpu", pairs, GATE, max_schedules=1)
    assert blame.undecided(one[0], GATE) and one[0].ratio.n_pairs == 6
    timer = NoisyTimer(1.2, rounds=6)
    pooled = blame.retime(timer, "cpu", pairs, GATE, max_schedules=8)
    assert timer.calls > 1 and pooled[0].ratio.n_pairs == 6 * timer.calls
    assert pooled[0].outcome is Outcome.REGRESSION and "rounds" in pooled[0].explain()


def test_a_decided_retime_is_timed_once(tmp_path):
    timer = FakeTimer(1.0, rounds=30)
    out = blame.retime(timer, "cpu", {"qat_int8": (blame.Subject(tmp_path / "a"), blame.Subject(tmp_path / "b"))},
                       GATE)
    assert len(timer.calls) == 1 and out[0].outcome is Outcome.UNCHANGED


# -- a new runtime re-timed beside last night's ---------------------------------------------------
class RuntimeTimer(FakeTimer):
    """Files loaded by a kept runtime (``Subject.runtime`` set: last night's) run ``1 / slowdown``
    as long as under the device's own (tonight's); every round meets a load of its own."""

    def __call__(self, device: str, labels: dict) -> Timed:
        self.calls.append((device, dict(labels)))
        rng = np.random.default_rng(0)
        loads = rng.uniform(1.0, 3.0, self.rounds)
        return Timed({label: [float(2.0 * (1.0 if subject.runtime else self.slowdown) * load_ * rng.normal(1, 0.01))
                              for load_ in loads for _ in range(self.per_block)]
                      for label, subject in labels.items()}, self.per_block)


RUNTIME_LINE = "device cpu runtime ai_edge_litert 2.3.0 (sha256 aaaa) -> ai_edge_litert 2.3.0 (sha256 bbbb)"


def _runtime_night(tmp_path):
    store, d = _store_with(tmp_path, {"f.tflite": b"float model", "q.tflite": b"int8 model"})
    files = {("m", "float"): d["f.tflite"], ("m", "qat_int8"): d["q.tflite"]}
    kept = tmp_path / "runtimes" / "aaaa"
    kept.mkdir(parents=True)
    return store, files, blame.RuntimeChange(RUNTIME_LINE, kept)


def test_a_new_runtime_is_retimed_beside_the_kept_one_and_blamed_on_a_busy_night(tmp_path):
    store, files, change = _runtime_night(tmp_path)
    timer = RuntimeTimer(1.2)
    busy = dataclasses.replace(SUSPECT, machine=BUSY)        # not significant either: only the re-time decides
    b = blame.settle(busy, files, files, store, timer, [RUNTIME_LINE], GATE, change)
    assert b.regression and b.cause is Cause.RUNTIME
    assert "loaded by tonight's runtime vs last night's" in b.text and RUNTIME_LINE in b.text
    # one schedule per file: two processes alternating four blocks paired far worse under load
    assert [{label: (s.file.name, s.runtime) for label, s in labels.items()} for _, labels in timer.calls] == [
        {"previous:float": (f"{files[('m', 'float')]}.tflite", change.kept),
         "tonight:float": (f"{files[('m', 'float')]}.tflite", None)},
        {"previous:qat_int8": (f"{files[('m', 'qat_int8')]}.tflite", change.kept),
         "tonight:qat_int8": (f"{files[('m', 'qat_int8')]}.tflite", None)}]


def test_a_new_runtime_as_fast_as_the_old_one_is_cleared_even_where_the_ratio_was_significant(tmp_path):
    store, files, change = _runtime_night(tmp_path)
    significant = SUSPECT
    b = blame.settle(significant, files, files, store, RuntimeTimer(1.0), [RUNTIME_LINE], GATE, change)
    assert not b.regression and b.cause is Cause.MACHINE and "it is not slower" in b.text
    # another version change stays judged by the significance rule
    other = blame.settle(significant, files, files, store, RuntimeTimer(1.0),
                         [RUNTIME_LINE, "python 3.11.7 -> 3.11.9"], GATE, change)
    assert other.regression and other.cause is Cause.RUNTIME and "python 3.11.7 -> 3.11.9" in other.text


def test_a_runtime_that_is_not_kept_falls_back_to_the_significance_rule(tmp_path):
    store, files, change = _runtime_night(tmp_path)
    lost = dataclasses.replace(change, kept=None, problem="last night's runtime is not kept")
    timer = RuntimeTimer(1.2)
    b = blame.settle(dataclasses.replace(SUSPECT, significant=False), files, files, store, timer,
                     [RUNTIME_LINE], GATE, lost)
    assert not b.regression and "could not be re-timed: last night's runtime is not kept" in b.text
    assert not timer.calls
    assert blame.settle(SUSPECT, files, files, store, timer, [RUNTIME_LINE], GATE, lost).regression


def test_a_device_that_cannot_load_another_runtime_leaves_it_unconfirmed(tmp_path):
    store, files, change = _runtime_night(tmp_path)

    def refusing(device, labels):
        raise RuntimeError("phone cannot load a kept runtime")
    b = blame.settle(dataclasses.replace(SUSPECT, significant=False), files, files, store, refusing,
                     [RUNTIME_LINE], GATE, change)
    assert not b.regression and "RuntimeError: phone cannot load a kept runtime" in b.text


class UndecidedRuntimeTimer(RuntimeTimer):
    """Tonight's runtime 1.09x, each round's load on one runtime's block only: an interval
    that reaches across the tolerance, however often it is timed."""

    def __call__(self, device: str, labels: dict) -> Timed:
        self.calls.append((device, dict(labels)))
        rng = np.random.default_rng(len(self.calls))
        return Timed({label: [float(2.0 * (1.0 if subject.runtime else 1.09) * load_)
                              for load_ in rng.lognormal(0, 0.15, self.rounds) for _ in range(self.per_block)]
                      for label, subject in labels.items()}, self.per_block)


def test_an_undecided_runtime_retime_does_not_clear_the_runtime(tmp_path):
    store, files, change = _runtime_night(tmp_path)
    b = blame.settle(SUSPECT, files, files, store, UndecidedRuntimeTimer(1.0, rounds=8), [RUNTIME_LINE], GATE,
                     change)
    assert "it is not slower" not in b.text and "re-timed beside last night's:" in b.text
    assert b.cause is Cause.RUNTIME      # left to the significance rule, as a runtime that cannot be re-timed
