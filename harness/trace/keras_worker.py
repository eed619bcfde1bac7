"""Child side of the trace's Keras stage: rebuild the QAT Keras model (the build's source,
tfmot's default scheme, the weights the build saved) and save the outputs of the layers asked
for on a fixed set of inputs: the fake-quant values the int8 file should reproduce.

Invoked as ``python -P -m qat_harness.trace.keras_worker request.json response.json`` through
``core.child.run_child`` (Keras 2 lives in the child only).

Request: ``source`` (the builder's source request), ``weights`` (``qat_keras.weights.h5``),
``inputs`` (.npz with ``in_0``, ``in_1``, ... float arrays, examples first, in the model's
input order), ``layers`` (Keras layer names, ``quant_`` stripped), ``model_outputs`` (how many
of the model's outputs to save too), ``out`` (.npz to write: ``layer_<i>`` for the i-th name
found, ``output_<j>`` for the model's outputs). Response: ``found`` (name -> key) and
``missing`` (names the QAT model has no single-output layer for) and ``output_layers`` (names
whose output is a model output: their value is the model output's, not saved twice).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np

from qat_harness.core import keras2
from qat_harness.core.child import serve_once
from qat_harness.core.errors import UsageError
from qat_harness.devices.base import load_inputs

QUANT_PREFIX = "quant_"


@dataclasses.dataclass(frozen=True)
class LayerRequest:
    """What the parent asks (``capture.keras_values``), as the JSON the child reads."""
    source: dict                        # the builder's source request, in ``build.builder``'s form
    weights: str
    inputs: str
    out: str
    layers: list[str]
    model_outputs: int = 0


@dataclasses.dataclass
class LayerResponse:
    """What the child answers: the layers found (name -> key in the .npz), the ones missing,
    and the ones whose output is a model output."""
    found: dict[str, str]
    missing: list[str] = dataclasses.field(default_factory=list)
    output_layers: list[str] = dataclasses.field(default_factory=list)


def _layer(model, name: str):
    for candidate in (QUANT_PREFIX + name, name):
        try:
            return model.get_layer(candidate)
        except ValueError:
            continue
    return None


def _single_output(layer):
    """The layer's output tensor when it is called once with one output, else None."""
    try:
        out = layer.output
    except AttributeError:  # called more than once (shared layer): no single value to trace
        return None
    return None if isinstance(out, (list, tuple)) else out


def layer_outputs(request: dict) -> dict:
    req = LayerRequest(**request)
    keras2.enter()
    import tf_keras as keras

    from qat_harness.build import training
    from qat_harness.build.builder import build_model

    keras.utils.set_random_seed(0)
    model, _, _ = build_model(req.source)
    qat = training.quantize(model)
    qat.load_weights(req.weights)
    inputs = load_inputs(req.inputs)

    tensors: list[Any]  # Keras symbolic tensors
    found, missing, tensors, output_layers = {}, [], [], []
    model_outputs = {id(t) for t in qat.outputs}
    for name in req.layers:
        layer = _layer(qat, name)
        out = _single_output(layer) if layer is not None else None
        if out is None:
            missing.append(name)
            continue
        if id(out) in model_outputs:
            # e.g. Dense(activation="softmax"): the Keras value is after the activation, which
            # the converter splits into its own op, the model output
            output_layers.append(name)
            continue
        found[name] = f"layer_{len(tensors)}"
        tensors.append(out)
    n_outputs = min(req.model_outputs, len(qat.outputs))
    outputs = list(qat.outputs[:n_outputs])
    probe = keras.Model(qat.inputs, tensors + outputs)
    values = probe.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=len(inputs[0]), verbose=0)
    values = values if isinstance(values, list) else [values]
    arrays = {f"layer_{i}": np.asarray(v) for i, v in enumerate(values[:len(tensors)])}
    arrays.update({f"output_{j}": np.asarray(v) for j, v in enumerate(values[len(tensors):])})
    np.savez(req.out, **arrays)  # type: ignore[arg-type]  # numpy stub: **arrays read as allow_pickle
    return dataclasses.asdict(LayerResponse(found, missing, output_layers))


def handle(req: dict) -> dict:
    try:
        return layer_outputs(req)
    except UsageError as exc:
        return {"error": str(exc), "kind": "usage"}


if __name__ == "__main__":
    sys.exit(serve_once(handle))
