"""Was the machine busy or throttled while a device timed its models? Judged from the state
sampled around the timing window (``measure.machine_state``) with the thresholds of
``claims.tolerances``. A night judged busy has its latency kept out of the comparison with
other nights (a WARN "machine busy: ...", never a regression): a shared runner's load moves a
median by tens of percent, more than any tolerance worth gating on."""
from __future__ import annotations

import dataclasses

from qat_harness.claims import tolerances
from qat_harness.measure.machine_state import DETAILS_KEY, MachineState
from qat_harness.record.tree import BenchDetails, DeviceSection

TONIGHT, LAST_NIGHT = "tonight", "last night"


@dataclasses.dataclass(frozen=True)
class MachineJudgement:
    busy: bool
    reasons: tuple[str, ...] = ()

    def text(self) -> str:
        return "machine busy: " + "; ".join(self.reasons) if self.busy else "machine quiet"

    def about_tonight(self) -> "MachineJudgement":
        """Only the reasons that are tonight's own (``judge_nights`` says whose each is)."""
        mine = tuple(r for r in self.reasons if r.startswith(TONIGHT))
        return MachineJudgement(bool(mine), mine)


QUIET = MachineJudgement(False)


def state_of(section: DeviceSection | None) -> MachineState | None:
    """The machine state the timing stage kept in a device's bench details, if any."""
    from qat_harness.record import codec

    details = section.bench_details if section else None
    data = details.device.get(DETAILS_KEY) if details else None
    if not isinstance(data, dict):
        return None
    try:
        return codec.structure(MachineState, data)
    except ValueError:
        return None


def state_details(state: MachineState) -> dict:
    """The state as the JSON the timing stage keeps in ``BenchDetails.device``."""
    return dataclasses.asdict(state)


def keep_state(details: BenchDetails, state: MachineState | None) -> str | None:
    """Keep the window's machine state beside the device's timing details; the text to note in
    the report when it was busy or throttled (every report says so), else None."""
    if state is None:
        return None
    details.device[DETAILS_KEY] = state_details(state)
    judged = judge_window(state)
    return f"{judged.text()} ({state.summary()}); its latency is not judged against other nights" \
        if judged.busy else None


def judge_window(state: MachineState | None) -> MachineJudgement:
    """One timing window on its own: other processes' share of the CPUs (else the load
    average), the canary after the timing against before it, and the cores' frequency."""
    if state is None:
        return QUIET
    reasons = []
    share = state.other_cpu_share
    if share is not None and share > tolerances.MACHINE_BUSY_OTHER_CPU_SHARE:
        reasons.append(f"other processes used {share:.0%} of the {state.cpus} CPU(s) during timing "
                       f"(> {tolerances.MACHINE_BUSY_OTHER_CPU_SHARE:.0%})")
    # The load average counts our own timing threads and trails the last minute (the build
    # before the timing, last night's load in a quick succession of nights): it only judges
    # where other processes' CPU time is unreadable.
    load = max((v for v in (state.load1_before, state.load1_after) if v is not None), default=None)
    if share is None and load is not None and load > tolerances.MACHINE_BUSY_LOAD_PER_CPU * state.cpus:
        reasons.append(f"load average {load:.1f} on {state.cpus} CPU(s)")
    if state.canary_before_ms and state.canary_after_ms:
        slower = max(state.canary_before_ms, state.canary_after_ms) / min(state.canary_before_ms,
                                                                          state.canary_after_ms) - 1
        if slower > tolerances.MACHINE_BUSY_CANARY_SLOWDOWN:
            reasons.append(f"the canary's time moved {slower:.0%} across the timing "
                           f"({state.canary_before_ms:.1f} -> {state.canary_after_ms:.1f} ms)")
    if state.lowest_frequency_share is not None \
            and state.lowest_frequency_share < tolerances.MACHINE_THROTTLED_FREQUENCY_SHARE:
        reasons.append(f"throttled: a core ran at {state.lowest_frequency_share:.0%} of its maximum frequency"
                       + (f" (governor {state.governor})" if state.governor else ""))
    return MachineJudgement(bool(reasons), tuple(reasons))


def judge_nights(baseline: MachineState | None, current: MachineState | None) -> MachineJudgement:
    """Two nights of one device: busy when either window was, or when the canary ran more than
    the tolerance slower on one night than on the other (the slower night was the busy one)."""
    reasons = [f"{LAST_NIGHT}: {r}" for r in judge_window(baseline).reasons]
    reasons += [f"{TONIGHT}: {r}" for r in judge_window(current).reasons]
    a = baseline.canary_ms if baseline else None
    b = current.canary_ms if current else None
    if a and b and max(a, b) / min(a, b) - 1 > tolerances.MACHINE_BUSY_CANARY_SLOWDOWN:
        which = f"{TONIGHT}'s" if b > a else f"{LAST_NIGHT}'s"
        reasons.append(f"{which} canary {max(a, b) / min(a, b):.2f}x the other night's ({a:.1f} -> {b:.1f} ms)")
    return MachineJudgement(bool(reasons), tuple(reasons))
