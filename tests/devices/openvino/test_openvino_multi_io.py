"""The ``openvino`` device on models with several inputs and outputs (issue 20, item 10): every
input fed by its tensor name, every output returned in the model's output order, and the
answers those of LiteRT. Both models order their .tflite inputs by name, not as the Keras
model declares them: tests/user_models.py's ``multi_io_pair`` (a conv + dense classifier with
a box head) and an element-wise int8 and float pair built here (see ``elementwise_pair`` for
why the int8 agreement is judged on that one)."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.core.errors import DeviceError
from qat_harness.core.tflite import inspect_model, model_inputs
from qat_harness.devices import registry
from qat_harness.devices.base import BenchSettings
from qat_harness.devices.litert.cpu import CpuRefDevice
from qat_harness.measure.difference import OutputTensor, output_difference

pytest_plugins = ["user_models"]


@pytest.fixture(scope="module")
def device():
    dev = registry.create("openvino", num_threads=2)
    if not dev.probe().available:
        pytest.skip(dev.probe().reason)
    return dev


@pytest.fixture(scope="module")
def multi_io(user_models):
    """(int8 path, float path, {variant: inputs in the .tflite's order, in each input's dtype})."""
    from user_models import MULTI_IO_ORDER, multi_io_calibration

    int8, float_ = user_models.multi_io_pair()
    by_name = {name: x[:12] for name, x in multi_io_calibration().items()}
    keras_order = ["image", "aux_features"]
    inputs = {variant: model_inputs(inspect_model(path), [by_name[n] for n in keras_order], keras_order)
              for variant, path in (("int8", int8), ("float", float_))}
    assert [x.shape[1:] for x in inputs["float"]] == [(4,), (16, 16, 3)], MULTI_IO_ORDER["inputs"]
    return int8, float_, inputs

INT8_OUTPUT = OutputTensor("output", "int8", [1.0])


def test_a_two_input_two_output_float_model_matches_litert(device, multi_io):
    _, float_, inputs = multi_io
    result = device.run(float_, inputs["float"])
    reference = CpuRefDevice().run(float_, inputs["float"])
    assert [o.shape for o in result.all_outputs] == [(12, 10), (12, 3)]  # scores, then box
    for got, want in zip(result.all_outputs, reference.all_outputs, strict=True):
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.fixture(scope="module")
def elementwise_pair(tmp_path_factory):
    """(int8 path, float path, inputs by variant) of a 2-input / 2-output model with no weight
    matrix (MUL and CONCATENATION): inputs ``wide`` [6] and ``narrow`` [4] (the .tflite orders
    them narrow, wide), outputs the concatenation [10] and the square of ``narrow`` [4]. An
    int8 model with FULLY_CONNECTED or CONV_2D would not do for agreement: on a CPU without
    VNNI, OpenVINO's int8 kernels sum pairs of u8 x s8 products in saturating int16
    (``vpmaddubsw``) and give 20-50 steps more on some inputs (``multi_io_pair`` here)."""
    import tensorflow as tf
    import tf_keras
    from user_models import convert

    rng = np.random.default_rng(7)
    calibration = {"wide": rng.uniform(-1, 1, (64, 6)).astype(np.float32),
                   "narrow": rng.uniform(-2, 2, (64, 4)).astype(np.float32)}
    wide, narrow = tf_keras.Input((6,), name="wide"), tf_keras.Input((4,), name="narrow")
    model = tf_keras.Model([wide, narrow], [tf_keras.layers.Concatenate(name="joined")([narrow, wide]),
                                            tf_keras.layers.Multiply(name="squared")([narrow, narrow])])
    folder = tmp_path_factory.mktemp("openvino-multi-io")
    paths = {"int8": folder / "elementwise_int8.tflite", "float": folder / "elementwise_float.tflite"}
    paths["int8"].write_bytes(convert(model, calibration=calibration, input_type=tf.int8, output_type=tf.int8))
    paths["float"].write_bytes(convert(model))
    keras_order = ["wide", "narrow"]
    inputs = {v: model_inputs(inspect_model(path), [calibration[n][:16] for n in keras_order], keras_order)
              for v, path in paths.items()}
    assert [x.shape[1:] for x in inputs["int8"]] == [(4,), (6,)]  # the .tflite's order, not Keras's
    return paths["int8"], paths["float"], inputs


@pytest.mark.parametrize("variant", ["int8", "float"])
def test_a_two_input_two_output_model_agrees_with_the_reference_kernels(device, elementwise_pair, variant):
    int8, float_, inputs = elementwise_pair
    path = {"int8": int8, "float": float_}[variant]
    result = device.run(path, inputs[variant])
    reference = CpuRefDevice().run(path, inputs[variant])
    assert [o.shape for o in result.all_outputs] == [o.shape for o in reference.all_outputs]
    assert sorted(o.shape for o in result.all_outputs) == [(16, 4), (16, 10)]
    for got, want in zip(result.all_outputs, reference.all_outputs, strict=True):
        assert got.dtype == want.dtype == np.dtype(variant.replace("float", "float32"))
        if variant == "int8":
            difference = output_difference(got, want, INT8_OUTPUT)
            assert difference.max_steps <= 1, difference
        else:
            np.testing.assert_allclose(got, want, atol=1e-6)
    assert result.delegation.ops_delegated == result.delegation.ops_total == len(inspect_model(path).ops)


def test_every_output_of_a_two_input_int8_classifier_comes_back_in_the_model_order(device, multi_io):
    int8, _, inputs = multi_io
    result = device.run(int8, inputs["int8"])
    reference = CpuRefDevice().run(int8, inputs["int8"])
    assert [(o.dtype, o.shape) for o in result.all_outputs] == [(o.dtype, o.shape) for o in reference.all_outputs]
    assert [o.shape for o in result.all_outputs] == [(12, 10), (12, 3)]


def test_a_two_input_model_is_timed_with_both_inputs_set(device, multi_io):
    int8, float_, inputs = multi_io
    sample = {variant: [x[:1] for x in arrays] for variant, arrays in inputs.items()}
    settings = BenchSettings(warmup_runs=1, min_runs=5, min_seconds=0.0, max_runs=20, num_threads=2)
    bench = device.benchmark({"float": float_, "int8": int8}, sample, settings)
    steady_runs = bench.details["blocks"]["rounds"] * (bench.details["blocks"]["block_runs"] - 1)
    assert {label: len(times) for label, times in bench.times_ms.items()} == {"float": steady_runs,
                                                                               "int8": steady_runs}
    assert steady_runs >= 5


def test_inputs_given_in_the_keras_order_are_refused_in_one_line(device, multi_io):
    """The harness passes inputs in the .tflite's order; the other order is refused by shape,
    never run with the image fed to the 4-value input."""
    _, float_, inputs = multi_io
    with pytest.raises(DeviceError) as caught:
        device.run(float_, inputs["float"][::-1])
    assert "aux_features" in caught.value.reason and "\n" not in caught.value.reason
