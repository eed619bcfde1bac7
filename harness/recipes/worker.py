"""Child-process side of ``recipes.catalog``: applies one named recipe to a float .tflite with
``ai-edge-quantizer`` and writes the quantized file.

Invoked as ``python -m qat_harness.recipes.worker request.json response.json`` through
``core.child.run_child``. Request: ``float`` (path), ``recipe`` (a catalog name), ``out``
(where to write), ``prepared`` (where to write the float file the quantizer reads),
``calibration`` (an .npz of examples, one array ``arr_<i>`` per model input in the .tflite's
input order, static recipes only). The float file is first made into what the
quantizer takes (``recipes.prepare``: a serving signature added, float16 weights widened), and
the response lists what was changed. Keep this module free of TensorFlow imports: the quantizer
does not need it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from qat_harness.core import tflite
from qat_harness.core.child import serve_once
from qat_harness.recipes.prepare import NotPreparable, prepare


class Refused(Exception):
    kind = "failed"


def quantizer_recipe(name: str):
    """The ai-edge-quantizer recipe object for a catalog name."""
    from ai_edge_quantizer import recipe

    if name == "fp16-weights":
        # float16 weights through the quantizer's float-casting algorithm; the weights are
        # dequantized to float32 before each (float) kernel.
        return [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True}}]
    functions = {"int4-weight": recipe.weight_only_wi4_afp32,
                 "int4-dynamic": recipe.dynamic_wi4_afp32,
                 "int4-blockwise": recipe.dynamic_wi4b32_afp32,
                 "16x8": recipe.static_wi8_ai16,
                 "int8-static": recipe.static_wi8_ai8,
                 "int8-dynamic": recipe.dynamic_wi8_afp32}
    if name not in functions:
        raise Refused(f"unknown recipe '{name}'")
    return functions[name]()


def _calibration_data(float_path: str, cal_path: str) -> dict:
    """The quantizer's calibration input: {signature: [{input name: one example}, ...]}, each
    input's examples from the array of its position in the .tflite's inputs."""
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_path=float_path)
    signatures = interp.get_signature_list()
    if not signatures:
        raise Refused("the float model has no serving signature to calibrate through")
    sig = next(iter(signatures))
    runner = interp.get_signature_runner(sig)
    wanted = runner.get_input_details()
    position = {d["index"]: i for i, d in enumerate(interp.get_input_details())}
    with np.load(cal_path, allow_pickle=False) as npz:
        arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    if len(arrays) != len(wanted):
        raise Refused(f"the model takes {len(wanted)} input(s), the calibration data has {len(arrays)}")
    n = min(len(a) for a in arrays)
    examples: list[dict] = [{} for _ in range(n)]
    for name, want in wanted.items():
        # the input's own dtype: an Embedding model takes int32 token ids, not floats
        x = arrays[position[want["index"]]].astype(np.dtype(want["dtype"]))
        shape = [1, *list(want["shape"])[1:]]
        for i in range(n):
            examples[i][name] = x[i:i + 1].reshape(shape)
    return {sig: examples}


def handle(req: dict) -> dict:
    from ai_edge_quantizer import quantizer

    try:
        prepared = prepare(Path(req["float"]).read_bytes())
    except (NotPreparable, tflite.InvalidModel) as exc:
        raise Refused(f"the float file cannot be quantized: {exc}") from None
    source = Path(req["prepared"])  # the parent's to remove
    source.write_bytes(prepared.model)
    try:
        q = quantizer.Quantizer(str(source), quantizer_recipe(req["recipe"]))
        if q.need_calibration:
            if not req.get("calibration"):
                raise Refused("the recipe needs calibration data and none was given")
            result = q.quantize(q.calibrate(_calibration_data(str(source), req["calibration"])))
        else:
            result = q.quantize()
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - the quantizer's refusal, said in one line
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise Refused(f"ai-edge-quantizer refused: {type(exc).__name__}: {text}"[:300]) from None
    blob = result.quantized_model
    if blob is None:
        raise Refused("ai-edge-quantizer produced no model")
    Path(req["out"]).write_bytes(bytes(blob))
    return {"ok": True, "size_bytes": len(blob), "prepared": prepared.changes}


if __name__ == "__main__":
    sys.exit(serve_once(handle))
