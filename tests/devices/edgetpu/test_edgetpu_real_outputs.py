"""The edgetpu_compiler parser on REAL compiler outputs (compilers 2.0 to 16.0, pasted by users
in public issues: tests/fixtures/real/edgetpu_compiler/), checked against the hand-derived
readings of manifest.json; then each defect the real outputs exposed, and a fuzz check that
the parser never raises. No compiler, no TensorFlow."""
from __future__ import annotations

import json
import random

import pytest
from simulators.edgetpu.support import HAND_WRITTEN_LOGS, REAL_OUTPUTS, tool_output

from qat_harness.devices.edgetpu import compiler as etc
from qat_harness.devices.edgetpu.compiler import Outcome

MANIFEST = json.loads((REAL_OUTPUTS / "manifest.json").read_text())
REAL_FILES = sorted(p.name for p in REAL_OUTPUTS.glob("*.txt"))
SIZE_FIELDS = ("on_chip_memory_used_bytes", "on_chip_memory_available_bytes",
               "off_chip_memory_used_bytes")


def real(name_prefix: str) -> etc.CompilerReport:
    (name,) = [n for n in REAL_FILES if n.startswith(name_prefix)]
    return etc.parse_output(tool_output(REAL_OUTPUTS / name))


def printed_precision(nbytes: int) -> float:
    """The compiler prints sizes with two decimals of B / KiB / MiB: +-0.005 of that unit."""
    unit = 1
    while nbytes >= unit * 1024:
        unit *= 1024
    return 0.005 * unit + 1


def reading(rep: etc.CompilerReport) -> dict:
    """The report in the manifest's terms."""
    return {
        "compiler_version": rep.version,
        "models_compiled": rep.models_compiled,
        "off_chip_memory_used_bytes": rep.off_chip_used,
        "on_chip_memory_available_bytes": rep.on_chip_available,
        "on_chip_memory_used_bytes": rep.on_chip_used,
        "ops_mapped": rep.ops_on_tpu,
        "ops_total": rep.ops_total,
        "outcome": rep.outcome.value,
        "subgraphs": rep.subgraphs,
    }


def test_every_real_output_has_a_manifest_entry():
    assert len(REAL_FILES) == 28
    assert set(REAL_FILES) == set(MANIFEST)


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_output_reads_as_the_manifest_says(name):
    expected = MANIFEST[name]
    rep = etc.parse_output(tool_output(REAL_OUTPUTS / name))
    got = reading(rep)
    for field, value in expected.items():
        if value is None or field in ("notes", "reason_contains"):
            continue
        if field in SIZE_FIELDS:
            assert got[field] == pytest.approx(value, abs=printed_precision(value)), field
        else:
            assert got[field] == value, field
    if expected["reason_contains"] is not None:
        assert expected["reason_contains"] in (rep.reason or "")


# --- the defects the real outputs exposed ----------------------------------------------------

@pytest.mark.parametrize("prefix, reason", [
    ("03_", "terminating with uncaught exception of type std::out_of_range: vector"),
    ("16_", "libc++abi: terminating with uncaught exception of type std::out_of_range: vector"),
    ("04_", "Internal compiler error. Aborting!"),
    ("10_", "Internal compiler error. Aborting!"),  # trailing space after "Aborting!"
])
def test_a_compiler_crash_is_a_crash(prefix, reason):
    rep = real(prefix)
    assert (rep.outcome, rep.reason) == (Outcome.CRASH, reason)
    err = etc.rejection(rep, 1, "m.tflite")
    assert err.kind == "crash"
    assert err.reason == f"edgetpu_compiler crashed on m.tflite: {reason}"


def test_the_compilers_own_timeout_is_a_timeout():
    # hand-written: no real paste of this message was found (see the log's line 1)
    rep = etc.parse_output(tool_output(HAND_WRITTEN_LOGS / "compilation_timeout_v16.txt"))
    assert rep.outcome is Outcome.TIMEOUT
    assert rep.reason == "Compilation timeout. This is usually caused by large activations."
    err = etc.rejection(rep, 1, "m.tflite")
    assert err.kind == "timeout" and "large activations" in err.reason


def test_co_compilation_reads_as_success_with_one_block_per_model():
    rep = real("21_")
    assert rep.outcome is Outcome.SUCCESS and rep.models_compiled == 2 and rep.compile_ms == 524
    assert [m.input_model for m in rep.models] == ["temp_models/1.tflite", "temp_models/2.tflite"]
    assert [m.ops_total for m in rep.models] == [57, 6]
    assert rep.ops_total is None  # the blocks disagree: no single value stands for the run
    assert rep.on_chip_remaining == round(1.07 * 1024 ** 2)  # the shared cache: they agree
    assert etc.rejection(rep, 0, "m.tflite") is None


def test_co_compilation_without_blank_lines_still_splits_the_blocks():
    rep = real("22_")
    assert [(m.input_model, m.ops_total) for m in rep.models] == [
        ("cnn_first_edge.tflite", 313), ("rnn_second.tflite", 78)]


def test_2x_on_chip_memory_available_is_read():
    rep = real("23_")
    assert rep.on_chip_available == round(7.62 * 1024 ** 2)
    assert rep.on_chip_remaining is None  # 2.x prints no "remaining" line
    assert etc.to_delegation(rep).details["on_chip_memory_available"] == rep.on_chip_available


@pytest.mark.parametrize("prefix, op", [("01_", "'RELU' version '2'"), ("02_", "'RESIZE_BILINEAR' version '3'"),
                                        ("17_", "'TRANSPOSE_CONV' version '4'")])
def test_the_missing_builtin_op_is_kept_as_the_reason(prefix, op):
    rep = real(prefix)
    assert rep.outcome is Outcome.PARSE_ERROR
    assert rep.reason == f"Didn't find op for builtin opcode {op}"
    assert etc.rejection(rep, 1, "m.tflite").kind == "unsupported"


def test_edge_tpu_subgraph_count_and_second_subgraph_rows():
    three = real("25_")
    assert (three.outcome, three.subgraphs) == (Outcome.PARTIAL, 3)
    # "More than one subgraph is not supported" rows are operators left on the CPU, not a
    # failure, even next to "Number of Edge TPU subgraphs: 1"
    rep = real("24_")
    assert (rep.outcome, rep.subgraphs, rep.ops_on_tpu, rep.ops_total) == (Outcome.PARTIAL, 1, 83, 93)
    d = etc.to_delegation(rep)
    assert ("LOGISTIC", "More than one subgraph is not supported") in d.fallback
    assert ("CONCATENATION", "More than one subgraph is not supported") in d.fallback
    assert d.ops_delegated == 83 and etc.rejection(rep, 0, "m.tflite") is None


def test_child_process_completed_alone_is_not_a_success():
    text = ("Edge TPU Compiler version 16.0.384591198\n"
            "Started a compilation timeout timer of 180 seconds.\n"
            "Compilation child process completed within timeout period.\n")
    rep = etc.parse_output(text)
    assert rep.outcome is Outcome.UNKNOWN and not rep.ok
    err = etc.rejection(rep, 0, "m.tflite")
    assert err.kind == "failed" and "neither success nor failure" in err.reason
    assert real("14_").outcome is Outcome.FAILED  # that line is in failed runs too


@pytest.mark.parametrize("path, reason", [
    (REAL_OUTPUTS / "14_v16_0_failed_large_activation_tensors.txt",
     "Compilation failed due to large activation tensors in model."),
    (HAND_WRITTEN_LOGS / "failed_no_reason_v16.txt", etc.NO_REASON),
])
def test_compilation_failed_with_a_trailing_space(path, reason):
    assert "Compilation failed! \n" in tool_output(path)
    rep = etc.parse_output(tool_output(path))
    assert (rep.outcome, rep.reason) == (Outcome.FAILED, reason)
    assert etc.rejection(rep, 1, "m.tflite").kind == "unsupported"


def test_delegate_search_failures_before_the_success_do_not_count():
    """``-d`` retries smaller segments after failed attempts (issues #608, #671 show such
    runs); built here from two real outputs: a failed attempt, then a successful one."""
    failed_attempt = tool_output(REAL_OUTPUTS / "14_v16_0_failed_large_activation_tensors.txt")
    success = tool_output(REAL_OUTPUTS / "13_v16_0_success_no_op_table.txt").split("\n", 1)[1]
    rep = etc.parse_output(failed_attempt + success)
    assert rep.outcome is Outcome.SUCCESS and rep.ops_total == 50
    assert etc.parse_output(success + failed_attempt).outcome is Outcome.FAILED


def test_error_lines_fail_a_run_only_when_nothing_succeeded():
    success = tool_output(REAL_OUTPUTS / "13_v16_0_success_no_op_table.txt")
    assert etc.parse_output(success + "ERROR: a stray diagnostic\n").outcome is Outcome.SUCCESS
    cut = "Edge TPU Compiler version 16.0.384591198\nERROR: Could not open 'm.tflite'.\n"
    rep = etc.parse_output(cut)
    assert (rep.outcome, rep.reason) == (Outcome.FAILED, "Could not open 'm.tflite'.")


def test_a_compiler_killed_by_a_signal_is_a_crash():
    err = etc.rejection(real("13_"), -6, "m.tflite")
    assert err.kind == "crash" and "SIGABRT" in err.reason


def test_success_with_a_non_zero_exit_is_not_trusted():
    err = etc.rejection(real("13_"), 2, "m.tflite")
    assert err.kind == "failed" and "exited with code 2" in err.reason


# --- tolerance -------------------------------------------------------------------------------

def mangled_variants(text: str, rng: random.Random, count: int) -> list[str]:
    lines = text.split("\n")
    variants = []
    for _ in range(count):
        shuffled = lines[:]
        rng.shuffle(shuffled)
        cut = rng.randrange(len(text) + 1)
        picked = rng.sample(lines, k=rng.randint(0, len(lines)))
        spliced = [line[: rng.randrange(len(line) + 1)] for line in lines]
        variants += ["\n".join(shuffled), text[:cut], text[cut:], "\n".join(picked),
                     "\n".join(spliced), text.replace("\n", "\r\n"), text.encode()[:cut].decode(errors="replace")]
    return variants


def test_the_parser_never_raises_on_mangled_real_outputs():
    rng = random.Random(20240601)
    texts = [tool_output(REAL_OUTPUTS / n) for n in REAL_FILES]
    texts += [tool_output(p) for p in sorted(HAND_WRITTEN_LOGS.iterdir())]
    everything = "\n".join(texts)
    variants = [v for t in texts for v in mangled_variants(t, rng, 6)]
    variants += mangled_variants(everything, rng, 10)
    variants += ["", "\n\n", "\x00\xff", "Total number of operations: " + "9" * 5000,
                 "On-chip memory used for caching model parameters: " + "9" * 400 + "MiB",
                 "Operator Count Status\nCONV_2D " + "1" * 5000 + " Mapped to Edge TPU"]
    for text in variants:
        rep = etc.parse_output(text)
        assert isinstance(rep.outcome, Outcome)
        etc.to_delegation(rep)
        for returncode in (0, 1, -9):
            etc.rejection(rep, returncode, "m.tflite")
    assert etc.parse_output(b"Edge TPU Compiler version 16.0\xff").version.startswith("16.0")
