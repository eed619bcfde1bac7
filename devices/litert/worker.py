"""Child-process side of the LiteRT adapters: loads models with ai-edge-litert (or the
tflite_runtime fallback) and either runs a batch of inputs or times models on the
harness's one schedule (``bench``, ``core.timing``).

Invoked as ``python -m qat_harness.devices.litert.worker request.json response.json``; see
``core.child``. A request's ``runtime_root`` loads LiteRT from that folder
(``devices.litert.runtime``). Keep this module free of TensorFlow imports: it must start fast.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from qat_harness.core import timing
from qat_harness.core.child import serve_once
from qat_harness.devices.base import load_inputs
from qat_harness.devices.litert import runtime


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter as litert
        return litert, "ai-edge-litert"
    except ImportError as first:  # optional fallback, e.g. a numpy-1 environment with tflite_runtime
        try:
            from tflite_runtime import interpreter as litert  # type: ignore
        except ImportError:
            raise first from None   # why ai_edge_litert failed, not that the fallback is absent
        return litert, "tflite_runtime"


def make_interpreter(model_path: str, resolver: str, num_threads: int | None,
                     delegate: dict | None = None):
    litert, _ = _interpreter_module()
    kwargs: dict[str, Any] = {"model_path": model_path}
    if num_threads:
        kwargs["num_threads"] = num_threads
    if resolver == "ref":
        kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_REF
    elif resolver == "builtin-no-delegates":
        kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if delegate:
        kwargs["experimental_delegates"] = [
            litert.load_delegate(delegate["library"], delegate.get("options", {}))]
    interp = litert.Interpreter(**kwargs)
    interp.allocate_tensors()
    return interp


def set_inputs(interp, example: list[np.ndarray]) -> None:
    """Every input tensor gets its own array, in the model's input order, in the dtype the
    tensor takes: a missing input or a dtype the model does not take is an error, never a
    silent cast that would give wrong answers."""
    details = interp.get_input_details()
    if len(example) != len(details):
        raise ValueError(f"the model takes {len(details)} input(s), {len(example)} given")
    for d, x in zip(details, example):
        want = np.dtype(d["dtype"])
        if x.dtype != want:
            raise ValueError(f"input '{d['name']}' takes {want.name}, got {x.dtype.name}")
        if x.size != int(np.prod(d["shape"])):
            raise ValueError(f"input '{d['name']}' has shape {list(d['shape'])}, got {list(x.shape)}")
        interp.set_tensor(d["index"], x.reshape(d["shape"]))


def get_outputs(interp) -> list[np.ndarray]:
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def run_examples(interp, inputs_path: str, outputs_path: str) -> int:
    """Every example of the inputs file, one invoke each, outputs saved as ``out_0``, ``out_1``, ...
    ``interp`` is anything with the Interpreter's tensor methods (``compiled_worker.Compiled`` too)."""
    inputs = load_inputs(inputs_path)
    n = len(inputs[0]) if inputs else 0
    if n == 0 or any(len(x) != n for x in inputs):
        raise ValueError(f"no examples to run, or inputs of different lengths {[len(x) for x in inputs]}")
    rows: list[list[np.ndarray]] = []
    for i in range(n):
        set_inputs(interp, [x[i:i + 1] for x in inputs])
        interp.invoke()
        rows.append([o[0] if o.shape[:1] == (1,) else o for o in get_outputs(interp)])
    outputs = {f"out_{k}": np.stack([row[k] for row in rows]) for k in range(len(rows[0]))} if rows else {}
    np.savez(outputs_path, **outputs)  # type: ignore[arg-type]  # numpy stub: **arrays read as allow_pickle
    return int(n)


def run_batch(req: dict) -> dict:
    interp = make_interpreter(req["model"], req["resolver"], req.get("num_threads"), req.get("delegate"))
    n = run_examples(interp, req["inputs"], req["outputs"])
    return {"ok": True, "n": n, "ops": _ops_summary(interp)}


def _ops_summary(interp) -> dict:
    """Which of the model's ops a delegate (XNNPACK by default) took.

    After delegation the node list holds the original ops plus one DELEGATE node per
    partition; the replaced originals stay listed. A partition's ops are found by walking
    back from the DELEGATE node's output tensors through their producers until reaching the
    DELEGATE node's input tensors."""
    try:
        details = interp._get_ops_details()  # noqa: SLF001 - the only way to see the graph
    except Exception:  # noqa: BLE001 - absent on older runtimes
        return {}
    original = [d for d in details if d.get("op_name") != "DELEGATE"]
    producer = {int(t): d["index"] for d in original for t in d["outputs"]}
    by_index = {d["index"]: d for d in original}
    delegated: set[int] = set()
    partitions = [d for d in details if d.get("op_name") == "DELEGATE"]
    for part in partitions:
        boundary = {int(t) for t in part["inputs"]}
        stack = [int(t) for t in part["outputs"]]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node in delegated:
                continue
            delegated.add(node)
            stack += [int(t) for t in by_index[node]["inputs"] if int(t) not in boundary and int(t) >= 0]
    return {"ops_total": len(original), "partitions": len(partitions),
            "delegated": sorted(delegated),
            "delegated_ops": [by_index[i]["op_name"] for i in sorted(delegated)],
            "cpu_ops": [d["op_name"] for d in original if d["index"] not in delegated]}


def load_models(req: dict, load: Callable[[str], Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Every model of the request loaded (``load(path)``) with its input set, and its first
    invoke timed: the loaded models and the first invokes, by label."""
    models, first = {}, {}
    for label, path in req["models"].items():
        models[label] = load(path)
        set_inputs(models[label], [x[:1] for x in load_inputs(req["inputs"][label])])
        first[label] = timing.time_first_invoke(models[label].invoke)
    return models, first


def time_models(req: dict, load: Callable[[str], Any]) -> tuple[dict, dict[str, Any]]:
    """Every model loaded (``load_models``), then the harness's one schedule (``core.timing``:
    ABBA blocks on the same input). Returns the timings and the loaded models by label."""
    interps, first = load_models(req, load)
    timed = timing.time_blocks({label: interp.invoke for label, interp in interps.items()},
                               timing.Schedule.from_request(req))
    return {**timed, "first_invoke_ms": first}, interps


def loader(req: dict) -> Callable[[str], Any]:
    """How this worker loads a model file: LiteRT's Interpreter, as the request asks."""
    return lambda path: make_interpreter(path, req["resolver"], req.get("num_threads"), req.get("delegate"))


def bench(req: dict) -> dict:
    timed, interps = time_models(req, loader(req))
    return {**timed, "ops": {label: _ops_summary(interp) for label, interp in interps.items()}}


def handle(req: dict) -> dict:
    runtime.activate(req.get("runtime_root"))
    return {"run": run_batch, "bench": bench}[req["mode"]](req)


if __name__ == "__main__":
    sys.exit(serve_once(handle))
