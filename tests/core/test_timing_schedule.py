"""The one timing schedule (core.timing): ABBA block order, cold runs kept apart, stopping rules."""
from qat_harness.core import timing


class ModelsOnAClock:
    """Fake models on a fake clock: a run costs 5 ms when the previous run was of another
    model (its caches are cold), 1 ms otherwise. Records the order of runs."""

    def __init__(self):
        self.now = 0.0
        self.last = None
        self.order: list[str] = []

    def clock(self) -> float:
        return self.now

    def invoker(self, label: str):
        def invoke():
            self.now += (0.005 if self.last not in (None, label) else 0.001)
            self.last = label
            self.order.append(label)
        return invoke


def _schedule(**overrides) -> timing.Schedule:
    values = {"warmup_runs": 0, "min_runs": 30, "min_seconds": 0.0, "max_runs": 1000,
              "block_runs": 10, "min_rounds": 2}
    return timing.Schedule(**{**values, **overrides})


def test_block_order_is_abba():
    assert [timing.block_order(["a", "b"], r) for r in range(4)] == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert timing.block_order(["f", "q", "p"], 1) == ["p", "q", "f"]


def test_the_cold_first_run_of_each_block_is_kept_out_of_the_steady_runs():
    models = ModelsOnAClock()
    result = timing.time_blocks({"a": models.invoker("a"), "b": models.invoker("b")}, _schedule(),
                                clock=models.clock)
    blocks = result["blocks"]
    assert blocks["timing"] == timing.TimingProtocol.ABBA_BLOCKS.value
    assert blocks["rounds"] == 4                       # 4 rounds x 9 steady runs >= 30
    assert blocks["order"] == [["a", "b"], ["b", "a"]]
    # a block is cold (5 ms) when it follows the other model's block: in ABBA order that is
    # every other round for each model, and the very first block follows nothing
    cold = {label: [round(t, 6) for t in runs] for label, runs in blocks["cold_ms"].items()}
    assert cold == {"a": [1.0, 5.0, 1.0, 5.0], "b": [5.0, 1.0, 5.0, 1.0]}
    for label in ("a", "b"):
        assert [round(t, 6) for t in result["times_ms"][label]] == [1.0] * 36
    assert models.order[:20] == ["a"] * 10 + ["b"] * 10 and models.order[20:40] == ["b"] * 10 + ["a"] * 10


def test_rounds_go_on_to_the_minimum_and_stop_at_the_run_cap():
    models = ModelsOnAClock()
    at_least = timing.time_blocks({"a": models.invoker("a")}, _schedule(min_runs=1, min_rounds=7),
                                  clock=models.clock)
    assert at_least["blocks"]["rounds"] == 7
    capped = timing.time_blocks({"a": models.invoker("a")}, _schedule(min_runs=10_000, max_runs=50),
                                clock=models.clock)
    assert capped["blocks"]["rounds"] == 5             # 5 blocks of 10 runs = the 50-run cap


def test_a_request_without_block_fields_gets_the_defaults():
    schedule = timing.Schedule.from_request({"warmup_runs": 1, "min_runs": 5, "min_seconds": 0.1,
                                             "max_runs": 100, "min_rounds": None})
    assert (schedule.block_runs, schedule.min_rounds) == (timing.DEFAULT_BLOCK_RUNS, timing.DEFAULT_MIN_ROUNDS)
