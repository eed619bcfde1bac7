"""Run Coral's ``edgetpu_compiler`` and read what it reports (claim C3 for the Edge TPU).

The compiler is the only place that says how much of a graph the Edge TPU really runs: it maps
the longest run of supported operators to one ``edgetpu-custom-op`` and leaves the rest to the
CPU, and with ``-s`` it prints one table row per (operator, status). This module turns that
output into a ``Delegation``.

Output layout (compiler 16.0; 14.x/15.x lack the two "timeout" lines and print the same rest)::

    Edge TPU Compiler version 16.0.384591198
    Started a compilation timeout timer of 180 seconds.

    Model compiled successfully in 31 ms.

    Input model: m.tflite
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

Failures print e.g. ``Invalid model: m.tflite`` + ``Model not quantized``, ``Internal compiler
error. Aborting!``, ``Compilation failed: <reason>`` or only ``Compilation failed!``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from qat_harness.devices.base import Delegation, DeviceError

#: The test suite's fake compiler prints this after its version number; a compiler whose
#: version line carries it is never hardware.
SIMULATOR_MARKER = "(qat-harness simulator)"
COMPILER_ENV = "QAT_EDGETPU_COMPILER"
COMPILER_NAME = "edgetpu_compiler"
MAPPED = "Mapped to Edge TPU"
CORAL_SOFTWARE_URL = "https://coral.ai/software/"
COMPILER_DOCS_URL = "https://coral.ai/docs/edgetpu/compiler/"
CORAL_APT_REPO = ("Coral's apt repository: echo 'deb https://packages.cloud.google.com/apt "
                  "coral-edgetpu-stable main' | sudo tee /etc/apt/sources.list.d/coral-edgetpu.list, "
                  "key https://packages.cloud.google.com/apt/doc/apt-key.gpg, see " + CORAL_SOFTWARE_URL)
INSTALL_COMPILER = "`sudo apt-get install edgetpu-compiler` from Coral's apt repository"

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
_ROW = re.compile(r"^(?P<op>[A-Za-z0-9_\-]+)\s+(?P<count>\d+)\s+(?P<status>\S.*?)\s*$")


@dataclasses.dataclass
class OpRow:
    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


@dataclasses.dataclass
class CompilerReport:
    """Everything ``edgetpu_compiler`` printed about one model, parsed."""
    version: str | None = None
    ok: bool = False
    error: str | None = None                # one-line reason when not ok
    compile_ms: int | None = None
    input_model: str | None = None
    output_model: str | None = None
    operation_log: str | None = None
    on_chip_used: int | None = None         # bytes
    on_chip_remaining: int | None = None    # bytes
    off_chip_used: int | None = None        # bytes
    subgraphs: int | None = None
    ops_total: int | None = None
    ops_on_tpu: int | None = None           # only printed when not everything was mapped
    ops_on_cpu: int | None = None
    rows: list[OpRow] = dataclasses.field(default_factory=list)

    @property
    def simulated(self) -> bool:
        return bool(self.version and SIMULATOR_MARKER in self.version)

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


def parse_size(text: str) -> int | None:
    """'1.92MiB' -> bytes. The compiler prints B, KiB, MiB (binary units, two decimals)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB)\s*", text)
    if not m:
        return None
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))


def parse_output(text: str) -> CompilerReport:
    """Parse the compiler's stdout (or its ``.log`` operation log: same table, no summary)."""
    rep = CompilerReport()
    in_table = False
    lines = [l.rstrip() for l in text.replace("\r\n", "\n").split("\n")]
    for line in lines:
        s = line.strip()
        if not s:
            continue
        if s.startswith("Edge TPU Compiler version"):
            rep.version = s[len("Edge TPU Compiler version"):].strip()
        elif m := re.match(r"Model compiled successfully in (\d+) ms", s):
            rep.ok, rep.compile_ms = True, int(m.group(1))
        elif s.startswith(("Input model:", "Input:")) and rep.input_model is None:
            rep.input_model = s.split(":", 1)[1].strip()
        elif s.startswith(("Output model:", "Output:")) and rep.output_model is None:
            rep.output_model = s.split(":", 1)[1].strip()
        elif s.startswith("On-chip memory used for caching model parameters:"):
            rep.on_chip_used = parse_size(s.split(":", 1)[1])
        elif s.startswith("On-chip memory remaining for caching model parameters:"):
            rep.on_chip_remaining = parse_size(s.split(":", 1)[1])
        elif s.startswith("Off-chip memory used for streaming uncached model parameters:"):
            rep.off_chip_used = parse_size(s.split(":", 1)[1])
        elif m := re.match(r"Number of Edge TPU subgraphs:\s*(\d+)", s):
            rep.subgraphs = int(m.group(1))
        elif m := re.match(r"Total number of operations:\s*(\d+)", s):
            rep.ops_total = int(m.group(1))
        elif m := re.match(r"Number of operations that will run on Edge TPU:\s*(\d+)", s):
            rep.ops_on_tpu = int(m.group(1))
        elif m := re.match(r"Number of operations that will run on CPU:\s*(\d+)", s):
            rep.ops_on_cpu = int(m.group(1))
        elif s.startswith("Operation log:"):
            rep.operation_log = s.split(":", 1)[1].strip()
        elif re.match(r"Operator\s+Count\s+Status$", s):
            in_table = True
        elif in_table and (m := _ROW.match(s)):
            rep.rows.append(OpRow(m.group("op"), int(m.group("count")), m.group("status")))
        elif in_table:
            in_table = False  # "Compilation child process ..." ends the table
    if not rep.ok:
        rep.error = _failure_reason(lines)
    if rep.ops_total is None and rep.rows:  # an operation log alone has no summary
        rep.ops_total = sum(r.count for r in rep.rows)
    return rep


def _failure_reason(lines: list[str]) -> str | None:
    """The most specific one-line reason among what a failed compile printed."""
    text = [l.strip() for l in lines if l.strip()]
    for i, s in enumerate(text):
        if s.startswith("Invalid model"):  # "Invalid model: m.tflite" then the why, e.g.
            nxt = text[i + 1] if i + 1 < len(text) else ""  # "Model not quantized"
            return nxt if nxt and not nxt.startswith("Compilation") else s
    if "Model not quantized" in text:
        return "Model not quantized"
    for s in text:
        if s.startswith("Compilation failed:"):
            return s[len("Compilation failed:"):].strip()
    for s in text:
        if s.startswith("Internal compiler error"):
            return "Internal compiler error. Aborting!"
    errors = [s[len("ERROR:"):].strip() for s in text if s.startswith("ERROR:")]
    if errors:
        return "; ".join(errors)[:300]
    if any(s.startswith("Compilation failed") for s in text):
        return "compilation failed (the compiler gave no reason)"
    return None


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
            "subgraphs": rep.subgraphs,
            "on_chip_memory": rep.on_chip_used,
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

    Raises DeviceError: 'unsupported' when the compiler refuses the model (with its reason),
    'timeout', 'missing-tool' when the compiler cannot be started, 'failed' otherwise.
    """
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise DeviceError(f"no such model file: {model_path}", kind="failed")
    outdir = output_dir_for(model_path, workdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, "-s", "-o", str(outdir), str(model_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              cwd=outdir, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"edgetpu_compiler timed out after {timeout_s:.0f} s on {model_path.name}",
                          kind="timeout") from None
    except OSError as exc:
        raise DeviceError(f"cannot run {compiler}: {exc.strerror or exc}", kind="missing-tool") from None
    text = proc.stdout + "\n" + proc.stderr
    (outdir / "compiler_output.txt").write_text(text)  # kept for the report's evidence
    rep = parse_output(text)
    expected = outdir / f"{model_path.stem}_edgetpu.tflite"
    if not rep.rows:
        log = outdir / f"{model_path.stem}_edgetpu.log"
        if log.is_file():  # older compilers / no -s support: the table lives in the log
            rep.rows = parse_output(log.read_text(errors="replace")).rows
    if not rep.ok or proc.returncode != 0:
        reason = rep.error or _last_line(text) or f"exit code {proc.returncode}"
        raise DeviceError(f"edgetpu_compiler rejected {model_path.name}: {reason}",
                          kind="unsupported", details={"compiler_version": rep.version,
                                                       "returncode": proc.returncode})
    if not expected.is_file() or expected.stat().st_size == 0:
        raise DeviceError(f"edgetpu_compiler reported success but wrote no {expected.name}",
                          kind="failed")
    return expected, rep


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1][:300] if lines else ""
