"""Child-process side of the ``openvino`` device: lists OpenVINO's devices, runs a batch of
inputs through a .tflite model, or times models interleaved. Every request compiles afresh,
so a plugin that crashes or hangs takes only this child down.

Invoked by ``core.child.run_child`` as ``python -m qat_harness.devices.openvino.worker
request.json response.json``. Keep this module free of TensorFlow imports: it must start fast.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from qat_harness.core.child import serve_once
from qat_harness.core.errors import DeviceError
from qat_harness.devices.openvino.model_io import ModelIO, examples, read_model_io, to_model_dtype
from qat_harness.devices.openvino.targets import device_family

# Lines of OpenVINO's exception text that say where it was raised, not what went wrong.
_LOCATION_PREFIXES = ("Exception from ", "Check '", "FrontEnd API failed with")
_UNSUPPORTED_MARKERS = ("OpConversionFailure", "No translator found", "not supported", "Unsupported")
_DEVICE_FACTS = {"full_device_name": "FULL_DEVICE_NAME",
                 "optimization_capabilities": "OPTIMIZATION_CAPABILITIES",
                 "inference_precision_hint": "INFERENCE_PRECISION_HINT",
                 "architecture": "DEVICE_ARCHITECTURE"}
_NOT_COMPUTE_LAYERS = ("Input", "Output", "Const")


def _openvino():
    import openvino
    return openvino


def summarize(exc: BaseException) -> str:
    """One line: the first line of an OpenVINO exception that says what failed."""
    if isinstance(exc, DeviceError):
        return exc.reason
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_LOCATION_PREFIXES)]
    return (meaningful or lines or [type(exc).__name__])[0][:300]


def openvino_error(exc: BaseException, stage: str) -> DeviceError:
    text = str(exc)
    kind = "unsupported" if any(marker in text for marker in _UNSUPPORTED_MARKERS) else "failed"
    return DeviceError(f"OpenVINO could not {stage}: {summarize(exc)}", kind=kind)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    to_string = getattr(value, "to_string", None)  # ov.Type -> 'f32'
    return to_string() if callable(to_string) else str(value)


# -- query ----------------------------------------------------------------------------------
def query(_req: dict) -> dict:
    ov = _openvino()
    core = ov.Core()
    available = list(core.available_devices)
    return {"version": ov.get_version(), "available_devices": available,
            "devices": {name: device_facts(core, name) for name in available}}


def device_facts(core, device: str) -> dict:
    facts = {}
    for key, prop in _DEVICE_FACTS.items():
        try:
            facts[key] = _jsonable(core.get_property(device, prop))
        except Exception:  # noqa: BLE001 - a plugin that lacks the property
            facts[key] = None
    return facts


# -- compile --------------------------------------------------------------------------------
def compile_model(core, model_path: str, io: ModelIO, target: str, num_threads: int | None):
    """Read the .tflite, fix its input to the model's own static shape (batch 1, as LiteRT
    runs it; NPUs need static shapes) and compile it for latency."""
    ov = _openvino()
    import openvino.properties as props
    import openvino.properties.hint as hints

    try:
        model = core.read_model(model_path)
        model.reshape({model.inputs[0]: ov.PartialShape(list(io.input.shape))})
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and frontend types
        raise openvino_error(exc, "read the model") from None
    config: dict = {hints.performance_mode: hints.PerformanceMode.LATENCY}
    # same thread count as LiteRT, or the CPU comparison is not fair
    if num_threads and device_family(target) == "CPU":
        config[props.inference_num_threads] = int(num_threads)
    elif num_threads and target == "AUTO":
        config[props.device.properties] = {"CPU": {props.inference_num_threads: int(num_threads)}}
    try:
        return core.compile_model(model, target, config)
    except Exception as exc:  # noqa: BLE001
        raise openvino_error(exc, f"compile the model for {target}") from None


def execution_facts(compiled, io: ModelIO) -> dict:
    """Where and in which precision the compiled model runs. The CPU plugin's runtime graph
    names each executed layer's type and runtime precision (u8/i8 = integer kernels); OpenVINO
    renames the graph while converting it, so layers cannot be matched one to one with the
    .tflite ops."""
    facts: dict = {"ops_total": io.ops_total}
    try:
        facts["execution_devices"] = _jsonable(compiled.get_property("EXECUTION_DEVICES"))
    except Exception:  # noqa: BLE001
        facts["execution_devices"] = None
    try:
        layers_by_precision: dict[str, list[str]] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str)
            if layer not in _NOT_COMPUTE_LAYERS:
                layers_by_precision.setdefault(info["runtimePrecision"].astype(str), []).append(layer)
        facts["runtime_layers_by_precision"] = layers_by_precision
    except Exception:  # noqa: BLE001 - plugins other than CPU may not fill these rt_info keys
        facts["runtime_layers_by_precision"] = None
    return facts


# -- run and bench --------------------------------------------------------------------------
def run(req: dict) -> dict:
    io = read_model_io(req["model"])
    batch = examples(np.load(req["inputs"], allow_pickle=False), io.input)
    core = _openvino().Core()
    compiled = compile_model(core, req["model"], io, req["target"], req.get("num_threads"))
    request = compiled.create_infer_request()
    try:
        raw = [request.infer({0: x})[0][0] for x in batch]
    except Exception as exc:  # noqa: BLE001
        raise openvino_error(exc, "run the model") from None
    stacked = np.stack(raw) if raw else np.empty((0, *io.output.shape[1:]), io.output.dtype)
    outputs, requantized = to_model_dtype(stacked, io.output)
    np.save(req["outputs"], outputs, allow_pickle=False)
    return {"n": len(batch), "requantized": requantized, "execution": execution_facts(compiled, io)}


def bench(req: dict) -> dict:
    """Interleaved timing as LiteRT's worker: a, b, a, b, ... on the same input until every
    model has ``min_runs`` runs and ``min_seconds`` have passed (or ``max_runs``). The input is
    set once, so a timed run is one synchronous inference."""
    ov = _openvino()
    core = ov.Core()
    labels = list(req["models"])
    requests, execution, first = {}, {}, {}
    for label in labels:
        io = read_model_io(req["models"][label])
        (x,) = examples(np.load(req["inputs"][label], allow_pickle=False)[:1], io.input)
        compiled = compile_model(core, req["models"][label], io, req["target"], req.get("num_threads"))
        requests[label] = compiled.create_infer_request()
        requests[label].set_input_tensor(ov.Tensor(np.ascontiguousarray(x)))
        execution[label] = execution_facts(compiled, io)
        t0 = time.perf_counter()
        requests[label].infer()
        first[label] = (time.perf_counter() - t0) * 1e3
    for _ in range(req["warmup_runs"]):
        for label in labels:
            requests[label].infer(share_outputs=True)
    times: dict[str, list[float]] = {label: [] for label in labels}
    start = time.perf_counter()
    n = 0
    while n < req["max_runs"] and (n < req["min_runs"] or time.perf_counter() - start < req["min_seconds"]):
        for label in labels:
            t0 = time.perf_counter()
            requests[label].infer(share_outputs=True)
            times[label].append((time.perf_counter() - t0) * 1e3)
        n += 1
    return {"times_ms": times, "first_invoke_ms": first, "execution": execution}


HANDLERS = {"query": query, "run": run, "bench": bench}


def handle(req: dict) -> dict:
    return HANDLERS[req["mode"]](req)


if __name__ == "__main__":
    sys.exit(serve_once(handle, describe=summarize))
