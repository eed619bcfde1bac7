"""The nightly's gate on top of a ``Comparison``: the machine's state on both nights, the
int8/float ratio judged before the absolute medians, and every latency that looks regressed
confirmed (``blame``) before it counts. What comes out is the comparison with its latency
regressions replaced by the confirmed ones, and the lines that say why."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness.compare import Comparison, Finding
from qat_harness.compare.blame import Blame, RuntimeChange, Subject, Suspect, Timed, Timer, settle
from qat_harness.compare.gates import MIN_NOISE_PAIRS, LatencyGate, LatencyRule, Outcome
from qat_harness.compare.load import QUIET
from qat_harness.compare.machine import NightEnvironment, device_runtime_change, runtime_changes
from qat_harness.compare.night_facts import Digests, FileStore, GateFinding, RuntimeStore, device_runtimes
from qat_harness.options import RunOptions
from qat_harness.record.tree import RunReport

LOOKS_SLOWER = (Outcome.REGRESSION, Outcome.WITHIN_NOISE, Outcome.MACHINE_BUSY)
#: The confirming re-time runs at least this long and this many runs per file: it times only
#: the suspect files, and on a loaded machine (other processes at 90% of the CPUs, measured) the
#: run's own short schedule left paired intervals of +-50%.
CONFIRM_MIN_SECONDS = 10.0
CONFIRM_MIN_RUNS = 300


@dataclasses.dataclass(frozen=True)
class NightVerdict:
    comparison: Comparison          # latency regressions: the confirmed ones only
    blames: list[Blame]
    busy: dict[tuple[str, str], str]  # (model, device) -> 'machine busy: ...' (either night)
    busy_tonight: dict[tuple[str, str], str]   # the same, for tonight's own timing only

    @property
    def regressions(self) -> list[Finding]:
        return self.comparison.regressions

    def text(self) -> str:
        from tabulate import tabulate

        from qat_harness.writers.text import visible

        lines = ["nightly gate: the machine, the int8/float ratio, then each suspect latency confirmed "
                 "by re-timing last night's files beside tonight's"]
        for (model, device), why in sorted(self.busy.items()):
            lines.append(f"  WARN {visible(model)} {visible(device)}: {visible(why)}")
        if self.comparison.ratios:
            lines.append(tabulate([[visible(r.model), visible(r.device), r.kind, f"{r.baseline:.3f}",
                                    f"{r.current:.3f}", f"{r.change:+.1%}",
                                    "-" if r.ci_low is None or r.ci_high is None
                                    else f"[{r.ci_low - 1:+.1%}, {r.ci_high - 1:+.1%}]", r.outcome.value]
                                   for r in self.comparison.ratios],
                                  headers=["model", "device", "int8/float", "baseline", "current", "change",
                                           "95% CI", "gate"]))
        for b in self.blames:
            tag = f"REGRESSION ({b.cause.value})" if b.regression else f"WARN ({b.cause.value}, not confirmed)"
            lines.append(f"  {tag} {visible(b.model)} {visible(b.device)}: {visible(b.text)}")
        if not self.blames:
            lines.append("  no latency looked regressed")
        return "\n".join(lines)

    def findings(self) -> list[GateFinding]:
        """What the history keeps of tonight's gate (the history page marks these)."""
        out = [GateFinding(m, d, "busy", None, why) for (m, d), why in sorted(self.busy_tonight.items())]
        out += [GateFinding(b.model, b.device, "regression" if b.regression else "not confirmed",
                            b.cause.value, b.text) for b in self.blames]
        return out


def suspects(comparison: Comparison, tonight: Digests, previous: Digests,
             new_runtime: frozenset[str] = frozenset()) -> list[tuple[Suspect, bool]]:
    """One suspect per model and device whose latency or int8/float ratio looks slower, or whose
    timed files changed, or whose device loaded a new runtime (``new_runtime``: only a re-time
    can judge those on a busy night, or beside a night-to-night spread); with whether it
    looked regressed (a changed file re-timed and found not slower is then no finding at all).
    A suspect is *significant* (a new runtime may be blamed for it) only when its interval
    includes the night-to-night spread of earlier nights: one night's interval does not know
    how far the int8/float ratio moves with the machine's state alone (on a 2-vCPU VM, from
    0.58 to 0.83 between quiet nights of the same files: a new version that changed nothing
    was blamed in 3 of 10 trials on one night's interval)."""
    why: dict[tuple[str, str], list[str]] = {}
    significant: set[tuple[str, str]] = set()
    for r in comparison.ratios:
        if r.outcome in LOOKS_SLOWER and r.change > 0:
            why.setdefault((r.model, r.device), []).append(r.explain())
            if r.outcome is Outcome.REGRESSION and r.noise_nights >= MIN_NOISE_PAIRS:
                significant.add((r.model, r.device))
    for row in comparison.latency:
        if row.outcome in LOOKS_SLOWER and row.change > comparison.latency_tolerance:
            why.setdefault((row.model, row.device), []).append(f"{row.variant} {row.explanation}")
            # a busy night's row is MACHINE_BUSY instead
            if row.outcome is Outcome.REGRESSION and row.rule == LatencyRule.INTERVAL_WITH_HISTORY.value:
                significant.add((row.model, row.device))
    changed_models = {m for (m, v), d in tonight.items() if previous.get((m, v)) not in (None, d)}
    timed = {(row.model, row.device) for row in comparison.latency}
    out = []
    for model, device in sorted(timed):
        looked = (model, device) in why
        if not looked and model not in changed_models and device not in new_runtime:
            continue
        reasons = why.get((model, device)) or ["tonight's files changed" if model in changed_models
                                               else f"{device} loaded a new runtime"]
        out.append((Suspect(model, device, "; ".join(reasons), (model, device) in significant,
                            comparison.machine.get((model, device), QUIET)), looked))
    return out


def judge_night(comparison: Comparison, baseline: RunReport, current: RunReport, previous: Digests,
                tonight: Digests, store: FileStore, timer: Timer,
                runtimes: RuntimeStore | None = None) -> NightVerdict:
    """``runtimes``: where last night's runtime packages are kept (None: nowhere)."""
    gate = LatencyGate(tolerance=comparison.latency_tolerance, confidence=comparison.confidence)
    env_before, env_after = NightEnvironment.from_report(baseline), NightEnvironment.from_report(current)
    changed_runtime = new_runtimes(baseline, current, env_before, env_after, runtimes)
    blames = []
    for suspect, looked in suspects(comparison, tonight, previous, frozenset(changed_runtime)):
        blame = settle(suspect, previous, tonight, store, timer,
                       runtime_changes(env_before, env_after, suspect.device), gate,
                       changed_runtime.get(suspect.device))
        if blame.regression or looked:
            blames.append(blame)
    confirmed = {(b.model, b.device) for b in blames if b.regression}
    simulated = {(m, d): s.simulated for m, ms in current.models.items() for d, s in ms.devices.items()}
    regressions = [f for f in comparison.regressions if f.claim != "latency"]
    regressions += [Finding("latency", b.model, b.device, b.text, f"confirmed: {b.cause.value}",
                            simulated.get((b.model, b.device), False)) for b in blames if b.regression]
    latency = [row if row.outcome is not Outcome.REGRESSION or (row.model, row.device) in confirmed
               else dataclasses.replace(row, outcome=Outcome.NOT_CONFIRMED) for row in comparison.latency]
    busy = {key: j.text() for key, j in comparison.machine.items() if j.busy}
    tonight_only = {key: j.about_tonight() for key, j in comparison.machine.items()}
    return NightVerdict(dataclasses.replace(comparison, regressions=regressions, latency=latency), blames, busy,
                        {key: j.text() for key, j in tonight_only.items() if j.busy})


def new_runtimes(baseline: RunReport, current: RunReport, env_before: NightEnvironment,
                 env_after: NightEnvironment, runtimes: RuntimeStore | None) -> dict[str, RuntimeChange]:
    """device -> how its runtime changed since last night, and where last night's is kept."""
    before, after = device_runtimes(baseline), device_runtimes(current)
    out = {}
    kept_copies: dict[str, Path | None] = {}   # by digest: the devices of one package share its copy
    for device in sorted(set(before) & set(after)):
        if before[device].digest == after[device].digest:
            continue
        if before[device].digest not in kept_copies:
            kept_copies[before[device].digest] = runtimes.kept(before[device]) if runtimes is not None else None
        kept = kept_copies[before[device].digest]
        out[device] = RuntimeChange(
            device_runtime_change(env_before, env_after, device) or f"device {device} runtime changed", kept,
            None if kept else f"last night's {before[device].text()} is not kept"
                              + (f" in {runtimes.folder}" if runtimes is not None else ""))
    return out


def device_timer(opts: RunOptions) -> Timer:
    """Times files on one of the run's devices, opened with the options ``opts``, in one ABBA
    schedule (the device's ``benchmark``, or ``benchmark_runtimes`` where some are loaded by
    another runtime), fed zeros of each file's input shape and type."""
    def timer(device: str, labels: dict[str, Subject]) -> Timed:
        from qat_harness.devices import registry

        dev = registry.create(device, num_threads=opts.num_threads, **opts.device_options.get(device, {}))
        try:
            settings = dataclasses.replace(opts.bench, num_threads=opts.num_threads,
                                           min_seconds=max(opts.bench.min_seconds, CONFIRM_MIN_SECONDS),
                                           min_runs=max(opts.bench.min_runs, CONFIRM_MIN_RUNS),
                                           max_runs=max(opts.bench.max_runs, CONFIRM_MIN_RUNS))
            files = {label: subject.file for label, subject in labels.items()}
            inputs = {label: zero_inputs(path) for label, path in files.items()}
            runtimes = {label: subject.runtime for label, subject in labels.items()}
            bench = (dev.benchmark_runtimes(files, runtimes, inputs, settings) if any(runtimes.values())
                     else dev.benchmark(files, inputs, settings))
        finally:
            dev.close()
        blocks = bench.details.get("blocks")
        return Timed({k: list(v) for k, v in bench.times_ms.items()},
                     int(blocks["block_runs"]) - 1 if isinstance(blocks, dict) else None)
    return timer


def zero_inputs(path: Path):
    import numpy as np

    from qat_harness.core.tflite import inspect_model

    info = inspect_model(path)
    arrays = [np.zeros([max(1, int(d)) for d in info.tensor(i).shape], dtype=np.dtype(info.tensor(i).dtype))
              for i in info.inputs]
    return arrays[0] if len(arrays) == 1 else arrays
