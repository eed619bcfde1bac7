"""Parse the text TFLite's ``benchmark_model`` prints (stdout and stderr together).

Formats, from the TensorFlow sources (tensorflow/lite/tools/benchmark/benchmark_model.cc,
benchmark_tflite_model.cc, tools/logging.h, core/subgraph.cc, core/util/stats_calculator.h):

- every log line starts with ``INFO: `` / ``WARN: `` / ``ERROR: `` / ``FATAL: `` / ``VERBOSE: ``
  (older builds print no prefix, and their failures are bare lines such as ``Failed to
  allocate tensors!``; the patterns below are searched, not anchored);
- the benchmark APK logs through logcat instead: ``05-30 15:16:45.362  3380  3380 I tflite  :
  count=40 ...`` (``adb logcat`` threadtime), ``I/tflite  ( 3380): ...`` (brief) or Android
  Studio's ``2023-06-14 10:55:21.084 18088-18088 tflite  org.tensorflow.lite.benchmark  I  ...``;
  the logcat header is removed and its level letter stands for the prefix;
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
  partitions.``); nothing is printed when the delegate takes no node, and several builds
  (release builds log it at VERBOSE) never print it: its absence proves nothing. Some vendor
  delegates count in their own words: ``TfLiteQnnDelegate delegate: 0 nodes delegated out of
  31 nodes with 0 partitions.``;
- the tool then says ``Explicitly applied NNAPI delegate, and the model graph will be
  completely executed by the delegate.`` / ``... partially executed by the delegate w/ 2
  delegate kernels.`` / ``Though NNAPI delegate is explicitly applied, the model graph will
  not be executed by the delegate.``;
- NNAPI devices: ``NNAPI accelerators available: [qti-dsp,qti-gpu]`` (newer) or ``nnapi
  accelerator name: [] (Available: qti-dsp,qti-gpu)`` (older);
- ``--enable_op_profiling=true`` adds tables; the ``Summary by node type`` table of the regular
  runs lists each node type (a delegate partition is one node of type ``TfLiteNnapiDelegate``)
  with its count; the ``Profiling Info for Benchmark Initialization`` tables before it list
  ``ModifyGraphWithDelegate`` / ``AllocateTensors``, which are not graph nodes.

benchmark_model reports only these aggregates, never the time of each run.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import cast

_NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_PREFIX = re.compile(r"^(INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG): ")
_LOGCAT_LEVELS = {"V": "VERBOSE", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL", "A": "FATAL"}
# (level letter, tag, message) of the logcat formats; the tag keeps only tflite's own errors
_LOGCAT = (
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+(?P<level>[VDIWEFA]) (?P<tag>[^:]*?)\s*: ?(?P<msg>.*)$"),
    re.compile(r"^(?P<level>[VDIWEFA])/(?P<tag>[^(]*?)\s*\(\s*\d+\): ?(?P<msg>.*)$"),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+-\d+\s+(?P<tag>\S+)\s+(?:\S+\s+)?"
               r"(?P<level>[VDIWEFA])\s+(?P<msg>.*)$"),
)
# failures that builds without log prefixes print bare
_BARE_ERROR = re.compile(r"^(?:Failed to |Benchmarking failed|nnapi error:|Could not |Error: )")
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_TIMINGS_OLD = re.compile(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), "
                          rf"(?:Inference|no stats): ({_NUM})")
_STATS = re.compile(r"^count=(\d+)(.*)$")
_KV = re.compile(rf"(\w+)=({_NUM})")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]*)\) node, "
                        r"yielding (\d+) partitions")
_VENDOR_COUNT = re.compile(r"(\S+) delegate: (\d+) nodes delegated out of (\d+) nodes with (\d+) partitions")
_APPLIED = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be "
                      r"(completely|partially) executed by the delegate(?: w/ (\d+) delegate kernels)?")
_NOT_APPLIED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be "
                          r"executed by the delegate")
_ACCEL_NEW = re.compile(r"NNAPI accelerators available: \[([^\]]*)\]")
_ACCEL_OLD = re.compile(r"nnapi accelerator name: \[[^\]]*\] \(Available: ([^)]*)\)")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUM})")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags: (.*)$")
_VERSION = re.compile(r"Tensor[Ff]low Version\s*:\s*(\S+)")
# which TFLite delegate a run used, from the parameter block, creation and application lines
_DELEGATE_NAMES = {"nnapi": "nnapi", "gpu": "gpu", "xnnpack": "xnnpack", "hexagon": "hexagon",
                   "tflitennapidelegate": "nnapi", "tflitegpudelegatev2": "gpu", "tflitegpudelegate": "gpu",
                   "tflitexnnpackdelegate": "xnnpack", "tflitehexagondelegate": "hexagon"}
_DELEGATE_MENTIONS = (
    re.compile(r"^Use (NNAPI|nnapi|gpu|GPU|xnnpack|XNNPACK|Hexagon|hexagon)\s*: \[(?:1|true)\]"),
    re.compile(r"Created TensorFlow Lite (?:(XNNPACK) )?delegate for (NNAPI|GPU|CPU|Hexagon)"),
    re.compile(r"^(NNAPI|GPU|XNNPACK|Hexagon) delegate created"),
    re.compile(r"(?:Explicitly applied|Though) (NNAPI|GPU|XNNPACK|Hexagon) delegate"),
    re.compile(r"with delegate \((TfLite\w+Delegate\w*)\) node"),
)


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
    delegates_seen: list[str] = dataclasses.field(default_factory=list)  # 'nnapi', 'gpu', 'xnnpack', ...
    tflite_version: str | None = None
    logcat_format: bool = False  # the text came through logcat (the benchmark APK)

    @property
    def completed(self) -> bool:
        """The tool reached its summary line and did not report a failure."""
        return self.inference_avg_us is not None and not self.failed

    def replacements_for(self, delegate: str) -> list[Replacement]:
        return [r for r in self.replacements if r.delegate == delegate]

    @property
    def delegate(self) -> str | None:
        """The delegate the run asked for: an accelerator's when one was seen, else XNNPACK
        (TFLite applies it by default on the CPU), else None."""
        accelerators = [d for d in self.delegates_seen if d != "xnnpack"]
        return accelerators[0] if accelerators else (self.delegates_seen[0] if self.delegates_seen else None)

    @property
    def claims_full_delegation(self) -> bool | None:
        """What the tool's "Explicitly applied ... delegate" line says; None when it printed none."""
        return "full" in self.applied.values() if self.applied else None

    @property
    def claims_partial_delegation(self) -> bool | None:
        return "partial" in self.applied.values() if self.applied else None

    @property
    def nodes_replaced(self) -> int | None:
        return sum(r.replaced for r in self.replacements) if self.replacements else None

    @property
    def nodes_total(self) -> int | None:
        if not self.replacements or any(r.total is None for r in self.replacements):
            return None
        return sum(cast(int, r.total) for r in self.replacements)

    def error_summary(self) -> str:
        """The most telling error line, for a one-line DeviceError."""
        if self.errors:
            specific = [e for e in self.errors if e != "Benchmarking failed."]
            return "; ".join((specific or self.errors)[-2:])[:400]
        return "benchmark_model printed no timings"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("text")
        d.update(delegate=self.delegate, nodes_replaced=self.nodes_replaced, nodes_total=self.nodes_total)
        return d


def _float(text: str) -> float:
    return float(text)


def split_line(raw: str) -> tuple[str | None, str, bool]:
    """(log level or None, message, came through logcat) of one output line."""
    line = raw.strip()
    for pattern in _LOGCAT:
        m = pattern.match(line)
        if m:
            level = _LOGCAT_LEVELS[m.group("level")]
            if level in ("ERROR", "FATAL") and not m.group("tag").startswith("tflite"):
                level = "WARN"  # another component's complaint, not benchmark_model's
            return level, m.group("msg").strip(), True
    m = _PREFIX.match(line)
    if m:
        return ("WARN" if m.group(1) == "WARNING" else m.group(1)), line[m.end():], False
    return None, line, False


def parse(text: str) -> BenchmarkOutput:
    out = BenchmarkOutput(text=text)
    stats: list[RunStats] = []
    bodies: list[str] = []
    for raw in text.splitlines():
        level, body, from_logcat = split_line(raw)
        out.logcat_format |= from_logcat
        bodies.append(body if from_logcat else raw)
        failed_line = "Benchmarking failed." in body
        if level in ("ERROR", "FATAL") or (level is None and _BARE_ERROR.match(body)) or failed_line:
            if body and not (failed_line and "Benchmarking failed." in out.errors):
                out.errors.append(body)
            out.failed |= level == "FATAL" or failed_line
        m = _STATS.match(body)
        if m:
            stats.append(_stats(int(m.group(1)), m.group(2)))
            continue
        if (m := _TIMINGS.search(body)):
            out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us = (
                _float(g) for g in m.groups())
        elif (m := _TIMINGS_OLD.search(body)):
            out.warmup_avg_us, out.init_us, out.inference_avg_us = (_float(g) for g in m.groups())
        if (m := _REPLACING.search(body)):
            out.replacements.append(Replacement(m.group(3), int(m.group(1)),
                                                int(m.group(2)) if m.group(2) else None, int(m.group(4))))
        elif (m := _VENDOR_COUNT.search(body)):
            out.replacements.append(Replacement(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
        if (m := _APPLIED.search(body)):
            out.applied[m.group(1)] = "full" if m.group(2) == "completely" else "partial"
            out.delegate_kernels[m.group(1)] = int(m.group(3)) if m.group(3) else 1
        elif (m := _NOT_APPLIED.search(body)):
            out.applied[m.group(1)] = "none"
            out.delegate_kernels[m.group(1)] = 0
        if (m := _ACCEL_NEW.search(body) or _ACCEL_OLD.search(body)):
            out.accelerators = [a.strip() for a in m.group(1).split(",") if a.strip()]
        if (m := _UNCONSUMED.search(body)):
            out.unconsumed_flags += m.group(1).split()
        if (m := _MODEL_SIZE.search(body)):
            out.model_size_mb = _float(m.group(1))
        if (m := _VERSION.search(body)):
            out.tflite_version = m.group(1)
        for pattern in _DELEGATE_MENTIONS:
            if (m := pattern.search(body)):
                name = _DELEGATE_NAMES.get(next(g for g in m.groups() if g).lower())
                if name and name not in out.delegates_seen:
                    out.delegates_seen.append(name)
    # BenchmarkModel::Run logs the warmup loop's statistics, then the regular loop's.
    if len(stats) >= 2:
        out.warmup, out.inference = stats[0], stats[1]
    elif len(stats) == 1:
        out.warmup = stats[0]
    out.node_types = _node_type_summary("\n".join(bodies))
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
    if start < 0 and "Benchmark Initialization" in text:
        return {}  # only the initialization profile was printed: its rows are not graph nodes
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
