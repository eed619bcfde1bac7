"""Driving TFLite's ``benchmark_model`` on a phone: its command line, several invocations in
one adb shell command, and what a failed invocation means as a ``DeviceError``."""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from qat_harness.core.errors import DeviceError
from qat_harness.devices.android import benchmark_output as bmo
from qat_harness.devices.android.adb import quote_command
from qat_harness.devices.android.model_info import TensorInfo
from qat_harness.devices.android.phone import BENCHMARK_MODEL_DOCS

_MARK = "@@qat:"


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One benchmark_model run: the model and input file on the phone, and its loop."""
    model: str
    input_tensor: TensorInfo
    input_file: str
    threads: int
    warmup_runs: int
    runs: int
    profile: bool
    min_secs: float = 0.0
    output_file: str | None = None

    def argv(self, binary: str, delegate_flags: Sequence[str]) -> list[str]:
        # --input_layer only has to match the flag's own lists (a different tensor name is a
        # warning), and ',' / ':' separate items there: a converter name such as
        # "serving_default_x:0" is replaced by a plain alias.
        tin = self.input_tensor
        layer = tin.name if re.fullmatch(r"[\w./-]+", tin.name or "") else "input0"
        argv = [binary, f"--graph={self.model}", *delegate_flags,
                f"--num_threads={self.threads}", f"--warmup_runs={self.warmup_runs}", "--warmup_min_secs=0",
                f"--num_runs={self.runs}", f"--min_secs={self.min_secs:g}",
                f"--enable_op_profiling={'true' if self.profile else 'false'}",
                f"--input_layer={layer}", f"--input_layer_shape={tin.shape_flag}",
                f"--input_layer_value_files={layer}:{self.input_file}"]
        if self.output_file:
            argv.append(f"--output_filepath={self.output_file}")
        return argv


def chained_command(argvs: list[list[str]]) -> str:
    """One shell command running every argv in turn, each one's output (stdout and stderr)
    between echoed markers with its exit code, so that one adb round trip serves many runs."""
    return "; ".join(f"echo {_MARK}begin:{k}; {quote_command(a)} 2>&1; echo {_MARK}end:{k}:$?"
                     for k, a in enumerate(argvs))


def split_chained_output(stdout: str, stderr: str, count: int) -> list[tuple[int | None, str]]:
    """(exit code or None when cut off, output) of each invocation of ``chained_command``."""
    results: list[tuple[int | None, str]] = []
    for k in range(count):
        m = re.search(rf"{re.escape(_MARK)}begin:{k}\n(.*?){re.escape(_MARK)}end:{k}:(\d+)", stdout, re.S)
        if m:
            results.append((int(m.group(2)), m.group(1)))
        else:
            results.append((None, stdout.split(f"{_MARK}begin:{k}\n", 1)[-1] + stderr))
    return results


def checked_output(rc: int | None, text: str, what: str, required_flags: Sequence[str]) -> bmo.BenchmarkOutput:
    """The parsed output of one invocation, or the DeviceError that explains its failure.
    ``required_flags``: flag prefixes this build must understand (an ignored ``--use_gpu``
    would silently measure the CPU)."""
    parsed = bmo.parse(text)
    if rc is None or rc != 0 or not parsed.completed:
        raise shell_error(text, rc, f"benchmark_model ({what})", parsed)
    ignored = [f for f in parsed.unconsumed_flags if f.startswith(tuple(required_flags))]
    if ignored:
        raise DeviceError(f"this benchmark_model ignores {', '.join(ignored)}: it needs the Android build "
                          f"of a recent TFLite ({BENCHMARK_MODEL_DOCS})", kind="missing-tool")
    return parsed


def shell_error(text: str, rc: int | None, what: str, parsed: bmo.BenchmarkOutput | None = None) -> DeviceError:
    """A failed command on the phone -> DeviceError with the kind its output shows."""
    low = text.lower()
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])[:400]
    if "no space left on device" in low:
        return DeviceError(f"{what}: no space left on the device", kind="disk-full")
    if rc == 127 or "inaccessible or not found" in low or ("not found" in low and rc not in (0, None)):
        return DeviceError(f"{what}: not found on the device ({tail})", kind="missing-tool")
    if rc == 126 or "permission denied" in low:
        return DeviceError(f"{what}: permission denied on the device ({tail}); /data/local/tmp must allow "
                           "executing files pushed by adb", kind="failed")
    if rc is None:
        return DeviceError(f"{what}: output cut off before its exit status ({tail})", kind="offline")
    if rc > 128:
        return DeviceError(f"{what} died with signal {rc - 128}: "
                           f"{parsed.error_summary() if parsed else tail}", kind="crash")
    if parsed is not None:
        return DeviceError(f"{what} failed (exit {rc}): {parsed.error_summary()}", kind="failed",
                           details={"output_tail": text[-2000:]})
    return DeviceError(f"{what} failed (exit {rc}): {tail}", kind="failed")


def first_invoke_us(parsed: bmo.BenchmarkOutput) -> float | None:
    """The first Invoke of the process: the first warmup run, or the first timed run when
    there was no warmup (the tool then prints "First inference: 0")."""
    if parsed.warmup is not None and parsed.warmup.count:
        return parsed.warmup.first if parsed.warmup.first is not None else parsed.first_inference_us
    if parsed.inference is not None and parsed.inference.count:
        return parsed.inference.first if parsed.inference.first is not None else parsed.inference.curr
    return parsed.first_inference_us


def aggregates(parsed: bmo.BenchmarkOutput) -> dict:
    """One invocation's statistics, microseconds, as the report keeps them."""
    s = parsed.inference
    return {"init_us": parsed.init_us, "first_inference_us": parsed.first_inference_us,
            "warmup_avg_us": parsed.warmup_avg_us, "avg_us": parsed.inference_avg_us,
            "count": s.count if s else None, "min_us": s.min if s else None, "max_us": s.max if s else None,
            "std_us": s.std if s else None}
