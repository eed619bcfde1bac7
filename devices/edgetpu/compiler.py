"""Run Coral's ``edgetpu_compiler`` and read what it reports (claim C3 for the Edge TPU).

The compiler is the only place that says how much of a graph the Edge TPU really runs: it maps
the longest run of supported operators to one ``edgetpu-custom-op`` and leaves the rest to the
CPU, and with ``-s`` it prints one table row per (operator, status). This module turns that
output into a ``CompilerReport`` (an ``Outcome`` plus what was printed), then into a
``Delegation`` or a ``DeviceError``.

The parser is proven on real outputs of compilers 2.0 to 16.0 that users pasted in public
issues (``tests/fixtures/real/edgetpu_compiler/``). Layout of a 16.0 run with ``-s``
(2.x/14.x/15.x lack the "timeout timer" / "child process" lines; 2.x prints "On-chip memory
available" before "used" and no "remaining")::

    Edge TPU Compiler version 16.0.384591198
    Started a compilation timeout timer of 180 seconds.

    Model compiled successfully in 31 ms.        <- "Models compiled ..." when co-compiling

    Input model: m.tflite                        <- one such block per model
    Input size: 5.12KiB
    Output model: out/m_edgetpu.tflite
    Output size: 41.23KiB
    On-chip memory used for caching model parameters: 1.25KiB
    On-chip memory remaining for caching model parameters: 7.98MiB
    Off-chip memory used for streaming uncached model parameters: 0.00B
    Number of Edge TPU subgraphs: 1
    Total number of operations: 5
    Operation log: out/m_edgetpu.log

    Model successfully compiled but not all operations are supported by the Edge TPU. ...
    Number of operations that will run on Edge TPU: 1
    Number of operations that will run on CPU: 4

    Operator                       Count      Status

    CONV_2D                        1          Mapped to Edge TPU
    LEAKY_RELU                     1          Operation not supported
    MEAN                           1          More than one subgraph is not supported
    Compilation child process completed within timeout period.
    Compilation succeeded!

Failures seen in real outputs: ``Invalid model: m.tflite`` + ``Model not quantized`` or
``Model could not be parsed`` (after ``ERROR: Didn't find op for builtin opcode 'X' version
'N'``), ``Internal compiler error. Aborting!``, ``[libc++abi: ]terminating with uncaught
exception of type ...``, ``Compilation failed: <reason>`` and a bare ``Compilation failed!``.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

from qat_harness.core.child import signal_name
from qat_harness.devices.base import Delegation, DeviceError

#: The test suite's fake compiler prints this after its version number; a compiler whose
#: version line carries it is never hardware.
SIMULATOR_MARKER = "(qat-harness simulator)"
COMPILER_ENV = "QAT_EDGETPU_COMPILER"
COMPILER_NAME = "edgetpu_compiler"
MAPPED = "Mapped to Edge TPU"
NO_REASON = "compilation failed (the compiler gave no reason)"
CORAL_SOFTWARE_URL = "https://coral.ai/software/"
COMPILER_DOCS_URL = "https://coral.ai/docs/edgetpu/compiler/"
CORAL_APT_REPO = ("Coral's apt repository: echo 'deb https://packages.cloud.google.com/apt "
                  "coral-edgetpu-stable main' | sudo tee /etc/apt/sources.list.d/coral-edgetpu.list, "
                  "key https://packages.cloud.google.com/apt/doc/apt-key.gpg, see " + CORAL_SOFTWARE_URL)
INSTALL_COMPILER = "`sudo apt-get install edgetpu-compiler` from Coral's apt repository"

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
_VERSION = "Edge TPU Compiler version"
_ROW = re.compile(r"^(?P<op>[A-Za-z0-9_\-]+)\s+(?P<count>\d{1,18})\s+(?P<status>\S.*?)\s*$")
_TABLE_HEADER = re.compile(r"^Operator\s+Count\s+Status$")
_COMPILED = re.compile(r"^Model(?P<plural>s?) compiled successfully in (?P<ms>\d{1,18}) ms")
_OPS_ON = re.compile(r"^Number of operations that will run on (?P<where>Edge TPU|CPU):\s*(?P<n>\d{1,18})")
_DIDNT_FIND_OP = re.compile(r"Didn't find op for builtin opcode '[^']*'(?: version '[^']*')?")
_CPU_FALLBACK_NOTICE = "Model successfully compiled but not all operations are supported"


class Outcome(str, enum.Enum):
    """What a compile came to. Values are those of the real-output manifest."""
    SUCCESS = "success"                 # every operator the compiler counted runs on the TPU
    PARTIAL = "partial"                 # compiled, some operators left on the CPU
    FAILED = "failed"                   # "Compilation failed[: why]"
    CRASH = "crash"                     # "Internal compiler error" / uncaught C++ exception
    TIMEOUT = "timeout"                 # "Compilation timeout. ..."
    NOT_QUANTIZED = "not_quantized"     # "Model not quantized"
    PARSE_ERROR = "parse_error"         # the compiler could not load the model
    UNKNOWN = "unknown"                 # no line says how it ended (empty or cut output)

    @property
    def compiled(self) -> bool:
        return self in (Outcome.SUCCESS, Outcome.PARTIAL)


@dataclasses.dataclass
class OpRow:
    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


@dataclasses.dataclass
class ModelSummary:
    """One per-model block ("Input model: ..." to "Operation log: ..."); an operation-log file
    gives one per "Input: ..." line. Sizes are in bytes."""
    input_model: str | None = None
    input_size: int | None = None
    output_model: str | None = None
    output_size: int | None = None
    on_chip_available: int | None = None    # compilers 2.x only
    on_chip_used: int | None = None
    on_chip_remaining: int | None = None    # compilers 14.1 and later
    off_chip_used: int | None = None
    subgraphs: int | None = None
    ops_total: int | None = None
    operation_log: str | None = None


def parse_size(text: str) -> int | None:
    """'1.92MiB' -> bytes. The compiler prints B, KiB, MiB (binary units, two decimals)."""
    m = re.fullmatch(r"\s*([0-9]{1,15}(?:\.[0-9]{1,15})?)\s*(B|KiB|MiB|GiB)\s*", text)
    if not m:
        return None
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))


def _count(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


#: "Key: value" lines of a summary block -> (ModelSummary field, value parser).
_SUMMARY_LINES: dict[str, tuple[str, Callable[[str], object]]] = {
    "Input model": ("input_model", str.strip),
    "Input": ("input_model", str.strip),
    "Input size": ("input_size", parse_size),
    "Output model": ("output_model", str.strip),
    "Output": ("output_model", str.strip),
    "Output size": ("output_size", parse_size),
    "On-chip memory available for caching model parameters": ("on_chip_available", parse_size),
    "On-chip memory used for caching model parameters": ("on_chip_used", parse_size),
    "On-chip memory remaining for caching model parameters": ("on_chip_remaining", parse_size),
    "Off-chip memory used for streaming uncached model parameters": ("off_chip_used", parse_size),
    "Number of Edge TPU subgraphs": ("subgraphs", _count),
    "Total number of operations": ("ops_total", _count),
    "Operation log": ("operation_log", str.strip),
}
_STARTS_A_MODEL = ("Input model", "Input")


@dataclasses.dataclass
class CompilerReport:
    """Everything ``edgetpu_compiler`` printed about one run, parsed."""
    version: str | None = None
    outcome: Outcome = Outcome.UNKNOWN
    #: why it failed (the compiler's most specific line), or for PARTIAL why operators stayed
    #: on the CPU; None for SUCCESS
    reason: str | None = None
    compile_ms: int | None = None
    models_compiled: int | None = None      # 2 or more only when co-compiling
    models: list[ModelSummary] = dataclasses.field(default_factory=list)
    ops_on_tpu: int | None = None           # only printed when not everything was mapped
    ops_on_cpu: int | None = None
    cpu_fallback_notice: bool = False       # "... not all operations are supported ..."
    rows: list[OpRow] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)    # "ERROR: ..." lines

    @property
    def ok(self) -> bool:
        return self.outcome.compiled

    @property
    def error(self) -> str | None:
        return None if self.ok else self.reason

    @property
    def simulated(self) -> bool:
        return bool(self.version and SIMULATOR_MARKER in self.version)

    # A co-compilation prints one block per model: a single value stands for the run only
    # where every block agrees (e.g. the shared "remaining" cache), else it is None.
    def _shared(self, field: str) -> Any:  # the type of the ``field`` of every model's block
        values = {getattr(m, field) for m in self.models}
        return values.pop() if len(values) == 1 else None

    @property
    def input_model(self) -> str | None:
        return self._shared("input_model")

    @property
    def output_model(self) -> str | None:
        return self._shared("output_model")

    @property
    def operation_log(self) -> str | None:
        return self._shared("operation_log")

    @property
    def on_chip_available(self) -> int | None:
        return self._shared("on_chip_available")

    @property
    def on_chip_used(self) -> int | None:
        return self._shared("on_chip_used")

    @property
    def on_chip_remaining(self) -> int | None:
        return self._shared("on_chip_remaining")

    @property
    def off_chip_used(self) -> int | None:
        return self._shared("off_chip_used")

    @property
    def subgraphs(self) -> int | None:
        return self._shared("subgraphs")

    @property
    def ops_total(self) -> int | None:
        """The printed total; without a summary (an operation log, a paste cut at the top)
        the CPU + TPU counts, else the table's rows."""
        printed = self._shared("ops_total")
        if printed is not None:
            return printed
        if self.ops_on_tpu is not None and self.ops_on_cpu is not None:
            return self.ops_on_tpu + self.ops_on_cpu
        return sum(r.count for r in self.rows) if self.rows else None

    def delegated(self) -> int | None:
        """Operators the Edge TPU runs: the compiler's own count when it printed one, else
        the table's mapped rows, else (a successful compile that did not complain) all."""
        if self.ops_on_tpu is not None:
            return self.ops_on_tpu
        if self.rows:
            return sum(r.count for r in self.rows if r.mapped)
        if self.ok and self.subgraphs == 0:
            return 0
        return self.ops_total if self.ok else None


# --- parsing ---------------------------------------------------------------------------------

def parse_output(text: str | bytes) -> CompilerReport:
    """Parse the compiler's stdout + stderr (or an operation-log ``.log``: same table, no
    summary). Never raises: what it cannot read is left None / ``Outcome.UNKNOWN``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    report = CompilerReport()
    _read_lines(report, lines)
    report.outcome, report.reason = _judge(report, lines)
    return report


def _read_lines(report: CompilerReport, lines: list[str]) -> None:
    in_table = False
    successes = 0
    for line in lines:
        if line.startswith(_VERSION):
            report.version = report.version or line[len(_VERSION):].strip() or None
        elif m := _COMPILED.match(line):
            report.compile_ms = int(m.group("ms"))
            successes += 2 if m.group("plural") else 1
        elif line.startswith("ERROR:"):
            report.errors.append(line[len("ERROR:"):].strip())
        elif line.startswith(_CPU_FALLBACK_NOTICE):
            report.cpu_fallback_notice = True
        elif (m := _OPS_ON.match(line)) and m.group("where") == "CPU":
            report.ops_on_cpu = int(m.group("n"))
        elif m:
            report.ops_on_tpu = int(m.group("n"))
        elif _TABLE_HEADER.match(line):
            in_table = True
        elif in_table and (m := _ROW.match(line)):
            report.rows.append(OpRow(m.group("op"), int(m.group("count")), m.group("status")))
        elif not _read_summary_line(report, line):
            in_table = False  # e.g. "Compilation child process ..." ends the table
    if successes:
        report.models_compiled = max(successes, len(report.models))


def _read_summary_line(report: CompilerReport, line: str) -> bool:
    key, sep, value = line.partition(":")
    entry = _SUMMARY_LINES.get(key.strip()) if sep else None
    if entry is None:
        return False
    if key.strip() in _STARTS_A_MODEL or not report.models:
        report.models.append(ModelSummary())
    field, read = entry
    setattr(report.models[-1], field, read(value))
    return True


def _judge(report: CompilerReport, lines: list[str]) -> tuple[Outcome, str | None]:
    """The outcome and its reason. Only what follows the last success line counts against
    a compile: a delegate search (``-d``) prints failed attempts before the one that works."""
    last_success = max((i for i, line in enumerate(lines) if _is_success_line(line)), default=-1)
    tail = lines[last_success + 1:]
    for find in (_crash, _timeout, _not_quantized, _parse_error, _failed):
        verdict = find(tail)
        if verdict is not None:
            return verdict
    if last_success >= 0 or report.rows or report.ops_on_tpu is not None:
        return _mapping(report)
    if report.errors:  # ERROR lines, and the verdict line missing (cut off)
        return Outcome.FAILED, "; ".join(report.errors)[:300]
    return Outcome.UNKNOWN, _no_result_reason(lines)


def _is_success_line(line: str) -> bool:
    # "Compilation child process completed within timeout period." is printed after failed
    # compiles too: it only says the child did not time out.
    return bool(_COMPILED.match(line)) or line.startswith("Compilation succeeded")


def _crash(lines: list[str]) -> tuple[Outcome, str] | None:
    exception = next((l for l in lines if "terminating with uncaught exception" in l), None)
    internal = next((l for l in lines if l.startswith("Internal compiler error")), None)
    if exception or internal:
        return Outcome.CRASH, exception or "Internal compiler error. Aborting!"
    return None


def _timeout(lines: list[str]) -> tuple[Outcome, str] | None:
    line = next((l for l in lines if l.startswith("Compilation timeout")), None)
    return (Outcome.TIMEOUT, line) if line else None


def _not_quantized(lines: list[str]) -> tuple[Outcome, str] | None:
    if any(l.startswith("Model not quantized") for l in lines):
        return Outcome.NOT_QUANTIZED, "Model not quantized"
    return None


def _parse_error(lines: list[str]) -> tuple[Outcome, str] | None:
    for line in lines:
        if m := _DIDNT_FIND_OP.search(line):
            return Outcome.PARSE_ERROR, m.group(0)
    for i, line in enumerate(lines):
        if line.startswith("Invalid model"):  # "Invalid model: m.tflite", then the why
            why = lines[i + 1] if i + 1 < len(lines) else ""
            return Outcome.PARSE_ERROR, why if why and not why.startswith("Compilation") else line
    for line in lines:
        if line.startswith("Model could not be parsed") or "Registration failed" in line:
            return Outcome.PARSE_ERROR, line.removeprefix("ERROR:").strip()
    return None


def _failed(lines: list[str]) -> tuple[Outcome, str] | None:
    if not any(l.startswith("Compilation failed") for l in lines):
        return None
    said = [l[len("Compilation failed:"):].strip() for l in lines if l.startswith("Compilation failed:")]
    errors = [l[len("ERROR:"):].strip() for l in lines if l.startswith("ERROR:")]
    if said and said[-1]:
        return Outcome.FAILED, said[-1]
    return Outcome.FAILED, "; ".join(errors)[:300] if errors else NO_REASON


def _mapping(report: CompilerReport) -> tuple[Outcome, str | None]:
    # Only printed counts and CPU rows say "partial": a table may be cut short, so its
    # mapped rows adding up to less than the total proves nothing.
    cpu_rows = [r for r in report.rows if not r.mapped]
    total, on_tpu = report.ops_total, report.ops_on_tpu
    partial = (report.cpu_fallback_notice or bool(cpu_rows) or bool(report.ops_on_cpu)
               or report.subgraphs == 0 or (on_tpu is not None and total is not None and on_tpu < total))
    if not partial:
        return Outcome.SUCCESS, None
    statuses = list(dict.fromkeys(r.status for r in cpu_rows))
    if statuses:
        return Outcome.PARTIAL, "; ".join(statuses)
    if report.ops_on_cpu is not None:
        n = report.ops_on_cpu
        return Outcome.PARTIAL, f"{n} operation{'' if n == 1 else 's'} will run on the CPU"
    return Outcome.PARTIAL, "not all operations are supported by the Edge TPU"


def _no_result_reason(lines: list[str]) -> str:
    if not lines:
        return "the compiler printed nothing"
    return f"the compiler's output says neither success nor failure (last line: {lines[-1][:200]})"


def to_delegation(rep: CompilerReport) -> Delegation:
    """The compiler's mapping as the harness's Delegation. ``fallback`` has one entry per
    (operator, status) row that stayed on the CPU; ``details['cpu_ops']`` keeps the counts."""
    cpu_rows = [r for r in rep.rows if not r.mapped]
    return Delegation(
        backend="edgetpu",
        ops_total=rep.ops_total,
        ops_delegated=rep.delegated(),
        fallback=[(r.op, r.status) for r in cpu_rows],
        details={
            "outcome": rep.outcome.value,
            "subgraphs": rep.subgraphs,
            "on_chip_memory": rep.on_chip_used,
            "on_chip_memory_available": rep.on_chip_available,
            "on_chip_memory_remaining": rep.on_chip_remaining,
            "off_chip_memory": rep.off_chip_used,
            "compiler_version": rep.version,
            "compile_ms": rep.compile_ms,
            "cpu_ops": [{"op": r.op, "count": r.count, "status": r.status} for r in cpu_rows],
            "compiler_simulated": rep.simulated,
        })


# --- finding and running the compiler ------------------------------------------------------

def host_can_run_compiler() -> bool:
    """Coral ships edgetpu_compiler for x86-64 Linux only (no ARM64 build since 2.1)."""
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")


def find_compiler(explicit: str | None = None) -> str | None:
    """The compiler to use: an explicit path, else $QAT_EDGETPU_COMPILER, else PATH."""
    for candidate in (explicit, os.environ.get(COMPILER_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
            found = shutil.which(candidate)
            return found  # an explicit choice that does not exist is not replaced silently
    return shutil.which(COMPILER_NAME)


def compiler_version(compiler: str, timeout_s: float = 30.0) -> str | None:
    """The version string ``edgetpu_compiler --version`` prints, or None if it did not run."""
    try:
        proc = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_output(proc.stdout + "\n" + proc.stderr).version


def output_dir_for(model_path: Path, workdir: Path) -> Path:
    """One output folder per input file, so float.tflite / qat_int8.tflite of different
    models never overwrite each other's compiled copies."""
    digest = hashlib.sha1(str(Path(model_path).resolve()).encode()).hexdigest()[:8]
    return Path(workdir) / "edgetpu" / f"{Path(model_path).stem}-{digest}"


def compile_model(compiler: str, model_path: Path, workdir: Path,
                  timeout_s: float = 600.0) -> tuple[Path, CompilerReport]:
    """Compile one model; returns the ``*_edgetpu.tflite`` path and the parsed report.

    Raises DeviceError (see ``rejection``): 'unsupported' when the compiler refuses the model
    (with its reason), 'crash', 'timeout' (ours or the compiler's own), 'missing-tool' when
    the compiler cannot be started, 'failed' otherwise.
    """
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise DeviceError(f"no such model file: {model_path}", kind="failed")
    outdir = output_dir_for(model_path, workdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, "-s", "-o", str(outdir), str(model_path)]
    try:
        # one stream, as a terminal shows it: the outcome depends on the order of the lines
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout_s, cwd=outdir,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"edgetpu_compiler timed out after {timeout_s:.0f} s on {model_path.name}",
                          kind="timeout") from None
    except OSError as exc:
        raise DeviceError(f"cannot run {compiler}: {exc.strerror or exc}", kind="missing-tool") from None
    text = proc.stdout
    (outdir / "compiler_output.txt").write_text(text)  # kept for the report's evidence
    rep = parse_output(text)
    if not rep.rows:
        log = outdir / f"{model_path.stem}_edgetpu.log"
        if log.is_file():  # older compilers / no -s support: the table lives in the log
            rep.rows = parse_output(log.read_text(errors="replace")).rows
    problem = rejection(rep, proc.returncode, model_path.name)
    if problem is not None:
        raise problem
    expected = outdir / f"{model_path.stem}_edgetpu.tflite"
    if not expected.is_file() or expected.stat().st_size == 0:
        raise DeviceError(f"edgetpu_compiler reported success but wrote no {expected.name}",
                          kind="failed")
    return expected, rep


#: DeviceError kind per failed outcome. A crash or the compiler's own timeout is the tool's
#: failure (an ERROR verdict), not a finding about the model.
_FAILURE_KINDS = {
    Outcome.CRASH: ("crashed on", "crash"),
    Outcome.TIMEOUT: ("timed out on", "timeout"),
    Outcome.NOT_QUANTIZED: ("rejected", "unsupported"),
    Outcome.PARSE_ERROR: ("rejected", "unsupported"),
    Outcome.FAILED: ("rejected", "unsupported"),
    Outcome.UNKNOWN: ("did not finish", "failed"),
}


def rejection(rep: CompilerReport, returncode: int, model_name: str) -> DeviceError | None:
    """The DeviceError a compile run amounts to, or None when it produced a model."""
    details = {"compiler_version": rep.version, "returncode": returncode,
               "outcome": rep.outcome.value, "errors": rep.errors}
    if returncode < 0:  # killed by a signal: whatever it printed, it did not finish
        why = rep.reason if rep.outcome is Outcome.CRASH else None
        return DeviceError(f"edgetpu_compiler crashed with {signal_name(returncode)} on {model_name}"
                           + (f": {why}" if why else ""), kind="crash", details=details)
    if rep.ok and returncode == 0:
        return None
    if rep.ok:
        return DeviceError(f"edgetpu_compiler reported success on {model_name} but exited with "
                           f"code {returncode}", kind="failed", details=details)
    verb, kind = _FAILURE_KINDS[rep.outcome]
    reason = rep.reason or f"exit code {returncode}"
    return DeviceError(f"edgetpu_compiler {verb} {model_name}: {reason}", kind=kind, details=details)
