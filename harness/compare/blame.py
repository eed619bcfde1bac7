"""Confirm before blaming. A latency that looks regressed against last night is a regression
only when something explains it that is not the machine:

* the model file: tonight's file (digest changed) re-timed beside last night's (kept in the
  history's ``files/``) in the same ABBA blocks, on the same device and runtime, is still
  slower by more than the tolerance over the whole paired interval. Both files meet the same
  load, so a busy machine cannot fake this, and a quiet night cannot hide it;
* the runtime or a library: the files did not change (or re-timing them did not reproduce the
  slowdown) but the versions did, and the slowdown was seen where load cannot put it (a quiet
  machine, or the int8/float ratio of one night);
* neither: the machine. A WARN saying so, never a regression.

``Timer`` is the seam: the nightly gives one that opens the device, a test a fake."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from pathlib import Path

from qat_harness import stats
from qat_harness.compare.gates import LatencyGate, Outcome
from qat_harness.compare.load import QUIET, MachineJudgement
from qat_harness.compare.night_facts import Digests, FileStore

PREVIOUS, TONIGHT = "previous", "tonight"


class Cause(str, enum.Enum):
    MODEL = "the model file"
    RUNTIME = "the runtime/library version"
    MACHINE = "neither (the machine)"


@dataclasses.dataclass(frozen=True)
class Timed:
    """Steady runs per label, timed in ABBA blocks of ``runs_per_block`` steady runs each."""
    times_ms: dict[str, list[float]]
    runs_per_block: int | None


#: (device name, label -> file) -> the files timed together in one ABBA schedule
Timer = Callable[[str, dict[str, Path]], Timed]


@dataclasses.dataclass(frozen=True)
class Suspect:
    """A latency that looks regressed (or files that changed on a night the absolute medians
    cannot judge), before it is confirmed."""
    model: str
    device: str
    why: str
    #: the slowdown's whole interval, widened by the spread earlier nights showed, lies past the
    #: tolerance where load cannot put it: the int8/float ratio of one night, or the latency of
    #: a night judged quiet. Only such a slowdown can be blamed on a new runtime, which no
    #: re-time can put beside the old one.
    significant: bool
    machine: MachineJudgement = QUIET


@dataclasses.dataclass(frozen=True)
class Retimed:
    variant: str
    ratio: stats.RatioCI          # tonight's file / last night's file, same blocks
    outcome: Outcome

    def explain(self) -> str:
        ci = ("" if self.ratio.ci_low is None or self.ratio.ci_high is None
              else f", 95% CI [{self.ratio.ci_low - 1:+.0%}, {self.ratio.ci_high - 1:+.0%}]")
        return (f"{self.variant} tonight's file vs last night's, same ABBA blocks: {self.ratio.ratio - 1:+.0%}{ci}"
                f" over {self.ratio.n_pairs} rounds")


@dataclasses.dataclass(frozen=True)
class Blame:
    model: str
    device: str
    regression: bool
    cause: Cause
    text: str
    retimed: tuple[Retimed, ...] = ()


def attribute(suspect: Suspect, files_changed: list[str], retimed: list[Retimed] | None,
              version_changes: list[str], retime_problem: str | None = None) -> Blame:
    """The decision, from what changed and what re-timing showed (None: nothing to re-time)."""
    confirmed = [r for r in retimed or () if r.outcome is Outcome.REGRESSION]
    shown = "; ".join(r.explain() for r in retimed or ())
    head = f"{suspect.why}"
    if confirmed:
        return Blame(suspect.model, suspect.device, True, Cause.MODEL,
                     f"{head}; confirmed: {shown}; changed: the model file ({', '.join(files_changed)})"
                     + (f"; also changed: {'; '.join(version_changes)}" if version_changes else ""),
                     tuple(retimed or ()))
    files = (f"the files changed ({', '.join(files_changed)}) but re-timed beside last night's they are not "
             f"slower ({shown})" if retimed else
             f"the files changed ({', '.join(files_changed)}) but could not be re-timed: {retime_problem}"
             if files_changed else "the files did not change")
    if version_changes and suspect.significant:
        return Blame(suspect.model, suspect.device, True, Cause.RUNTIME,
                     f"{head}; {files}; changed: {'; '.join(version_changes)}", tuple(retimed or ()))
    if version_changes and not suspect.machine.busy:   # the runtime's, suspected, unconfirmed
        return Blame(suspect.model, suspect.device, False, Cause.RUNTIME,
                     f"not significant: {head}; {files}; changed: {'; '.join(version_changes)}, but the "
                     "slowdown is not significant beside the night-to-night spread of the earlier nights "
                     "(or there are too few of them)", tuple(retimed or ()))
    if suspect.machine.busy:
        versions = f"; changed: {'; '.join(version_changes)}, not significant" if version_changes else ""
        return Blame(suspect.model, suspect.device, False, Cause.MACHINE,
                     f"{suspect.machine.text()}; {head} not judged; {files}{versions}", tuple(retimed or ()))
    if files_changed and not retimed:
        return Blame(suspect.model, suspect.device, False, Cause.MACHINE,
                     f"not confirmed: {head}; {files}", ())
    return Blame(suspect.model, suspect.device, False, Cause.MACHINE,
                 f"not reproduced: {head}; {files}, the runtime and libraries did not: the machine",
                 tuple(retimed or ()))


#: A re-time whose interval still reaches across the tolerance is timed again and its rounds
#: pooled with the earlier ones, up to this many schedules in all: a slowdown twice the
#: tolerance then reaches significance on a loaded machine, and an equal pair ends after one.
CONFIRM_MAX_SCHEDULES = 3


def retime(timer: Timer, device: str, pairs: Mapping[str, tuple[Path, Path]], gate: LatencyGate,
           max_schedules: int = CONFIRM_MAX_SCHEDULES) -> list[Retimed]:
    """``pairs``: variant -> (last night's file, tonight's file), all timed in one schedule,
    again while some variant's interval is undecided (``undecided``)."""
    labels = {f"{who}:{variant}": path for variant, (old, new) in pairs.items()
              for who, path in ((PREVIOUS, old), (TONIGHT, new))}
    rounds: dict[str, list[list[float]]] = {label: [] for label in labels}
    runs: dict[str, list[float]] = {label: [] for label in labels}
    out: list[Retimed] = []
    for _ in range(max(1, max_schedules)):
        timed = timer(device, labels)
        for label in labels:
            runs[label] += timed.times_ms[label]
            if timed.runs_per_block:
                rounds[label] += stats.split_blocks(timed.times_ms[label], timed.runs_per_block)
        out = [compare_pair(variant, rounds, runs, gate) for variant in pairs]
        if not any(undecided(r, gate) for r in out):
            break
    return out


def compare_pair(variant: str, rounds: dict[str, list[list[float]]], runs: dict[str, list[float]],
                 gate: LatencyGate) -> Retimed:
    new, old = f"{TONIGHT}:{variant}", f"{PREVIOUS}:{variant}"
    ratio = (stats.paired_block_ratio_ci(rounds[new], rounds[old]) if rounds[new]
             else stats.ratio_of_medians_ci(runs[new], runs[old]))
    return Retimed(variant, ratio, gate.judge_ratio(ratio.ratio, ratio.ci_low, ratio.ci_high))


def undecided(retimed: Retimed, gate: LatencyGate) -> bool:
    """Its interval reaches across the tolerance: more rounds could still decide it either way."""
    low, high = retimed.ratio.ci_low, retimed.ratio.ci_high
    return low is not None and high is not None and low <= 1 + gate.tolerance < high


def settle(suspect: Suspect, previous: Digests, tonight: Digests, store: FileStore, timer: Timer,
           version_changes: list[str], gate: LatencyGate) -> Blame:
    """Re-time what changed of the suspect's model (when last night's files are kept), then
    attribute."""
    changed = sorted(v for (m, v), digest in tonight.items()
                     if m == suspect.model and previous.get((m, v)) not in (None, digest))
    pairs = {v: (store.path(previous[(suspect.model, v)]), store.path(tonight[(suspect.model, v)]))
             for v in changed}
    missing = [v for v, (old, new) in pairs.items() if not (old.is_file() and new.is_file())]
    retimed, problem = None, None
    if missing:
        problem = f"last night's {', '.join(missing)} file(s) are no longer kept in {store.folder}"
    elif pairs:
        try:
            retimed = retime(timer, suspect.device, pairs, gate)
        except Exception as exc:  # noqa: BLE001 - a failed re-time leaves the finding unconfirmed, never the run lost
            problem = f"{type(exc).__name__}: {exc}"
    return attribute(suspect, changed, retimed, version_changes, problem)
