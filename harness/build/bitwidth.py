"""The 4-bit QAT probe behind claim C6 (8-bit only): QAT with another bit width trains, but
TFLite has no deployment path for it. The harness measures it for real, so a 4-bit model never
passes silently as 4-bit:

- W4A4 (4-bit weights and activations): the converter refuses (i4 tensors are not a TFLite type);
- W4A8: the converter emits an ordinary int8 model whose weights merely take <= 16 levels:
  8-bit storage and 8-bit kernels, so none of 4-bit's size or speed.

The QAT and conversion run in a child process (a converter abort stays contained). What comes
out is measurements (``BitWidthOutcome``); ``claims.EightBitOnly`` judges them."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from qat_harness.core.child import run_child, serve_once
from qat_harness.core.errors import DeviceError

CHILD = "qat_harness.build.bitwidth"
CONFIGS = {"W4A4": (4, 4), "W4A8": (4, 8)}
_OUTCOMES_FILE = "outcomes.json"


@dataclasses.dataclass(frozen=True)
class BitWidthOutcome:
    """One bit-width configuration through QAT and conversion. ``trained`` None: the probe
    itself failed (its child crashed or hung), so nothing is known."""
    trained: bool | None
    converted: bool
    failure: str | None = None
    weight_bits: int | None = None
    activation_bits: int | None = None
    max_weight_levels: int | None = None
    narrow_tensor_types: list[str] | None = None
    size_bytes: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "BitWidthOutcome":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"trained": None, "converted": False, **{k: v for k, v in d.items() if k in fields}})

    def to_dict(self) -> dict:
        """The child's own keys: what was not measured is left out."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k in ("trained", "converted") or v is not None}


def measure(timeout_s: float = 300.0) -> dict[str, BitWidthOutcome]:
    outcomes = {}
    for label, (wbits, abits) in CONFIGS.items():
        try:
            outcomes[label] = BitWidthOutcome.from_dict(
                run_child(CHILD, {"weight_bits": wbits, "activation_bits": abits}, timeout_s))
        except DeviceError as exc:
            outcomes[label] = BitWidthOutcome(None, False, f"{exc.kind}: {exc.reason}")
    return outcomes


def cached_outcomes(cache) -> dict[str, BitWidthOutcome]:
    """The probe's outcomes, measured once per library set and kept in the artifact cache
    (``cache``: a ``build.cache.ArtifactCache``); a failed probe is never cached."""
    from qat_harness.build.cache import cache_key

    key = cache_key({"probe": "bitwidth", "configs": CONFIGS})
    entry = cache.lookup(key)
    if entry is None:
        outcomes = measure()
        if any(o.trained is None for o in outcomes.values()):
            return outcomes
        entry = cache.store(key, lambda folder: _save(outcomes, folder))
    data = json.loads((Path(entry) / _OUTCOMES_FILE).read_text())
    return {label: BitWidthOutcome.from_dict(d) for label, d in data.items()}


def _save(outcomes: dict[str, BitWidthOutcome], folder: Path) -> None:
    (folder / _OUTCOMES_FILE).write_text(json.dumps({k: o.to_dict() for k, o in outcomes.items()}))


def _child(req: dict) -> dict:
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (
        default_n_bit_quantize_scheme as n_bit,
    )

    import qat_harness  # noqa: F401

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


def _line(exc: BaseException) -> str:
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
