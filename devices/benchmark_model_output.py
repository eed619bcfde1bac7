"""Parse the text TFLite's ``benchmark_model`` prints (stdout and stderr together).

Formats, from the TensorFlow sources (tensorflow/lite/tools/benchmark/benchmark_model.cc,
benchmark_tflite_model.cc, tools/logging.h, core/subgraph.cc, core/util/stats_calculator.h):

- every log line starts with ``INFO: `` / ``WARN: `` / ``ERROR: `` / ``FATAL: `` (older builds
  print no prefix; the patterns below are searched, not anchored);
- each timing loop (warmup first, then the regular runs) ends with one statistics line in
  microseconds: ``count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929``,
  ``count=1 curr=1234`` or ``count=5 curr=812(all same)`` when every run took the same time,
  ``count=0`` when there were none (avg is printed with 6 significant digits, so it can be
  ``1.23457e+06``; std is an integer);
- the summary: ``Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg):
  14462.3, Inference (avg): 14575.2`` (old builds: ``Average inference timings in us: Warmup:
  83235, Init: 38467, Inference: 79760.9``);
- TFLite's runtime announces a delegate partitioning: ``Replacing 30 out of 31 node(s) with
  delegate (TfLiteNnapiDelegate) node, yielding 2 partitions for subgraph 0 (main).``
  (older: ``Replacing 30 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 2
  partitions.``); nothing is printed when the delegate takes no node;
- the tool then says ``Explicitly applied NNAPI delegate, and the model graph will be
  completely executed by the delegate.`` / ``... partially executed by the delegate w/ 2
  delegate kernels.`` / ``Though NNAPI delegate is explicitly applied, the model graph will
  not be executed by the delegate.``;
- NNAPI devices: ``NNAPI accelerators available: [qti-dsp,qti-gpu]`` (newer) or ``nnapi
  accelerator name: [] (Available: qti-dsp,qti-gpu)`` (older);
- ``--enable_op_profiling=true`` adds tables; the ``Summary by node type`` table of the regular
  runs lists each node type (a delegate partition is one node of type ``TfLiteNnapiDelegate``)
  with its count.

benchmark_model reports only these aggregates, never the time of each run.
"""
from __future__ import annotations

import dataclasses
import math
import re

_NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_PREFIX = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|FATAL): ")
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_TIMINGS_OLD = re.compile(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), "
                          rf"(?:Inference|no stats): ({_NUM})")
_STATS = re.compile(r"^count=(\d+)(.*)$")
_KV = re.compile(rf"(\w+)=({_NUM})")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]*)\) node, "
                        r"yielding (\d+) partitions")
_APPLIED = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be "
                      r"(completely|partially) executed by the delegate(?: w/ (\d+) delegate kernels)?")
_NOT_APPLIED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be "
                          r"executed by the delegate")
_ACCEL_NEW = re.compile(r"NNAPI accelerators available: \[([^\]]*)\]")
_ACCEL_OLD = re.compile(r"nnapi accelerator name: \[[^\]]*\] \(Available: ([^)]*)\)")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUM})")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags: (.*)$")


@dataclasses.dataclass
class RunStats:
    """One timing loop, microseconds."""
    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None


@dataclasses.dataclass
class Replacement:
    delegate: str        # the delegate kernel's name, e.g. TfLiteNnapiDelegate
    replaced: int        # nodes the delegate took
    total: int | None    # nodes of the (sub)graph, printed by newer TFLite only
    partitions: int      # node subsets after partitioning (delegated and not)


@dataclasses.dataclass
class BenchmarkOutput:
    text: str
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: RunStats | None = None
    inference: RunStats | None = None
    replacements: list[Replacement] = dataclasses.field(default_factory=list)
    applied: dict[str, str] = dataclasses.field(default_factory=dict)  # provider -> full/partial/none
    delegate_kernels: dict[str, int] = dataclasses.field(default_factory=dict)
    accelerators: list[str] = dataclasses.field(default_factory=list)
    node_types: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    failed: bool = False  # "Benchmarking failed." or a FATAL line
    model_size_mb: float | None = None
    unconsumed_flags: list[str] = dataclasses.field(default_factory=list)  # flags this build ignores

    @property
    def completed(self) -> bool:
        """The tool reached its summary line and did not report a failure."""
        return self.inference_avg_us is not None and not self.failed

    def replacements_for(self, delegate: str) -> list[Replacement]:
        return [r for r in self.replacements if r.delegate == delegate]

    def error_summary(self) -> str:
        """The most telling error line, for a one-line DeviceError."""
        if self.errors:
            specific = [e for e in self.errors if e != "Benchmarking failed."]
            return "; ".join((specific or self.errors)[-2:])[:400]
        return "benchmark_model printed no timings"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("text")
        return d


def _float(text: str) -> float:
    return float(text)


def parse(text: str) -> BenchmarkOutput:
    out = BenchmarkOutput(text=text)
    stats: list[RunStats] = []
    for raw in text.splitlines():
        line = raw.strip()
        body = _PREFIX.sub("", line)
        if line.startswith(("ERROR:", "FATAL:")):
            out.errors.append(body)
            if line.startswith("FATAL:"):
                out.failed = True
        if "Benchmarking failed." in line:
            out.failed = True
            if "Benchmarking failed." not in out.errors:
                out.errors.append("Benchmarking failed.")
        m = _STATS.match(body)
        if m:
            stats.append(_stats(int(m.group(1)), m.group(2)))
            continue
        if (m := _TIMINGS.search(line)):
            out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us = (
                _float(g) for g in m.groups())
        elif (m := _TIMINGS_OLD.search(line)):
            out.warmup_avg_us, out.init_us, out.inference_avg_us = (_float(g) for g in m.groups())
        if (m := _REPLACING.search(line)):
            out.replacements.append(Replacement(m.group(3), int(m.group(1)),
                                                int(m.group(2)) if m.group(2) else None, int(m.group(4))))
        if (m := _APPLIED.search(line)):
            out.applied[m.group(1)] = "full" if m.group(2) == "completely" else "partial"
            out.delegate_kernels[m.group(1)] = int(m.group(3)) if m.group(3) else 1
        elif (m := _NOT_APPLIED.search(line)):
            out.applied[m.group(1)] = "none"
            out.delegate_kernels[m.group(1)] = 0
        if (m := _ACCEL_NEW.search(line) or _ACCEL_OLD.search(line)):
            out.accelerators = [a.strip() for a in m.group(1).split(",") if a.strip()]
        if (m := _UNCONSUMED.search(line)):
            out.unconsumed_flags += m.group(1).split()
        if (m := _MODEL_SIZE.search(line)):
            out.model_size_mb = _float(m.group(1))
    # BenchmarkModel::Run logs the warmup loop's statistics, then the regular loop's.
    if len(stats) >= 2:
        out.warmup, out.inference = stats[0], stats[1]
    elif len(stats) == 1:
        out.warmup = stats[0]
    out.node_types = _node_type_summary(text)
    return out


def _stats(count: int, rest: str) -> RunStats:
    s = RunStats(count=count)
    values = {k: _float(v) for k, v in _KV.findall(rest)}
    for key in ("first", "curr", "min", "max", "avg", "std"):
        if key in values:
            setattr(s, key, values[key])
    if count and s.avg is None and s.curr is not None:  # "count=N curr=X(all same)"
        s.first = s.min = s.max = s.avg = s.curr
        s.std = 0.0
    return s


def _node_type_summary(text: str) -> dict[str, int]:
    """Node type -> count from the op profile's "Summary by node type" table of the regular
    runs (the last one printed when there is no regular-runs heading)."""
    start = text.rfind("Regular Benchmark Runs")
    region = text[start:] if start >= 0 else text
    idx = region.find("Summary by node type")
    if idx < 0:
        return {}
    lines = region[idx:].splitlines()[1:]
    header: list[str] | None = None
    result: dict[str, int] = {}
    for line in lines:
        cells = [c.strip() for c in line.split("\t") if c.strip()]
        if header is None:
            if not cells:
                continue
            if len(cells) == 1:  # space-aligned variant: split on runs of 2+ spaces
                cells = [c for c in re.split(r"\s{2,}", line.strip()) if c]
            header = [c.strip("[]").lower() for c in cells]
            if "node type" not in header or "count" not in header:
                return {}
            continue
        if not cells:
            break
        if len(cells) == 1:
            cells = [c for c in re.split(r"\s{2,}", line.strip()) if c]
        if len(cells) < len(header) - 1:
            break
        try:
            name = cells[header.index("node type")]
            result[name] = result.get(name, 0) + int(cells[header.index("count")])
        except (ValueError, IndexError):
            break
    return result


def us_to_ms(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value / 1000.0
