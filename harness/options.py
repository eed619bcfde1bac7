"""The options of a conformance run: what the command line, the pytest plugin and a resumed
run's report.json give the run (``pipeline.run``). A value the run cannot take is refused here,
in one line, whichever of those it came from."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness.core.errors import UsageError
from qat_harness.devices.base import BenchSettings
from qat_harness.measure.output_kinds import Task
from qat_harness.shard import Shard

#: A device option's value, typed by the option's declaration (``devices.base.DeviceOption``).
DeviceOptionValue = str | int | float | bool | None


@dataclasses.dataclass
class RunOptions:
    models: list[str]                  # --models entries (see sources.py)
    devices: list[str]
    out: Path
    num_threads: int = 2
    input_size: int | None = None      # overrides every registry model's default input size
    default_input_sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # per-model defaults
    weights: str | None = None
    dataset: str | None = None         # image folder or .npz
    limit_per_class: int | None = None
    labels: str | None = None          # class names, one per line (index = line)
    preprocess: str | None = None      # a scheme of models.datasets.PREPROCESS
    task: str | None = None            # --task: a measure.output_kinds.Task (None: read from each output)
    float_model: str | None = None     # the float reference of a single .tflite entry
    eval_limit: int | None = None      # cap on evaluation examples (None: the whole split)
    oracle_limit: int = 64             # examples compared with the reference kernels
    bench: BenchSettings = dataclasses.field(default_factory=BenchSettings)
    cache_dir: Path | None = None
    use_cache: bool = True
    #: per device name, the options it declares (see ``devices.registry.split_options``)
    device_options: dict[str, dict[str, DeviceOptionValue]] = dataclasses.field(default_factory=dict)
    run_timeout_s: float = 600.0
    build_timeout_s: float = 7200.0
    check_bit_widths: bool = True      # claim C6 (a small QAT probe, cached), with the guide's models
    cross_check: bool = False          # time the files with LiteRT's native tool too
    recipes: list[str] = dataclasses.field(default_factory=list)  # --recipes (recipes.catalog)
    trace: bool = True                 # trace a model x device whose agreement is WARN/FAIL
    junit_xml: Path | None = None      # also write the verdicts as JUnit XML there
    shard: Shard | None = None         # --shard K/N: this run is one piece of the plan (``shard``)

    def __post_init__(self):
        # 0 is a value, never 'unset': refuse it rather than silently use the default
        for name in ("input_size", "eval_limit", "limit_per_class"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.num_threads < 1 or self.oracle_limit < 1:
            raise UsageError("the thread count and oracle limit must be at least 1")
        if not self.models:
            raise UsageError("no models given")
        if self.task is not None and self.task not in {t.value for t in Task}:
            raise UsageError(f"--task must be one of {', '.join(t.value for t in Task)}, got {self.task!r}")
