"""The ``openvino`` device's inference precision (``--openvino-precision``): f32 by default on
every CPU, bf16 or f16 on request, and what the plugin really used (read back from the
compiled model) stated in the device's description and in every result. On a CPU without
bf16 instructions the CPU plugin computes a bf16 request in f32: the report must say so."""
from __future__ import annotations

import json

import pytest

from qat_harness import cli
from qat_harness.core.errors import DeviceError
from qat_harness.devices import registry
from qat_harness.devices.base import BenchSettings
from qat_harness.devices.openvino.device import OpenVinoDevice


@pytest.fixture(scope="module")
def bf16_device() -> OpenVinoDevice:
    device = registry.create("openvino", num_threads=2, precision="bf16")
    if not device.probe().available:
        pytest.skip(device.probe().reason)
    return device


def plugin_computes_bf16(device: OpenVinoDevice) -> bool:
    """OpenVINO's own word on whether this CPU has bf16 kernels."""
    return "BF16" in (device.describe()["optimization_capabilities"] or [])


def test_f32_is_asked_and_used_by_default_on_every_cpu():
    described = registry.create("openvino").describe()
    assert described["inference_precision"] == {"requested": "f32", "used": "f32"}


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_the_precision_is_asked_explicitly_not_left_to_the_plugin_default(precision):
    """The plugin's default is bf16 on CPUs with AMX or avx512_bf16: f32 must be asked for."""
    import openvino as ov

    from qat_harness.devices.openvino.worker import compile_config

    config = compile_config(ov.Core(), "CPU", 2, precision)
    assert config["INFERENCE_PRECISION_HINT"] == getattr(ov.Type, precision)


def test_bf16_asked_states_what_was_asked_and_what_the_plugin_used(bf16_device, tiny_models):
    expected = "bf16" if plugin_computes_bf16(bf16_device) else "f32"  # f32 here: an AVX2-only CPU
    stated = {"requested": "bf16", "used": expected}
    assert bf16_device.describe()["inference_precision"] == stated
    result = bf16_device.run(tiny_models["float"], tiny_models["x"])
    assert result.details["inference_precision"] == stated
    assert result.delegation.details["inference_precision"] == stated
    layers = result.delegation.details["runtime_layers_by_precision"]
    assert ("bf16" in layers) == (expected == "bf16"), layers  # the runtime graph agrees
    settings = BenchSettings(warmup_runs=1, min_runs=3, min_seconds=0.0, max_runs=10, num_threads=2)
    bench = bf16_device.benchmark({"float": tiny_models["float"]}, tiny_models["x"][:1], settings)
    assert bench.details["inference_precision"] == {"float": stated}
    assert bench.delegation["float"].details["inference_precision"] == stated


def test_a_run_report_states_the_precision_asked_and_used(bf16_device, tiny_models, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["run", "--models", f"{tiny_models['int8']}={tiny_models['float']}", "--devices", "openvino",
                     "--openvino-precision", "bf16", "--out", str(out), "--skip-bitwidth", "--min-runs", "3",
                     "--min-seconds", "0", "--warmup", "1", "--fail-on", "never"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    stated = {"requested": "bf16", "used": "bf16" if plugin_computes_bf16(bf16_device) else "f32"}
    described = report["devices"]["openvino"]
    assert described.get("facts", described)["inference_precision"] == stated  # describe() beside name/role
    (model,) = report["models"].values()
    delegation = model["devices"]["openvino"]["delegation"]
    assert delegation and all(d["details"]["inference_precision"] == stated for d in delegation.values())
    assert "requested=bf16" in (out / "report.html").read_text()


@pytest.mark.parametrize("given, normal", [("BF16", "bf16"), (" f16 ", "f16"), ("f32", "f32")])
def test_precision_names_are_normalized(given, normal):
    assert OpenVinoDevice(precision=given).precision == normal


def test_an_unknown_precision_is_unavailable_and_refused_in_one_line(tiny_models):
    bad = OpenVinoDevice(precision="fp8")
    availability = bad.probe()
    assert not availability.available
    assert "'fp8'" in availability.reason and "f32, bf16, f16" in availability.reason
    with pytest.raises(DeviceError, match="unknown OpenVINO inference precision") as caught:
        bad.run(tiny_models["float"], tiny_models["x"])
    assert "\n" not in caught.value.reason


def test_the_command_line_flag_reaches_the_device_alone():
    args = cli.build_parser().parse_args(["run", "--devices", "cpu,openvino", "--openvino-precision", "bf16"])
    given = cli.device_option_values(args)
    assert registry.split_options(["cpu", "openvino"], given) == {"cpu": {}, "openvino": {"precision": "bf16"}}
