"""The ``openvino`` device on this machine's real OpenVINO runtime (the `test` extra installs it):
small .tflite models are made on the spot and run through OpenVINO and, for comparison, through
LiteRT's reference kernels (the numeric oracle)."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.core.errors import DeviceError
from qat_harness.core.tflite import inspect_model, quantize_input
from qat_harness.devices import registry
from qat_harness.devices.base import BenchSettings, Role
from qat_harness.devices.litert.cpu import CpuRefDevice
from qat_harness.devices.openvino import device as openvino_device
from qat_harness.devices.openvino.device import OpenVinoDevice
from qat_harness.devices.openvino.model_io import TensorSpec, to_model_dtype
from qat_harness.devices.openvino.targets import is_listed, normalize_target, role_for
from qat_harness.devices.openvino.worker import summarize
from qat_harness.measure.difference import OutputTensor, output_difference


# -- models -----------------------------------------------------------------------------------
def quantized_inputs(model_path, x: np.ndarray) -> np.ndarray:
    info = inspect_model(model_path)
    t = info.tensor(info.inputs[0])
    return quantize_input(x, t.scales[0], t.zero_points[0])


@pytest.fixture(scope="module")
def extra_models(tiny_models, tmp_path_factory):
    """Models for the edge cases: REVERSE_V2 whose output scale differs from its input's, an op
    OpenVINO has no translator for, and a model with two inputs."""
    import tensorflow as tf
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    layers = keras.layers
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("openvino-models")
    x = tiny_models["x"]

    # The concatenation takes the wider range of its second input, and the converter gives
    # that scale to the reverse's output too: REVERSE_V2 then maps one scale to another.
    inp = keras.Input((8, 8, 1))
    features = layers.Conv2D(4, 3)(inp)
    reversed_ = layers.Lambda(lambda t: tf.reverse(t, [1]))(features)
    widened = layers.Lambda(lambda t: t * 3.0)(features)
    reverse = keras.Model(inp, layers.Concatenate()([reversed_, widened]))

    inp = keras.Input((8,), batch_size=1)
    bucketize = keras.Model(inp, layers.Lambda(
        lambda t: tf.cast(tf.raw_ops.Bucketize(input=t, boundaries=[0.1, 0.5]), tf.float32))(inp))

    a, b = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.Model([a, b], layers.Add()([a, b]))

    paths = {"reverse": folder / "reverse_int8.tflite", "bucketize": folder / "bucketize.tflite",
             "two_inputs": folder / "two_inputs.tflite"}
    paths["reverse"].write_bytes(to_tflite(reverse, full_int8=True, calibration=x))
    paths["bucketize"].write_bytes(to_tflite(bucketize, full_int8=False))
    paths["two_inputs"].write_bytes(to_tflite(two_inputs, full_int8=False))
    return paths


@pytest.fixture(scope="module")
def device() -> OpenVinoDevice:
    return registry.create("openvino", num_threads=2)

INT8_OUTPUT = OutputTensor("output", "int8", [1.0])


def one_line(exc: DeviceError) -> bool:
    return "\n" not in exc.reason and 0 < len(exc.reason) <= 400


# -- availability -----------------------------------------------------------------------------
def test_probe_finds_the_cpu_and_describes_it(device):
    availability = device.probe()
    assert availability.available, availability.reason
    assert "CPU" in availability.details["available_devices"]
    facts = device.describe()
    assert facts["target"] == "CPU" and facts["role"] == Role.HOST_CPU.value
    assert facts["num_threads"] == 2 and facts["simulated"] is False
    assert facts["version"] and facts["full_device_name"]
    assert "INT8" in facts["optimization_capabilities"]


def test_a_target_that_is_not_there_is_unavailable_and_lists_the_real_devices(device):
    listed = device.probe().details["available_devices"]
    missing = next((t for t in ("NPU", "GPU", "GPU.9") if not is_listed(t, listed)), None)
    if missing is None:
        pytest.skip(f"this machine has every OpenVINO target: {listed}")
    availability = registry.probe("openvino", target=missing)
    assert not availability.available
    assert f"'{missing}' not found" in availability.reason
    assert all(name in availability.reason for name in listed)


def test_an_unknown_target_is_unavailable_and_refused(tiny_models):
    bad = OpenVinoDevice(target="TPU")
    assert not bad.probe().available and "TPU" in bad.probe().reason
    with pytest.raises(DeviceError, match="unknown OpenVINO device"):
        bad.run(tiny_models["float"], tiny_models["x"])


def test_without_the_package_the_probe_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(openvino_device, "openvino_installed", lambda: False)
    availability = OpenVinoDevice().probe()
    assert not availability.available
    assert "pip install 'qat-harness[openvino]'" in availability.reason


@pytest.mark.parametrize("target, role", [("CPU", Role.HOST_CPU), ("gpu", Role.ACCELERATOR),
                                          ("NPU", Role.ACCELERATOR), ("GPU.1", Role.ACCELERATOR),
                                          ("AUTO", Role.HOST_CPU)])
def test_the_role_follows_the_target(target, role):
    assert role_for(normalize_target(target)) is role
    assert OpenVinoDevice(target=target).role is role


def test_numbered_devices_match_their_family():
    assert is_listed("GPU", ["CPU", "GPU.0", "GPU.1"]) and is_listed("GPU.1", ["GPU.0", "GPU.1"])
    assert not is_listed("GPU", ["CPU", "NPU"]) and is_listed("AUTO", ["CPU"])


# -- running ----------------------------------------------------------------------------------
def test_float_model_matches_litert(device, tiny_models):
    """On every CPU: the device asks for f32 by default (the CPU plugin's own default is bf16
    where AMX or avx512_bf16 exist, 2.8e-4 away on this model) and the compiled model uses it."""
    x = tiny_models["x"]
    result = device.run(tiny_models["float"], x)
    reference = CpuRefDevice().run(tiny_models["float"], x).outputs
    assert result.outputs.dtype == np.float32 and result.outputs.shape == (len(x), 3)
    np.testing.assert_allclose(result.outputs, reference, atol=1e-5)
    assert result.simulated is False
    assert result.details["inference_precision"] == {"requested": "f32", "used": "f32"}


def test_int8_model_agrees_with_the_reference_kernels_within_one_step(device, tiny_models):
    inputs = quantized_inputs(tiny_models["int8"], tiny_models["x"])
    result = device.run(tiny_models["int8"], inputs)
    reference = CpuRefDevice().run(tiny_models["int8"], inputs).outputs
    assert result.outputs.dtype == np.int8 and result.outputs.shape == reference.shape
    difference = output_difference(result.outputs, reference, INT8_OUTPUT)
    assert difference.max_steps <= 1, difference
    delegation = result.delegation
    assert delegation.backend == "openvino"
    assert delegation.ops_total == delegation.ops_delegated == len(inspect_model(tiny_models["int8"]).ops)
    integer_layers = {**delegation.details["runtime_layers_by_precision"]}
    assert integer_layers.get("u8") or integer_layers.get("i8"), integer_layers  # int8 kernels ran


def test_benchmark_times_two_models_on_the_one_abba_schedule(device, tiny_models):
    x = tiny_models["x"][:1]
    sample = {"float": x, "int8": quantized_inputs(tiny_models["int8"], x)}
    settings = BenchSettings(warmup_runs=2, min_runs=10, min_seconds=0.0, max_runs=50, num_threads=2)
    bench = device.benchmark({"float": tiny_models["float"], "int8": tiny_models["int8"]}, sample, settings)
    assert set(bench.times_ms) == {"float", "int8"}
    blocks = bench.details["blocks"]
    assert blocks["timing"] == "abba-blocks" and blocks["order"] == [["float", "int8"], ["int8", "float"]]
    # 50 runs at most per model: 5 blocks of 10, each block's first run kept apart as cold
    assert all(len(times) == blocks["rounds"] * 9 and min(times) > 0 for times in bench.times_ms.values())
    assert all(len(cold) == blocks["rounds"] for cold in blocks["cold_ms"].values())
    assert set(bench.first_invoke_ms) == {"float", "int8"}
    assert bench.delegation["int8"].fraction == 1.0 and bench.simulated is False


# -- failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_model_is_a_one_line_device_error(device, tiny_models, tmp_path, damage):
    data = tiny_models["int8"].read_bytes()
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(data[: len(data) // 2] if damage == "truncated" else bytes(range(256)) * 8)
    with pytest.raises(DeviceError) as caught:
        device.run(corrupt, quantized_inputs(tiny_models["int8"], tiny_models["x"][:2]))
    assert one_line(caught.value) and caught.value.kind != "crash", caught.value.reason


def test_a_model_openvino_refuses_is_an_unsupported_device_error(device, extra_models):
    with pytest.raises(DeviceError) as caught:
        device.run(extra_models["bucketize"], np.zeros((2, 8), np.float32))
    assert caught.value.kind == "unsupported" and "BUCKETIZE" in caught.value.reason
    assert one_line(caught.value), caught.value.reason


def test_a_model_with_two_inputs_given_one_is_refused_not_half_fed(device, extra_models):
    with pytest.raises(DeviceError, match="takes 2 input") as caught:
        device.run(extra_models["two_inputs"], np.zeros((2, 4), np.float32))
    assert one_line(caught.value), caught.value.reason


def test_inputs_in_the_wrong_dtype_are_refused(device, tiny_models):
    with pytest.raises(DeviceError, match="float32.*int8"):
        device.run(tiny_models["int8"], tiny_models["x"])


# -- the known disagreement ---------------------------------------------------------------------
def test_reverse_v2_between_two_scales_disagrees_with_the_reference_kernels(device, tiny_models,
                                                                            extra_models):
    """LiteRT's REVERSE_V2 copies int8 codes even when its output scale differs from its input
    scale; OpenVINO dequantizes, reverses and requantizes. The harness must see that."""
    path = extra_models["reverse"]
    info = inspect_model(path)
    (op,) = [op for op in info.ops if op.opcode == "REVERSE_V2"]
    scale_in, scale_out = info.tensor(op.inputs[0]).scales[0], info.tensor(op.outputs[0]).scales[0]
    assert scale_out != pytest.approx(scale_in), "the converter no longer gives REVERSE_V2 two scales"

    inputs = quantized_inputs(path, tiny_models["x"])
    openvino = device.run(path, inputs).outputs
    reference = CpuRefDevice().run(path, inputs).outputs
    difference = output_difference(openvino, reference, INT8_OUTPUT)
    assert difference.max_steps > 1, difference
    # the other half of the concatenation (no reverse) still agrees
    untouched = output_difference(openvino[..., 4:], reference[..., 4:], INT8_OUTPUT)
    assert untouched.max_steps <= 1, untouched


# -- pure helpers -----------------------------------------------------------------------------
def test_float_outputs_are_requantized_with_the_tflite_scale():
    spec = TensorSpec(name="out", dtype=np.dtype("int8"), shape=(1, 3), scale=0.5, zero_point=-10)
    codes, note = to_model_dtype(np.array([[0.0, 1.0, 200.0]], np.float32), spec)
    assert codes.dtype == np.int8 and codes.tolist() == [[-10, -8, 127]]
    assert "requantized" in note
    same, none = to_model_dtype(codes, spec)
    assert same is codes and none is None


def test_openvino_messages_are_summarized_to_the_line_that_says_what_failed():
    raw = RuntimeError("Exception from src/inference/src/cpp/core.cpp:132:\n"
                       "Check 'translate_map.count(decoder->get_op_type())' failed at frontend.cpp:221:\n"
                       "FrontEnd API failed with OpConversionFailure:\n"
                       "No translator found for BUCKETIZE node.\n\n")
    assert summarize(raw) == "No translator found for BUCKETIZE node."


def test_two_arrays_for_a_one_input_model_are_refused_in_one_line(device, tiny_models):
    """Each array feeds one model input: two arrays for a one-input model are refused before
    anything runs, not stacked into one array (which fails, or feeds the wrong shape)."""
    two = [np.zeros((2, 8, 8, 1), np.int8), np.zeros((2, 3), np.int8)]
    with pytest.raises(DeviceError) as err:
        device.run(tiny_models["int8"], two)
    assert "takes 1 input(s), 2 given" in err.value.reason and one_line(err.value)
    with pytest.raises(DeviceError) as err:
        device.benchmark({"int8": tiny_models["int8"]}, {"int8": two}, BenchSettings())
    assert "takes 1 input(s), 2 given" in err.value.reason
