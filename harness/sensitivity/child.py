"""Child side of the sensitivity analysis (Keras 2 lives only here): a long-lived child
(``core.child.ServingChild``) that holds one float model and answers, on request:

- ``load``: build the source's float model (trained in float as the harness's builder does
  when the plan says so), write its float .tflite, list its quantizable units;
- ``quick``: each unit's quantization error on its own (weights as tfmot quantizes them,
  its output per tensor on a few inputs), without any QAT: the order the budget follows;
- ``evaluate``: the QAT model with some units kept in float (and, for "only this one",
  everything else float too), its ranges calibrated, predicted on the evaluation inputs;
- ``build``: the harness's full-int8 QAT arm and the QAT model with the kept units in float,
  both fine-tuned like the QAT arm, converted to .tflite.

Predictions go back as .npz files; the parent measures them (``sensitivity.measure``).
Started as ``python -P -m qat_harness.sensitivity.child`` (``core.child``)."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qat_harness.core import keras2
from qat_harness.core.child import serve_lines
from qat_harness.core.errors import one_line

#: examples whose unit outputs the quick pass quantizes
QUICK_EXAMPLES = 64


@dataclasses.dataclass
class _Held:
    model: Any  # a tf_keras.Model
    data: dict
    plan: dict
    units: list
    from_logits: bool


_STATE: dict[str, _Held] = {}


def _held() -> _Held:
    if "model" not in _STATE:
        raise RuntimeError("no model loaded: send 'load' first")
    return _STATE["model"]


def _x(held: _Held, split: str):
    from qat_harness.build.builder import _inputs

    return _inputs(held.data, f"x_{split}")


def load(req: dict) -> dict:
    from qat_harness.build import convert, partial_qat, training
    from qat_harness.build.builder import _first, _inputs, _load_data, load_source

    data = _load_data(req["data"])
    plan = req["plan"]
    model = load_source(req["source"]).model
    if plan["float_epochs"]:
        training.train_float(model, _inputs(data, "x_train"), data.get("y_train"), plan["float_epochs"],
                             plan["batch_size"], plan["lr"], plan["seed"])
    x_train = _inputs(data, "x_train")
    x_eval = _inputs(data, "x_eval")
    calibration = x_train if x_train is not None else x_eval
    from_logits = bool(x_train is not None and training.outputs_are_logits(model, _first(x_train, 32)))
    found = partial_qat.units(model)
    _STATE["model"] = _Held(model, data, plan, found, from_logits)
    Path(req["float_out"]).write_bytes(convert.to_tflite(model, False, _first(calibration, 100)))
    _save(req["predictions"], partial_qat.predict(model, x_eval))
    return {"units": [dataclasses.asdict(u) for u in found]}


def _save(path: str | Path, outputs: list[np.ndarray]) -> None:
    """Every output, as ``output_<i>`` (``service.read_outputs`` reads them back)."""
    np.savez(path, **{f"output_{i}": o for i, o in enumerate(outputs)})  # type: ignore[arg-type]  # numpy stub


def quick(req: dict) -> dict:
    """Per unit, on a few evaluation inputs: the SQNR (dB) of its layer's output when only its
    weights are quantized as tfmot does (per output channel for convolutions, per tensor
    otherwise: measured on the output, where a weight outlier's cost shows, not on the weights,
    whose energy the outlier itself dominates), and of its unit's output quantized to 8 bits
    per tensor."""
    import tf_keras as keras

    from qat_harness.build.builder import _first
    from qat_harness.measure.difference import output_difference

    held = _held()
    model = held.model
    per_channel = {"Conv2D", "DepthwiseConv2D", "Conv1D", "Conv3D"}
    anchors = [model.get_layer(u.name) for u in held.units]
    tensors = [t for u, layer in zip(held.units, anchors)
               for t in (layer.input, model.get_layer(u.layers[-1]).output)]
    values = keras.Model(model.inputs, tensors).predict(_first(_x(held, "eval"), QUICK_EXAMPLES), verbose=0)
    result = []
    for i, (unit, layer) in enumerate(zip(held.units, anchors)):
        layer_input, unit_output = values[2 * i], np.asarray(values[2 * i + 1], dtype=np.float64)
        weights = layer.get_weights()
        reference = np.asarray(layer(layer_input), dtype=np.float64)
        axis = -2 if unit.layer_class == "DepthwiseConv2D" else -1
        quantized = _fake_quant_symmetric(weights[0], axis if unit.layer_class in per_channel else None)
        layer.set_weights([quantized.astype(weights[0].dtype), *weights[1:]])
        try:
            with_quantized_weights = np.asarray(layer(layer_input), dtype=np.float64)
        finally:
            layer.set_weights(weights)
        result.append({"unit": unit.name,
                       "weight_sqnr_db": output_difference(with_quantized_weights, reference).sqnr_db,
                       "output_sqnr_db": output_difference(_fake_quant_asymmetric(unit_output), unit_output).sqnr_db})
    return {"errors": result}


def _fake_quant_symmetric(w: np.ndarray, axis: int | None) -> np.ndarray:
    """tfmot's weight quantization: symmetric, narrow range (-127..127), per tensor or along
    ``axis``."""
    if axis is None:
        top = np.max(np.abs(w))
    else:
        other = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
        top = np.max(np.abs(w), axis=other, keepdims=True)
    scale = np.where(top > 0, top / 127.0, 1.0)
    return np.clip(np.round(w / scale), -127, 127) * scale


def _fake_quant_asymmetric(a: np.ndarray) -> np.ndarray:
    """An activation quantized to 8 bits over its own range (which includes 0)."""
    low, high = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(a / scale) + zero, 0, 255) - zero) * scale


def evaluate(req: dict) -> dict:
    from qat_harness.build import partial_qat

    held = _held()
    t0 = time.perf_counter()
    qat = partial_qat.quantize_except(held.model, req["keep"], held.units, req["quantize_others"])
    x_train = _x(held, "train")
    partial_qat.calibrate(qat, x_train if x_train is not None else _x(held, "eval"))
    _save(req["predictions"], partial_qat.predict(qat, _x(held, "eval")))
    return {"seconds": time.perf_counter() - t0}


def build(req: dict) -> dict:
    """The full-int8 QAT arm (``training.quantize``, converted full-integer like the builder's
    ``qat_int8``) and the QAT model with ``keep`` in float, fine-tuned alike."""
    from qat_harness.build import convert, partial_qat, training
    from qat_harness.build.builder import _first

    held, plan, out = _held(), _held().plan, Path(req["out"])
    x_train, y_train = _x(held, "train"), held.data.get("y_train")
    x_eval = _x(held, "eval")
    calibration = x_train if x_train is not None else x_eval
    made = {}
    for label, keep in (("qat_int8", []), ("qat_mixed", req["keep"])):
        qat = training.quantize(held.model) if not keep else partial_qat.quantize_except(held.model, keep, held.units)
        if plan["qat_epochs"] and y_train is not None:
            training.fine_tune_qat(qat, x_train, y_train, plan["qat_epochs"], plan["batch_size"], plan["qat_lr"],
                                   plan["seed"], held.from_logits)
            how = f"fine-tuned {plan['qat_epochs']} epoch(s) like the QAT arm"
        else:
            partial_qat.calibrate(qat, calibration)
            how = "ranges calibrated on inputs (no training data)"
        kept_layers = [name for u in held.units if u.name in keep for name in u.layers]
        blob = (convert.to_tflite(qat, True, _first(calibration, 100)) if not keep
                else partial_qat.to_mixed_tflite(qat, _first(calibration, 100), kept_layers))
        path = out / f"{label}.tflite"
        path.write_bytes(blob)
        _save(out / f"{label}_keras.npz", partial_qat.predict(qat, x_eval))
        made[label] = {"file": str(path), "keras_predictions": str(out / f"{label}_keras.npz"), "training": how}
    return {"built": made}


OPS = {"load": load, "quick": quick, "evaluate": evaluate, "build": build}


def handle(req: dict, emit) -> dict:
    try:
        return OPS[req["op"]](req)
    except Exception as exc:  # noqa: BLE001 - reported to the parent in one line
        from qat_harness.core.errors import UsageError

        kind = "usage" if isinstance(exc, UsageError) else "failed"
        return {"error": one_line(exc), "kind": kind}


if __name__ == "__main__":
    keras2.enter()
    sys.exit(serve_lines(handle))
