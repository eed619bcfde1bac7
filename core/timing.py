"""The one timing schedule of the harness, run inside every Python worker that times models
(LiteRT's Interpreter and CompiledModel, OpenVINO): a worker gives each model an ``invoke``
callable with its input already set, and this module decides the order, counts and clocks.

ABBA blocks: rounds of one block of ``block_runs`` consecutive runs per model, forward on even
rounds and reversed on odd ones. Consecutive runs keep a model's weights in the caches (strict
a, b, a, b alternation made int8 pay for float's cache footprint and the other runtime's thread
pool); alternating the block order keeps a drift of the machine on both sides of a ratio. The
first run of each block meets the other model's caches: it is kept apart as the block's cold
run. Rounds go on until there are ``min_rounds`` of them, every model has ``min_runs`` steady
runs and ``min_seconds`` have passed, or until ``max_runs`` runs of each model.

Tools that must loop on the far side (Android's ``benchmark_model``) cannot follow this schedule;
their results say which protocol they come from (``TimingProtocol``), and the report says it."""
from __future__ import annotations

import dataclasses
import enum
import statistics
import time
from typing import Callable

#: Consecutive runs of one model per block; the first is the block's cold run.
DEFAULT_BLOCK_RUNS = 10
#: Fewer rounds than this give a ratio (its interval resamples rounds) no interval worth the name.
DEFAULT_MIN_ROUNDS = 10


class TimingProtocol(str, enum.Enum):
    """How a device's latency samples were obtained."""
    ABBA_BLOCKS = "abba-blocks"            # this module: one sample per run, blocks kept apart
    INVOCATION_MEANS = "invocation-means"  # a remote tool's loop: one sample per tool invocation
    SIMULATED = "simulated"                # replayed or made up by a simulator: no real clock


@dataclasses.dataclass(frozen=True)
class Schedule:
    warmup_runs: int
    min_runs: int
    min_seconds: float
    max_runs: int
    block_runs: int = DEFAULT_BLOCK_RUNS
    min_rounds: int = DEFAULT_MIN_ROUNDS

    @classmethod
    def from_request(cls, req: dict) -> "Schedule":
        """The schedule a worker's JSON request asks for (missing block fields: the defaults)."""
        return cls(warmup_runs=int(req["warmup_runs"]), min_runs=int(req["min_runs"]),
                   min_seconds=float(req["min_seconds"]), max_runs=int(req["max_runs"]),
                   block_runs=max(2, int(req.get("block_runs") or DEFAULT_BLOCK_RUNS)),
                   min_rounds=max(2, int(req.get("min_rounds") or DEFAULT_MIN_ROUNDS)))


def block_order(labels: list[str], round_index: int) -> list[str]:
    """ABBA: forward on even rounds, reversed on odd ones, so each model is as often first as last."""
    return labels if round_index % 2 == 0 else labels[::-1]


Clock = Callable[[], float]


def time_runs(invoke: Callable[[], object], runs: int, clock: Clock = time.perf_counter) -> list[float]:
    """Each of ``runs`` consecutive runs of ``invoke``, in ms."""
    times = []
    for _ in range(runs):
        t0 = clock()
        invoke()
        times.append((clock() - t0) * 1e3)
    return times


def time_first_invoke(invoke: Callable[[], object], clock: Clock = time.perf_counter) -> float:
    """The first run of a freshly loaded model (it pays for lazy initialisation), in ms."""
    return time_runs(invoke, 1, clock)[0]


def time_blocks(invokers: dict[str, Callable[[], object]], schedule: Schedule,
                clock: Clock = time.perf_counter) -> dict:
    """Warm every model up, then time them in ABBA blocks, in this process."""
    return run_schedule(list(invokers), lambda label, runs: time_runs(invokers[label], runs, clock),
                        schedule, clock)


#: (label, runs) -> the time of each of ``runs`` consecutive runs of that label's model, in ms
BlockRunner = Callable[[str, int], list[float]]


def run_schedule(labels: list[str], run_block: BlockRunner, schedule: Schedule,
                 clock: Clock = time.perf_counter) -> dict:
    """The schedule itself, whoever runs a block: a worker timing its own models, or the
    harness handing each block to the process that holds that label's runtime (two runtimes
    cannot share a process). Returns the worker's JSON answer: ``times_ms`` (steady runs per
    label, block after block) and ``blocks`` (the protocol, the block size, the rounds, the
    order of the first two rounds and the cold runs)."""
    for label in labels:
        run_block(label, schedule.warmup_runs)
    steady: dict[str, list[float]] = {label: [] for label in labels}
    cold: dict[str, list[float]] = {label: [] for label in labels}
    start, rounds = clock(), 0
    run_cap = max(schedule.max_runs, 2 * schedule.block_runs)

    def more_rounds_needed() -> bool:
        if (rounds + 1) * schedule.block_runs > run_cap:
            return False
        return (rounds < schedule.min_rounds or rounds * (schedule.block_runs - 1) < schedule.min_runs
                or clock() - start < schedule.min_seconds)

    while more_rounds_needed():
        for label in block_order(labels, rounds):
            times = run_block(label, schedule.block_runs)
            cold[label].append(times[0])
            steady[label] += times[1:]
        rounds += 1
    blocks = {"timing": TimingProtocol.ABBA_BLOCKS.value, "block_runs": schedule.block_runs,
              "rounds": rounds, "order": [block_order(labels, r) for r in range(min(rounds, 2))],
              "cold_ms": cold, "cold_median_ms": {label: statistics.median(c) if c else float("nan")
                                 for label, c in cold.items()}}
    return {"times_ms": steady, "blocks": blocks}
