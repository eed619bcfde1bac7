"""Measurement fidelity (issue 11) with real models: the native tool's cross-check on a tiny
model, and a digits_cnn run with A1's control arm, block timing, the ceiling line and the
cross-check in report.json and report.md."""
import dataclasses
import json

import numpy as np
import pytest

from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.measure import crosscheck
from qat_harness.results import Verdict

needs_tool = pytest.mark.skipif(crosscheck.find_native_tool() is None,
                                reason="litert-benchmark (ai-edge-litert >= 2.3) not installed")


@needs_tool
def test_cross_check_on_a_tiny_model(tiny_models):
    models = {"float": tiny_models["float"], "int8": tiny_models["int8"]}
    check = crosscheck.run_cross_check(models, {"float": 0.05, "int8": 0.05}, threads=1,
                                       ratio_labels=("float", "int8"), rounds=3, runs=20, warmup=2)
    assert check.status in (Verdict.PASS, Verdict.WARN), check.reason
    assert [r.variant for r in check.rows] == ["float", "int8"]
    assert all(len(v) == 3 and min(v) >= 0 for v in check.native_rounds_ms.values())
    assert check.threads == 1 and check.runs_per_round == 20
    for row in check.rows:  # a tiny model may run under the tool's 0.01 ms resolution
        assert (row.difference is None) == (row.native_median_ms == 0)


@needs_tool
def test_cross_check_reports_a_tool_failure_as_an_error(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    check = crosscheck.run_cross_check({"float": broken}, {"float": 1.0}, threads=1, rounds=1, runs=2)
    assert check.status is Verdict.ERROR and "exited with" in check.reason


def test_cpu_benchmark_returns_blocks(tiny_models):
    x = np.zeros((1, 8, 8, 1), np.float32)
    xi = np.zeros((1, 8, 8, 1), np.int8)
    res = CpuDevice(1).benchmark({"float": tiny_models["float"], "int8": tiny_models["int8"]},
                                 {"float": x, "int8": xi},
                                 BenchSettings(warmup_runs=1, min_runs=20, min_seconds=0.0, num_threads=1))
    blocks = res.details["blocks"]
    per_block = blocks["block_runs"] - 1
    assert blocks["rounds"] >= 10 and blocks["order"] == [["float", "int8"], ["int8", "float"]]
    for label in ("float", "int8"):
        assert len(res.times_ms[label]) == blocks["rounds"] * per_block >= 90
        assert len(blocks["cold_ms"][label]) == blocks["rounds"]


@pytest.mark.slow
def test_digits_run_has_the_control_arm_blocks_ceiling_and_cross_check(tmp_path):
    from qat_harness.pipeline import RunOptions, run

    @dataclasses.dataclass
    class Options(RunOptions):  # until RunOptions has the field (issue 9's owner adds it)
        cross_check: bool = True

    opts = Options(models=["digits_cnn"], devices=["cpu"], out=tmp_path, check_bit_widths=False,
                   bench=BenchSettings(warmup_runs=2, min_runs=15, min_seconds=0.3))
    run(opts)
    report = json.loads((tmp_path / "report.json").read_text())
    a1 = next(c for c in report["claims"] if c["id"] == "A1-accuracy" and c["device"] == "cpu")
    details = a1["details"]
    assert details["baseline"] == "float_ft"
    assert set(details["arms"]) == {"float", "float_ft", "qat_int8", "ptq_int8"}
    assert {"float_top1", "int8_top1", "n"} <= set(details) and details["n"] == 360
    paired = details["paired"]
    assert paired["ci_low"] <= paired["drop_points"] <= paired["ci_high"]
    assert a1["measured"] == pytest.approx(round(paired["drop_points"], 3))
    assert "float + same fine-tune" in a1["reason"]

    cpu = report["models"]["digits_cnn"]["devices"]["cpu"]
    blocks = cpu["bench_details"]["blocks"]
    assert len(cpu["latency_raw_ms"]["float"]) == blocks["rounds"] * (blocks["block_runs"] - 1)
    assert cpu["speedup_qat_vs_float"]["n_pairs"] == blocks["rounds"]
    c2 = next(c for c in report["claims"] if c["id"] == "C2-cpu-latency")
    assert "int8 dot" in c2["details"]["ceiling"]["text"]
    check = cpu["bench_details"]["cross_check"]
    assert check["status"] in ("PASS", "WARN", "SKIP")
    md = (tmp_path / "report.md").read_text()
    assert "Accuracy arms on the same 360 examples" in md and "- Ceiling: " in md
    if check["status"] != "SKIP":
        assert "| variant | harness median ms | native median ms | difference |" in md


def test_digits_on_the_emulated_arm_levels(tmp_path):
    """Issue 22: digits_cnn from the cache on the three default ARM levels under QEMU: each
    computes what the reference kernels compute (K2), none has a latency claim judged (emulated:
    numerics only), the levels agree with each other, and report.md marks them emulated.
    Skips with the probe's one line where ``qat-harness setup arm-cpu`` has not been run."""
    from qat_harness.devices.arm.device import LEVEL_DEVICES
    from qat_harness.measure.level_agreement import UNCONFIRMED

    availability = LEVEL_DEVICES["neon"]().probe()
    if not availability.available:
        pytest.skip(availability.reason)
    from qat_harness import cli

    # the session's digits_cnn artifacts (built by the control-arm run above)
    code = cli.main(["run", "--models", "digits_cnn", "--devices", "cpu-ref,arm-cpu", "--out", str(tmp_path),
                     "--eval-limit", "24", "--no-trace", "--fail-on", "never", "--skip-bitwidth",
                     "--min-runs", "15", "--min-seconds", "0.3", "--warmup", "2"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0
    levels = ["arm-cpu-neon", "arm-cpu-dotprod", "arm-cpu-i8mm"]
    for device in levels:
        assert _claim_of(report, "K2-reference-agreement", device)["verdict"] == "PASS", device
        c2 = [c for c in report["claims"] if c["id"].startswith("C2") and c["device"] == device]
        assert all(c["verdict"] == "SKIP" and "emulated" in c["reason"] for c in c2), c2
    assert not any(UNCONFIRMED in n["text"] for n in report["notes"])
    text = (tmp_path / "report.md").read_text()
    assert "**Emulated devices:**" in text and "arm-cpu-dotprod (emulated)" in text


def _claim_of(report, cid, device):
    found = [c for c in report["claims"] if c["id"] == cid and c["device"] == device]
    assert len(found) == 1, f"{cid}/{device}: {found}"
    return found[0]
