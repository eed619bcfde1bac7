"""The quantization scheme is read from the .tflite itself: a float file is never called int8,
and each converter option gives the scheme it is documented to give."""
from __future__ import annotations

import pytest

from qat_harness.core import tflite
from qat_harness.measure.scheme import QuantScheme, quantization_scheme

pytest_plugins = ["quant_scheme_files"]


@pytest.mark.parametrize("name,scheme", [
    ("float32", QuantScheme.FLOAT32),
    ("fp16_weights", QuantScheme.FP16_WEIGHTS),
    ("sparse", QuantScheme.SPARSE),
    ("dynamic_range", QuantScheme.DYNAMIC_RANGE),
    ("int8", QuantScheme.INT8),
    ("int8_float_io", QuantScheme.INT8),       # a float interface around an int8 body is int8
    ("int8_per_tensor", QuantScheme.INT8),
    ("uint8_io", QuantScheme.UINT8),
    ("legacy_uint8", QuantScheme.UINT8),
    ("int16x8", QuantScheme.INT16X8),
    ("mixed", QuantScheme.MIXED),
])
def test_each_converter_option_gives_its_scheme(scheme_files, name, scheme):
    assert quantization_scheme(tflite.inspect_model(scheme_files[name])) is scheme


def test_the_fixtures_are_what_their_names_say(scheme_files):
    """Guards the fixtures themselves: each carries the marks its scheme is read from."""
    def dtypes(name, constant):
        return {t.dtype for t in tflite.inspect_model(scheme_files[name]).tensors if t.is_constant == constant}

    def opcodes(name):
        return {op.opcode for op in tflite.inspect_model(scheme_files[name]).ops}

    assert "float16" in dtypes("fp16_weights", True) and "DEQUANTIZE" in opcodes("fp16_weights")
    assert "int8" in dtypes("dynamic_range", True) and dtypes("dynamic_range", False) == {"float32"}
    assert "DENSIFY" in opcodes("sparse")
    assert "SIN" in opcodes("mixed") and "int8" in dtypes("mixed", False)
    assert "int16" in dtypes("int16x8", False)
    per_tensor = tflite.inspect_model(scheme_files["int8_per_tensor"])
    conv = next(op for op in per_tensor.ops if op.opcode == "CONV_2D")
    assert len(per_tensor.tensors[conv.inputs[1]].scales) == 1


def test_int4_weights_from_ai_edge_quantizer(scheme_files, tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    from quant_scheme_files import int4_weights

    path = int4_weights(scheme_files["float32"], tmp_path / "int4.tflite")
    assert "int4" in {t.dtype for t in tflite.inspect_model(path).tensors}
    assert quantization_scheme(tflite.inspect_model(path)) is QuantScheme.INT4_WEIGHTS


def test_labels_and_the_float_schemes():
    assert [s.label for s in QuantScheme] == ["float32", "fp16-weights", "sparse float", "dynamic-range",
                                              "int4-weights", "int8", "uint8", "16x8", "mixed"]
    assert {s for s in QuantScheme if s.is_float} == {QuantScheme.FLOAT32, QuantScheme.FP16_WEIGHTS,
                                                      QuantScheme.SPARSE}
    assert QuantScheme.FLOAT32.file_phrase == "a float32 file"
    assert QuantScheme.FP16_WEIGHTS.file_phrase == "an fp16-weights file"
    assert QuantScheme("uint8") is QuantScheme.UINT8 and str(QuantScheme.INT16X8) == "int16x8"
