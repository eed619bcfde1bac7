"""The machine's state around one device's timing window: how loaded it was (load average,
the CPU time other processes took while we timed), how fast its cores ran (frequency and
governor, where Linux shows them) and a small fixed canary workload timed just before and just
after. A shared CI runner shifts whole nights of latency; these say whether it did tonight.

Other processes' CPU time is the machine's busy time (``/proc/stat``) less this process's and
its waited-for children's (``getrusage``): the timing worker is a one-shot child, waited for
before the window closes, so its time is ours. Where ``/proc`` is missing (not Linux) the
fields are None and the state says it is unknown."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PROC_STAT = Path("/proc/stat")
PROC_LOADAVG = Path("/proc/loadavg")
CPUFREQ = Path("/sys/devices/system/cpu")
CANARY_REPEATS = 3
CANARY_LOOP = 100_000     # ~5 ms of pure Python on a quiet 2020s core: short beside any model timing
#: key in ``BenchDetails.device`` under which the timing stage keeps the state (via the codec)
DETAILS_KEY = "machine_state"


@dataclasses.dataclass(frozen=True)
class MachineState:
    """One timing window. Every field may be None: not readable on this machine."""
    window_s: float
    cpus: int
    load1_before: float | None = None
    load1_after: float | None = None
    other_cpu_s: float | None = None        # CPU seconds other processes used during the window
    lowest_frequency_share: float | None = None   # lowest current / maximum core frequency seen
    governor: str | None = None
    canary_before_ms: float | None = None
    canary_after_ms: float | None = None

    @property
    def other_cpu_share(self) -> float | None:
        """Other processes' CPU time as a share of the machine's capacity over the window."""
        if self.other_cpu_s is None or self.window_s <= 0 or self.cpus <= 0:
            return None
        return max(0.0, self.other_cpu_s / (self.window_s * self.cpus))

    @property
    def canary_ms(self) -> float | None:
        known = [v for v in (self.canary_before_ms, self.canary_after_ms) if v is not None]
        return max(known) if known else None

    def summary(self) -> str:
        """E.g. 'load 3.1 -> 4.0 on 2 CPUs, other processes 61% of the CPUs, canary 12.1/15.3 ms, cores
        at >= 98% of max (schedutil)'."""
        parts = []
        if self.load1_before is not None and self.load1_after is not None:
            parts.append(f"load {self.load1_before:.1f} -> {self.load1_after:.1f} on {self.cpus} CPU(s)")
        share = self.other_cpu_share
        if share is not None:
            parts.append(f"other processes {share:.0%} of the CPUs over {self.window_s:.1f} s")
        if self.canary_before_ms is not None and self.canary_after_ms is not None:
            parts.append(f"canary {self.canary_before_ms:.1f}/{self.canary_after_ms:.1f} ms before/after")
        if self.lowest_frequency_share is not None:
            parts.append(f"cores at >= {self.lowest_frequency_share:.0%} of max"
                         + (f" ({self.governor})" if self.governor else ""))
        return ", ".join(parts) or "machine state not readable here"


@dataclasses.dataclass(frozen=True)
class _Counters:
    wall_s: float
    machine_busy_s: float | None
    own_cpu_s: float
    load1: float | None


def _machine_busy_s() -> float | None:
    """Busy CPU seconds of all cores since boot (user+nice+system+irq+softirq+steal)."""
    try:
        first = PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu" or len(first) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in first[1:])
    steal = rest[0] if rest else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _load1() -> float | None:
    try:
        return float(PROC_LOADAVG.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _counters(clock: Callable[[], float]) -> _Counters:
    return _Counters(clock(), _machine_busy_s(), _own_cpu_s(), _load1())


def frequency_and_governor(root: Path = CPUFREQ) -> tuple[float | None, str | None]:
    """The lowest current/maximum frequency over the cores and the first core's governor."""
    shares, governor = [], None
    for core in sorted(root.glob("cpu[0-9]*/cpufreq")):
        try:
            current = int((core / "scaling_cur_freq").read_text())
            maximum = int((core / "cpuinfo_max_freq").read_text())
        except (OSError, ValueError):
            continue
        if maximum > 0:
            shares.append(current / maximum)
        if governor is None:
            with contextlib.suppress(OSError):
                governor = (core / "scaling_governor").read_text().strip() or None
    return (min(shares) if shares else None), governor


def canary_ms(repeats: int = CANARY_REPEATS, clock: Callable[[], float] = time.perf_counter) -> float:
    """A fixed pure-Python workload (no library, no threads: it measures the core we get),
    its median time over ``repeats`` in ms."""
    times = []
    for _ in range(repeats):
        t0 = clock()
        total = 0
        for i in range(CANARY_LOOP):
            total += i * i
        times.append((clock() - t0) * 1e3)
    return statistics.median(times)


class Window:
    """What ``watch`` yields: the state once the block has ended."""
    state: MachineState | None = None


@contextlib.contextmanager
def watch(clock: Callable[[], float] = time.monotonic) -> Iterator[Window]:
    """Sample the machine around the block: the canary before, counters before and after, the
    canary after (it also wakes the cores up, so the frequency read next is the loaded one)."""
    window = Window()
    before_canary = canary_ms()
    start = _counters(clock)
    try:
        yield window
    finally:
        end = _counters(clock)
        after_canary = canary_ms()
        share, governor = frequency_and_governor()
        other = None
        if start.machine_busy_s is not None and end.machine_busy_s is not None:
            other = max(0.0, (end.machine_busy_s - start.machine_busy_s) - (end.own_cpu_s - start.own_cpu_s))
        window.state = MachineState(window_s=end.wall_s - start.wall_s, cpus=os.cpu_count() or 1,
                                    load1_before=start.load1, load1_after=end.load1, other_cpu_s=other,
                                    lowest_frequency_share=share, governor=governor,
                                    canary_before_ms=before_canary, canary_after_ms=after_canary)
