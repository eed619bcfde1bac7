"""Child-process side of the ``openvino`` device: lists OpenVINO's devices, runs a batch of
inputs through a .tflite model, or times models interleaved. Every request compiles afresh,
so a plugin that crashes or hangs takes only this child down.

Invoked by ``core.child.run_child`` as ``python -m qat_harness.devices.openvino.worker
request.json response.json``. Keep this module free of TensorFlow imports: it must start fast.
"""
from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

from qat_harness.core import timing
from qat_harness.core.child import serve_once
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import load_inputs
from qat_harness.devices.openvino.model_io import ModelIO, example_feeds, read_model_io, to_model_dtype
from qat_harness.devices.openvino.targets import device_family, is_listed

# Lines of OpenVINO's exception text that say where it was raised, not what went wrong.
_LOCATION_PREFIXES = ("Exception from ", "Check '", "FrontEnd API failed with")
_UNSUPPORTED_MARKERS = ("OpConversionFailure", "No translator found", "not supported", "Unsupported")
_PRECISION_PROPERTY = "INFERENCE_PRECISION_HINT"
_DEVICE_FACTS = {"full_device_name": "FULL_DEVICE_NAME",
                 "optimization_capabilities": "OPTIMIZATION_CAPABILITIES",
                 "inference_precision_hint": _PRECISION_PROPERTY,
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
def query(req: dict) -> dict:
    """OpenVINO's version and devices, and for the requested target, the precision a model
    compiled as the device compiles it really computes in (a plugin may not honour the hint:
    a CPU without bf16 instructions computes in f32)."""
    ov = _openvino()
    core = ov.Core()
    available = list(core.available_devices)
    facts = {"version": ov.get_version(), "available_devices": available,
             "devices": {name: device_facts(core, name) for name in available}}
    target = req.get("target")
    if target and is_listed(target, available):
        facts["inference_precision"] = probe_precision(core, target, req.get("num_threads"), req["precision"])
    return facts


def probe_precision(core, target: str, num_threads: int | None, precision: str) -> dict:
    """Compile a one-layer float model with the device's own compile settings and read back
    the precision the compiled model uses."""
    ov = _openvino()
    import openvino.opset13 as ops

    parameter = ops.parameter([1, 4], ov.Type.f32)
    try:
        compiled = core.compile_model(ov.Model([ops.relu(parameter)], [parameter]), target,
                                      compile_config(core, target, num_threads, precision))
    except Exception as exc:  # noqa: BLE001 - reported, the real models will say more
        return {"requested": precision, "used": None, "error": summarize(exc)}
    return precision_facts(core, compiled, target, precision)


def device_facts(core, device: str) -> dict:
    facts = {}
    for key, prop in _DEVICE_FACTS.items():
        try:
            facts[key] = _jsonable(core.get_property(device, prop))
        except Exception:  # noqa: BLE001 - a plugin that lacks the property
            facts[key] = None
    return facts


# -- compile --------------------------------------------------------------------------------
def takes_precision_hint(core, device: str) -> bool:
    try:
        return _PRECISION_PROPERTY in core.get_property(device, "SUPPORTED_PROPERTIES")
    except Exception:  # noqa: BLE001 - a plugin that cannot say
        return False


def compile_config(core, target: str, num_threads: int | None, precision: str) -> dict:
    """Latency mode; the same thread count as LiteRT on the CPU (or the CPU comparison is not
    fair); the requested inference precision wherever the plugin takes the hint (AUTO passes
    both on to the devices it may pick)."""
    ov = _openvino()
    import openvino.properties as props
    import openvino.properties.hint as hints

    config: dict = {hints.performance_mode: hints.PerformanceMode.LATENCY}
    hint = {hints.inference_precision: getattr(ov.Type, precision)}
    threads = {props.inference_num_threads: int(num_threads)} if num_threads else {}
    if target == "AUTO":
        per_device = {family: dict(hint) for family in ("CPU", "GPU")
                      if is_listed(family, list(core.available_devices)) and takes_precision_hint(core, family)}
        if threads:
            per_device["CPU"] = {**per_device.get("CPU", {}), **threads}
        if per_device:
            config[props.device.properties] = per_device
        return config
    if takes_precision_hint(core, target):
        config.update(hint)
    if device_family(target) == "CPU":
        config.update(threads)
    return config


def precision_facts(core, compiled, target: str, precision: str) -> dict:
    """What was asked and what the compiled model reports it computes float layers in (None
    when the plugin does not say, as AUTO's compiled models do not)."""
    try:
        used = _jsonable(compiled.get_property(_PRECISION_PROPERTY))
    except Exception:  # noqa: BLE001
        used = None
    facts = {"requested": precision, "used": used}
    if target != "AUTO" and not takes_precision_hint(core, target):
        facts["note"] = f"the {device_family(target)} plugin takes no inference precision hint"
    return facts


def _port(ports, name: str, kind: str):
    """OpenVINO's input or output port for a .tflite tensor, found by the tensor's name."""
    for port in ports:
        if name in port.get_names():
            return port
    seen = sorted(n for port in ports for n in port.get_names())
    raise DeviceError(f"OpenVINO's view of the model has no {kind} named {name!r} (its {kind}s: "
                      f"{', '.join(seen) or 'unnamed'})", kind="failed")


def compile_model(core, model_path: str, io: ModelIO, target: str, num_threads: int | None, precision: str):
    """Read the .tflite, fix every input to the model's own static shape (batch 1, as LiteRT
    runs it; NPUs need static shapes) and compile it (``compile_config``)."""
    ov = _openvino()
    try:
        model = core.read_model(model_path)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and frontend types
        raise openvino_error(exc, "read the model") from None
    shapes = {_port(model.inputs, spec.name, "input"): ov.PartialShape(list(spec.shape)) for spec in io.inputs}
    try:
        model.reshape(shapes)
    except Exception as exc:  # noqa: BLE001
        raise openvino_error(exc, "read the model") from None
    try:
        return core.compile_model(model, target, compile_config(core, target, num_threads, precision))
    except Exception as exc:  # noqa: BLE001
        raise openvino_error(exc, f"compile the model for {target}") from None


def execution_facts(core, compiled, io: ModelIO, target: str, precision: str) -> dict:
    """Where and in which precision the compiled model runs. The CPU plugin's runtime graph
    names each executed layer's type and runtime precision (u8/i8 = integer kernels); OpenVINO
    renames the graph while converting it, so layers cannot be matched one to one with the
    .tflite ops."""
    facts: dict = {"ops_total": io.ops_total,
                   "inference_precision": precision_facts(core, compiled, target, precision)}
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
def _unbatched(values: np.ndarray) -> np.ndarray:
    """One example's output without its batch axis of 1, as the LiteRT worker gives it."""
    return values[0] if values.shape[:1] == (1,) else values


def run(req: dict) -> dict:
    """Every example through the model: inputs fed by tensor name, every output returned in
    the model's output order (``out_0``, ``out_1``, ... as the LiteRT worker writes them)."""
    io = read_model_io(req["model"])
    feeds = example_feeds(load_inputs(req["inputs"]), io)
    core = _openvino().Core()
    compiled = compile_model(core, req["model"], io, req["target"], req.get("num_threads"), req["precision"])
    inputs = {spec.name: _port(compiled.inputs, spec.name, "input") for spec in io.inputs}
    outputs = [_port(compiled.outputs, spec.name, "output") for spec in io.outputs]
    request = compiled.create_infer_request()
    try:
        rows = []
        for feed in feeds:
            result = request.infer({inputs[name]: x for name, x in feed.items()})
            rows.append([_unbatched(result[port]) for port in outputs])
    except Exception as exc:  # noqa: BLE001
        raise openvino_error(exc, "run the model") from None
    saved, requantized = {}, []
    for k, spec in enumerate(io.outputs):
        saved[f"out_{k}"], note = to_model_dtype(np.stack([row[k] for row in rows]), spec)
        if note:
            requantized.append(f"output {spec.name!r}: {note}")
    np.savez(req["outputs"], **saved)  # type: ignore[arg-type]  # numpy stub: **arrays read as allow_pickle
    return {"n": len(feeds), "requantized": requantized,
            "execution": execution_facts(core, compiled, io, req["target"], req["precision"])}


def bench(req: dict) -> dict:
    """Every model compiled with its inputs set once (a timed run is one synchronous
    inference), its first inference timed, then the harness's one schedule (``core.timing``:
    ABBA blocks on the same input)."""
    ov = _openvino()
    core = ov.Core()
    labels = list(req["models"])
    requests, execution, first = {}, {}, {}
    for label in labels:
        io = read_model_io(req["models"][label])
        feed = example_feeds([x[:1] for x in load_inputs(req["inputs"][label])], io)[0]
        compiled = compile_model(core, req["models"][label], io, req["target"], req.get("num_threads"),
                                 req["precision"])
        requests[label] = compiled.create_infer_request()
        for name, x in feed.items():
            requests[label].set_tensor(_port(compiled.inputs, name, "input"), ov.Tensor(np.ascontiguousarray(x)))
        execution[label] = execution_facts(core, compiled, io, req["target"], req["precision"])
        first[label] = timing.time_first_invoke(requests[label].infer)
    timed = timing.time_blocks({label: functools.partial(requests[label].infer, share_outputs=True)
                                for label in labels}, timing.Schedule.from_request(req))
    return {**timed, "first_invoke_ms": first, "execution": execution}


HANDLERS = {"query": query, "run": run, "bench": bench}


def handle(req: dict) -> dict:
    return HANDLERS[req["mode"]](req)


if __name__ == "__main__":
    sys.exit(serve_once(handle, describe=summarize))
