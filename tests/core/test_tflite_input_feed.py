"""Issue 20 item 1, at the tensor: integers of a quantized input's own dtype are its native
format and are fed as they are; quantizing any other data counts what it clips; native values
turned into the reals they stand for quantize back to the very same integers."""
from __future__ import annotations

import numpy as np
import pytest

from qat_harness.core import tflite
from qat_harness.core.tflite import FeedScheme

SCALE, ZERO_POINT = 1 / 128, 128  # a legacy uint8 classifier's input: [-1, 0.99]


def _tensor(dtype: str = "uint8", scale: float | None = SCALE, zero_point: int = ZERO_POINT) -> tflite.TensorInfo:
    return tflite.TensorInfo(0, "image", dtype, [1, 4, 4, 3], False, [scale] if scale else None,
                             [zero_point] if scale else None, 0)


def test_uint8_pixels_for_a_uint8_input_are_fed_as_they_are():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    fed = tflite.tensor_input(_tensor(), pixels)
    assert fed.dtype == np.uint8 and np.array_equal(fed, pixels)  # before: all but 0 and 1 became 255


def test_int8_arrays_for_an_int8_input_are_fed_as_they_are():
    values = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(tflite.tensor_input(_tensor("int8", 0.05, -3), values), values)


def test_integers_of_another_dtype_are_values_and_are_quantized():
    fed = tflite.tensor_input(_tensor(), np.array([-1, 0, 1], dtype=np.int64))
    assert fed.tolist() == [0, 128, 255]


@pytest.mark.parametrize("dtype,zero_point", [("uint8", 128), ("uint8", 0), ("int8", -128), ("int8", 5),
                                              ("int16", 0)])
def test_native_values_dequantized_quantize_back_to_the_same_integers(dtype, zero_point):
    info = np.iinfo(dtype)
    q = np.arange(info.min, info.max + 1, dtype=dtype)
    for scale in (1 / 128, 2 / 255, 0.0123456789, 3.7e-5):
        back = tflite.quantize_input(tflite.dequantize(q, scale, zero_point), scale, zero_point, dtype)
        assert np.array_equal(back, q), (dtype, scale, zero_point)


def test_the_feed_of_native_integers_is_native_and_clips_nothing():
    pixels = np.array([[0, 17, 255]], dtype=np.uint8)
    feed = tflite.input_feed("image", "uint8", SCALE, ZERO_POINT, [pixels])
    assert feed.scheme is FeedScheme.NATIVE and feed.clipped == 0.0
    assert (feed.dtype, feed.low, feed.high) == ("uint8", 0.0, 255.0)


def test_the_feed_of_values_counts_what_quantization_clips():
    # 100 values: 1.0 lands one step past the top of [-1, 0.992] (rounding, not clipping),
    # 3 values far beyond, 1 far below
    x = np.concatenate([np.full(96, 1.0), [2.0, 5.0, 255.0, -3.0]]).astype(np.float32)
    feed = tflite.input_feed("image", "uint8", SCALE, ZERO_POINT, [x[:50], x[50:]])
    assert feed.scheme is FeedScheme.QUANTIZED and feed.clipped == pytest.approx(0.04)
    assert (feed.low, feed.high, feed.scale, feed.zero_point) == (-3.0, 255.0, SCALE, ZERO_POINT)
    assert feed.represents == pytest.approx((-1.0, 127 / 128))


def test_raw_pixels_read_as_values_clip_all_but_the_darkest():
    pixels = np.arange(256, dtype=np.float32)
    feed = tflite.input_feed("image", "uint8", SCALE, ZERO_POINT, [pixels])
    assert feed.clipped == pytest.approx(254 / 256)  # 0 and 1 stay within a step of the top


def test_float_and_id_inputs_are_fed_as_given():
    assert tflite.input_feed("x", "float32", None, None, [np.zeros(3, np.uint8)]).scheme is FeedScheme.FLOAT
    assert tflite.input_feed("ids", "int32", None, None, [np.arange(3)]).scheme is FeedScheme.IDS
