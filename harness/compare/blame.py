"""Confirm before blaming. A latency that looks regressed against last night is a regression
only when something explains it that is not the machine:

* the model file: tonight's file (digest changed) re-timed beside last night's (kept in the
  history's ``files/``) in the same ABBA blocks, on the same device and runtime, is still
  slower by more than the tolerance over the whole paired interval. Both files meet the same
  load, so a busy machine cannot fake this, and a quiet night cannot hide it;
* the runtime: the device loaded another runtime package than last night (its files' digest
  changed), and tonight's files loaded by tonight's runtime, re-timed beside the same files
  loaded by last night's runtime (kept in the history's ``runtimes/``) in the same ABBA blocks,
  are slower by more than the tolerance over the whole paired interval;
* another library, or a runtime that cannot be re-timed (not kept, or a device that loads no
  other runtime): the versions changed and the slowdown was significant where load cannot put
  it (beside the night-to-night spread of earlier nights);
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
class Subject:
    """What one label of a confirming schedule times: a file, loaded by a runtime (the folder to
    import it from; None: the device's own)."""
    file: Path
    runtime: Path | None = None


@dataclasses.dataclass(frozen=True)
class Timed:
    """Steady runs per label, timed in ABBA blocks of ``runs_per_block`` steady runs each."""
    times_ms: dict[str, list[float]]
    runs_per_block: int | None


#: (device name, label -> what it times) -> all of them timed together in one ABBA schedule
Timer = Callable[[str, dict[str, Subject]], Timed]


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


class Compared(str, enum.Enum):
    """What a re-time puts beside last night's: tonight's file, or tonight's runtime."""
    FILE = "file"
    RUNTIME = "runtime"


@dataclasses.dataclass(frozen=True)
class Retimed:
    variant: str
    ratio: stats.RatioCI          # tonight's / last night's (file or runtime), same blocks
    outcome: Outcome
    compared: Compared = Compared.FILE

    def explain(self) -> str:
        ci = ("" if self.ratio.ci_low is None or self.ratio.ci_high is None
              else f", 95% CI [{self.ratio.ci_low - 1:+.0%}, {self.ratio.ci_high - 1:+.0%}]")
        what = (f"{self.variant} tonight's file vs last night's" if self.compared is Compared.FILE
                else f"{self.variant} loaded by tonight's runtime vs last night's")
        return f"{what}, same ABBA blocks: {self.ratio.ratio - 1:+.0%}{ci} over {self.ratio.n_pairs} rounds"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One confirming re-time: what changed, and what re-timing it beside last night's showed
    (None: it could not be re-timed, ``problem`` says why)."""
    changed: str
    retimed: tuple[Retimed, ...] | None
    problem: str | None = None
    #: re-timed, and every interval lies inside the tolerance (or below it): not the cause
    cleared: bool = False

    @property
    def confirmed(self) -> bool:
        return any(r.outcome is Outcome.REGRESSION for r in self.retimed or ())

    def shown(self) -> str:
        return "; ".join(r.explain() for r in self.retimed or ())


@dataclasses.dataclass(frozen=True)
class RuntimeChange:
    """The device loaded another runtime than last night: the change as ``machine`` words it,
    and the folder last night's is kept in (None: not kept, ``problem`` says why)."""
    line: str
    kept: Path | None
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class Blame:
    model: str
    device: str
    regression: bool
    cause: Cause
    text: str
    retimed: tuple[Retimed, ...] = ()


def attribute(suspect: Suspect, files_changed: list[str], retimed: list[Retimed] | None,
              version_changes: list[str], retime_problem: str | None = None,
              runtime: Evidence | None = None) -> Blame:
    """The decision, from what changed and what re-timing showed: the files (``retimed``, None:
    nothing to re-time) and the runtime (``runtime``, None: it did not change)."""
    file_evidence = Evidence(f"the model file ({', '.join(files_changed)})", tuple(retimed) if retimed else None,
                             retime_problem)
    shown = file_evidence.shown()
    every = tuple(retimed or ()) + tuple(runtime.retimed or () if runtime else ())
    head = f"{suspect.why}"
    if file_evidence.confirmed:
        runtime_too = runtime if runtime is not None and runtime.confirmed else None
        others = [c for c in version_changes if runtime_too is None or c != runtime_too.changed]
        return Blame(suspect.model, suspect.device, True, Cause.MODEL,
                     f"{head}; confirmed: {shown}; changed: {file_evidence.changed}"
                     + (f"; confirmed too: {runtime_too.shown()}; changed: {runtime_too.changed}"
                        if runtime_too else "")
                     + (f"; also changed: {'; '.join(others)}" if others else ""), every)
    files = (f"the files changed ({', '.join(files_changed)}) but re-timed beside last night's they are not "
             f"slower ({shown})" if retimed else
             f"the files changed ({', '.join(files_changed)}) but could not be re-timed: {retime_problem}"
             if files_changed else "the files did not change")
    if runtime is not None and runtime.confirmed:
        others = [c for c in version_changes if c != runtime.changed]
        return Blame(suspect.model, suspect.device, True, Cause.RUNTIME,
                     f"{head}; {files}; confirmed: {runtime.shown()}; changed: {runtime.changed}"
                     + (f"; also changed: {'; '.join(others)}" if others else ""), every)
    if runtime is not None:
        if runtime.retimed is None:
            files += f"; {runtime.changed} but last night's runtime could not be re-timed: {runtime.problem}"
        elif runtime.cleared:
            # the runtime is cleared: what remains to explain the slowdown is everything else
            files += f"; {runtime.changed} but re-timed beside last night's it is not slower ({runtime.shown()})"
            version_changes = [c for c in version_changes if c != runtime.changed]
        else:
            files += f"; {runtime.changed}, re-timed beside last night's: {runtime.shown()}"
    if version_changes and suspect.significant:
        return Blame(suspect.model, suspect.device, True, Cause.RUNTIME,
                     f"{head}; {files}; changed: {'; '.join(version_changes)}", every)
    if version_changes and not suspect.machine.busy:   # the runtime's, suspected, unconfirmed
        return Blame(suspect.model, suspect.device, False, Cause.RUNTIME,
                     f"not significant: {head}; {files}; changed: {'; '.join(version_changes)}, but the "
                     "slowdown is not significant beside the night-to-night spread of the earlier nights "
                     "(or there are too few of them)", every)
    if suspect.machine.busy:
        versions = f"; changed: {'; '.join(version_changes)}, not significant" if version_changes else ""
        return Blame(suspect.model, suspect.device, False, Cause.MACHINE,
                     f"{suspect.machine.text()}; {head} not judged; {files}{versions}", every)
    if files_changed and not retimed and runtime is None:
        return Blame(suspect.model, suspect.device, False, Cause.MACHINE,
                     f"not confirmed: {head}; {files}", ())
    return Blame(suspect.model, suspect.device, False, Cause.MACHINE,
                 f"not reproduced: {head}; {files}; no version changed that could: the machine", every)


#: A re-time whose interval still reaches across the tolerance is timed again and its rounds
#: pooled with the earlier ones, up to this many schedules in all: a slowdown twice the
#: tolerance then reaches significance on a loaded machine, and an equal pair ends after one.
CONFIRM_MAX_SCHEDULES = 3


def retime(timer: Timer, device: str, pairs: Mapping[str, tuple[Subject, Subject]], gate: LatencyGate,
           max_schedules: int = CONFIRM_MAX_SCHEDULES, compared: Compared = Compared.FILE) -> list[Retimed]:
    """``pairs``: variant -> (last night's, tonight's), all timed in one schedule, again while
    some variant's interval is undecided (``undecided``)."""
    labels = {f"{who}:{variant}": subject for variant, (old, new) in pairs.items()
              for who, subject in ((PREVIOUS, old), (TONIGHT, new))}
    rounds: dict[str, list[list[float]]] = {label: [] for label in labels}
    runs: dict[str, list[float]] = {label: [] for label in labels}
    out: list[Retimed] = []
    for _ in range(max(1, max_schedules)):
        timed = timer(device, labels)
        for label in labels:
            runs[label] += timed.times_ms[label]
            if timed.runs_per_block:
                rounds[label] += stats.split_blocks(timed.times_ms[label], timed.runs_per_block)
        out = [compare_pair(variant, rounds, runs, gate, compared) for variant in pairs]
        if not any(undecided(r, gate) for r in out):
            break
    return out


def compare_pair(variant: str, rounds: dict[str, list[list[float]]], runs: dict[str, list[float]],
                 gate: LatencyGate, compared: Compared = Compared.FILE) -> Retimed:
    new, old = f"{TONIGHT}:{variant}", f"{PREVIOUS}:{variant}"
    ratio = (stats.paired_block_ratio_ci(rounds[new], rounds[old]) if rounds[new]
             else stats.ratio_of_medians_ci(runs[new], runs[old]))
    return Retimed(variant, ratio, gate.judge_ratio(ratio.ratio, ratio.ci_low, ratio.ci_high), compared)


def undecided(retimed: Retimed, gate: LatencyGate) -> bool:
    """Its interval reaches across the tolerance: more rounds could still decide it either way."""
    low, high = retimed.ratio.ci_low, retimed.ratio.ci_high
    return low is not None and high is not None and low <= 1 + gate.tolerance < high


def settle(suspect: Suspect, previous: Digests, tonight: Digests, store: FileStore, timer: Timer,
           version_changes: list[str], gate: LatencyGate, runtime: RuntimeChange | None = None) -> Blame:
    """Re-time what changed of the suspect's model (when last night's files are kept) and, when
    the device's runtime changed, tonight's files loaded by last night's runtime beside
    tonight's (when it is kept); then attribute."""
    model = suspect.model
    changed = sorted(v for (m, v), digest in tonight.items()
                     if m == model and previous.get((m, v)) not in (None, digest))
    pairs = {v: (Subject(store.path(previous[(model, v)])), Subject(store.path(tonight[(model, v)])))
             for v in changed}
    retimed, problem = _retimed(timer, suspect.device, pairs, gate, Compared.FILE, "last night's {} file(s) are no "
                                f"longer kept in {store.folder}")
    evidence = None
    if runtime is not None:
        timed_tonight = {v: store.path(digest) for (m, v), digest in sorted(tonight.items()) if m == model}
        if runtime.kept is None:
            evidence = Evidence(runtime.line, None, runtime.problem or "last night's runtime is not kept")
        else:
            evidence = _retime_runtime(timer, suspect.device, timed_tonight, runtime, gate, store)
    return attribute(suspect, changed, retimed, version_changes, problem, evidence)


def _retime_runtime(timer: Timer, device: str, files: dict[str, Path], runtime: RuntimeChange,
                    gate: LatencyGate, store: FileStore) -> Evidence:
    """Each file loaded by last night's runtime and by tonight's, one schedule per file. The two
    runtimes live in two processes, and under load a schedule alternating four blocks between
    them (two files) paired no better than +-15%, where one file's two blocks gave +-3%
    (measured on 2 vCPUs beside two spinning processes)."""
    found: list[Retimed] = []
    for variant, file in files.items():
        retimed, problem = _retimed(timer, device, {variant: (Subject(file, runtime.kept), Subject(file))}, gate,
                                    Compared.RUNTIME, "tonight's {} file is not kept in " + str(store.folder))
        if retimed is None:
            return Evidence(runtime.line, None, problem)
        found += retimed
    return Evidence(runtime.line, tuple(found), cleared=all(
        r.outcome in (Outcome.UNCHANGED, Outcome.IMPROVEMENT) and not undecided(r, gate) for r in found))


def _retimed(timer: Timer, device: str, pairs: dict[str, tuple[Subject, Subject]], gate: LatencyGate,
             compared: Compared, missing_text: str) -> tuple[list[Retimed] | None, str | None]:
    """``retime``, or None and why not: a file that is not kept, a device that cannot time
    them (a failed re-time leaves the finding unconfirmed, never the run lost)."""
    missing = [v for v, (old, new) in pairs.items() if not (old.file.is_file() and new.file.is_file())]
    if missing:
        return None, missing_text.format(", ".join(missing))
    if not pairs:
        return None, None
    try:
        return retime(timer, device, pairs, gate, compared=compared), None
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return None, f"{type(exc).__name__}: {exc}"
