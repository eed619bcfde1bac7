"""Claim C6-8bit-only: QAT with another bit width trains, but TFLite has no deployment path
for it. The harness checks it for real, so a 4-bit model never passes silently as 4-bit:

- W4A4 (4-bit weights and activations): the converter refuses (i4 tensors are not a TFLite type);
- W4A8: the converter emits an ordinary int8 model whose weights merely take <= 16 levels:
  8-bit storage and 8-bit kernels, so none of 4-bit's size or speed.

The QAT and conversion run in a child process (a converter abort stays contained)."""
from __future__ import annotations

import sys

from qat_harness.core.child import run_child, serve_once
from qat_harness.core.errors import DeviceError
from qat_harness.results import ClaimResult, Verdict

CHILD = "qat_harness.build.bitwidth"
CONFIGS = {"W4A4": (4, 4), "W4A8": (4, 8)}


def check_bit_widths(timeout_s: float = 300.0) -> ClaimResult:
    outcomes = {}
    for label, (wbits, abits) in CONFIGS.items():
        try:
            outcomes[label] = run_child(CHILD, {"weight_bits": wbits, "activation_bits": abits}, timeout_s)
        except DeviceError as exc:
            outcomes[label] = {"trained": None, "converted": False, "failure": f"{exc.kind}: {exc.reason}"}
    return judge(outcomes)


def judge(outcomes: dict) -> ClaimResult:
    """PASS when no configuration yields a real sub-8-bit model: each either fails to convert
    or converts to int8 storage. FAIL if a tensor narrower than 8 bits reaches the .tflite."""
    parts, verdict = [], Verdict.PASS
    for label, o in outcomes.items():
        if o.get("trained") is False:
            parts.append(f"{label}: QAT did not train ({o.get('failure')})")
            verdict = Verdict.WARN if verdict is Verdict.PASS else verdict
        elif o.get("trained") is None:
            parts.append(f"{label}: the probe itself failed ({o.get('failure')})")
            verdict = Verdict.ERROR
        elif not o.get("converted"):
            parts.append(f"{label}: trains, conversion refused ({o.get('failure')})")
        elif o.get("narrow_tensor_types"):
            parts.append(f"{label}: converted with sub-8-bit tensors {o['narrow_tensor_types']}")
            verdict = Verdict.FAIL
        else:
            parts.append(f"{label}: trains, converts to ordinary int8 storage (weights use at most "
                         f"{o.get('max_weight_levels')} levels): 8-bit size and kernels, no 4-bit path")
    return ClaimResult("C6-8bit-only", "bitwidth-probe", "any", verdict,
                       {k: ("refused" if not o.get("converted") else "int8 storage") for k, o in outcomes.items()},
                       "no sub-8-bit deployment path, reported as such", "; ".join(parts),
                       details={"outcomes": outcomes})


def _child(req: dict) -> dict:
    import numpy as np

    import qat_harness  # noqa: F401
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (
        default_n_bit_quantize_scheme as n_bit)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    scheme = n_bit.DefaultNBitQuantizeScheme(num_bits_weight=req["weight_bits"],
                                             num_bits_activation=req["activation_bits"])
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 4, 32)
    out = {"weight_bits": req["weight_bits"], "activation_bits": req["activation_bits"]}
    try:
        qat = tfmot.quantization.keras.quantize_apply(
            tfmot.quantization.keras.quantize_annotate_model(model), scheme=scheme)
        qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        qat.fit(x, y, epochs=1, verbose=0)
        out["trained"] = True
    except Exception as exc:  # noqa: BLE001
        return {**out, "trained": False, "converted": False, "failure": _line(exc)}
    conv = tf.lite.TFLiteConverter.from_keras_model(qat)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(10))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        blob = conv.convert()
    except Exception as exc:  # noqa: BLE001
        return {**out, "converted": False, "failure": _line(exc)}
    return {**out, "converted": True, **_weight_levels(blob)}


def _weight_levels(blob: bytes) -> dict:
    import numpy as np
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_content=blob)
    levels, narrow = [], set()
    for d in interp.get_tensor_details():
        if d["dtype"] not in (np.int8, np.uint8, np.int16, np.int32, np.float32):
            narrow.add(str(np.dtype(d["dtype"])))
        if d["dtype"] == np.int8:
            try:
                levels.append(int(len(np.unique(interp.get_tensor(d["index"])))))
            except ValueError:  # an activation: no data before allocation
                pass
    return {"max_weight_levels": max(levels) if levels else None, "narrow_tensor_types": sorted(narrow),
            "size_bytes": len(blob)}


def _line(exc: Exception) -> str:
    import re

    text = str(exc)
    narrow = re.search(r"'(tfl\.\w+)' op .*?quant\.uniform<(\w+):", text)
    if narrow:  # the converter's long type-list message, said short
        return f"{narrow.group(1)} does not accept {narrow.group(2)} tensors"
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


if __name__ == "__main__":
    sys.exit(serve_once(_child, describe=_line))
