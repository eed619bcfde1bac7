"""``litert-npu``: LiteRT's NPU accelerator through the Intel OpenVINO dispatch of the wheel (run
on this CPU), how much of the graph it took as a fact (C3), and one-line probes for the vendors
whose runtime is not here."""
from pathlib import Path

import numpy as np
import pytest

from qat_harness import claims
from qat_harness.claims.latency import SpeedUp
from qat_harness.core.tflite import inspect_model
from qat_harness.devices.base import Role
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.devices.litert.npu import LiteRTNpuDevice, delegation
from qat_harness.results import Verdict
from qat_harness.stats import RatioCI

REAL = Path(__file__).parents[2] / "fixtures" / "real_models"


@pytest.fixture(scope="module")
def openvino_dispatch() -> LiteRTNpuDevice:
    """The dispatch links OpenVINO 2026.3 by name: a run without it is told exactly that."""
    device = LiteRTNpuDevice()
    availability = device.probe()
    if not availability.available:
        pytest.skip(availability.reason)
    return device


def _inputs(model: Path, n: int) -> np.ndarray:
    info = inspect_model(model)
    t = info.tensor(info.inputs[0])
    rng = np.random.default_rng(0)
    if t.dtype == "int8":
        return rng.integers(-128, 128, (n, *t.shape[1:]), dtype=np.int8)
    return rng.uniform(0, 1, (n, *t.shape[1:])).astype(np.float32)


def test_the_openvino_dispatch_runs_an_int8_model_fully_accelerated(openvino_dispatch):
    model = REAL / "mltk_micro_speech.tflite"
    x = _inputs(model, 8)
    result = openvino_dispatch.run(model, x)
    d = result.delegation
    assert d is not None and d.details["status"] == "full", d
    assert d.ops_total == d.ops_delegated == len(inspect_model(model).ops)
    assert d.details["fully_accelerated"] is True and d.details["plugins_applied"] == 1
    # measured: the same int8 values as XNNPACK on this file
    np.testing.assert_array_equal(result.outputs, CpuDevice().run(model, x).outputs)


def test_silent_fallback_is_caught_where_litert_says_fully_accelerated(openvino_dispatch):
    """selfie_segmentation's custom op splits it in two partitions; the plug-in compiles the
    second for the NPU whatever the graph backend, fails, and LiteRT runs everything on XNNPACK
    while ``is_fully_accelerated()`` says True (measured)."""
    model = REAL / "selfie_segmentation.tflite"
    x = _inputs(model, 1)
    result = openvino_dispatch.run(model, x)
    d = result.delegation
    assert d is not None and d.details["status"] == "none"
    assert d.ops_delegated == 0 and d.fraction == 0
    assert d.details["fully_accelerated"] is True and "silent CPU fallback" in d.details["why"]
    np.testing.assert_array_equal(result.outputs, CpuDevice().run(model, x).outputs)


def _facts(selected, total, applied=1, fully=True):
    return {"fully_accelerated": fully, "model_ops": {"CONV_2D": total - 1, "SOFTMAX": 1},
            "ops_selected": selected, "ops_total": total, "partitions": 1, "plugins_applied": applied,
            "refusals": []}


def _c3(d):
    speed_up = SpeedUp(ratio=RatioCI(1.5, 1.4, 1.6, n_pairs=30), delegation=d)
    return claims.AcceleratorLatency.judge("m", "litert-npu", speed_up)


def test_partial_delegation_is_a_c3_warn_naming_the_dispatch():
    d = delegation("intel_openvino", _facts(selected=9, total=10, fully=False))
    assert d.details["status"] == "partial" and d.fraction == pytest.approx(0.9)
    assert "1 op(s)" in d.fallback[0][0] and "Intel OpenVINO" in d.fallback[0][1]
    result = _c3(d)
    assert result.verdict is Verdict.WARN
    assert "9/10 ops on LiteRT NPU dispatch (Intel OpenVINO)" in result.reason


def test_every_op_selected_but_litert_not_fully_accelerated_is_partial_and_unknown():
    """The two signals disagree: how much ran on the CPU is unknown, never counted as all."""
    d = delegation("intel_openvino", _facts(selected=10, total=10, fully=False))
    assert d.details["status"] == "partial" and d.ops_delegated is None
    assert d.fallback[0][0] == "unknown" and "not fully accelerated" in d.fallback[0][1]


def test_full_delegation_passes_c3():
    d = delegation("intel_openvino", _facts(selected=10, total=10))
    assert d.details["status"] == "full" and d.fallback == []
    assert _c3(d).verdict is Verdict.PASS


@pytest.mark.parametrize("vendor,package", [("qualcomm", "ai-edge-litert-sdk-qualcomm"),
                                            ("mediatek", "ai-edge-litert-sdk-mediatek"),
                                            ("google_tensor", "ai-edge-litert-sdk-google-tensor")])
def test_vendors_without_a_runtime_here_are_a_one_line_probe(vendor, package):
    availability = LiteRTNpuDevice(vendor=vendor).probe()
    assert not availability.available
    assert package in availability.reason and "dispatch library" in availability.reason
    assert "\n" not in availability.reason


def test_an_unknown_vendor_is_named_in_one_line():
    availability = LiteRTNpuDevice(vendor="acme").probe()
    assert not availability.available and "unknown LiteRT NPU vendor 'acme'" in availability.reason


def test_openvino_of_another_release_names_the_library_and_the_pin(tmp_path):
    (tmp_path / "libopenvino.so.2641").write_bytes(b"")
    availability = LiteRTNpuDevice(openvino_libs=str(tmp_path)).probe()
    assert not availability.available
    assert "libopenvino.so.2631" in availability.reason and "openvino==2026.3.1" in availability.reason
    assert "libopenvino.so.2641" in availability.reason  # what was found instead


def test_declared_as_an_accelerator_on_this_cpu():
    assert LiteRTNpuDevice.role is Role.ACCELERATOR and LiteRTNpuDevice.runs_on_host
    assert {o.name for o in LiteRTNpuDevice.options} == {"vendor", "openvino_libs"}
