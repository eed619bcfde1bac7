"""Child-process side of ``litert`` and ``litert-npu``: LiteRT's CompiledModel API (the runtime
``litert-benchmark`` times) on the CPU accelerator, or on the NPU accelerator through a vendor
dispatch library, with the CPU allowed for what the vendor's compiler plug-in does not take.

Inputs and outputs are matched to the model by tensor index, so they keep the .tflite's input
and output order whatever order its signature lists them in; the schedule is the harness's
one (``core.timing``), each timed run being one ``run_by_index`` on buffers written beforehand,
as ``Interpreter.invoke`` is in ``devices.litert.worker``.

On the NPU, how much of the graph the vendor took is read twice: ``is_fully_accelerated()``,
and LiteRT's own log of the compile (the partitioner's "selected N ops, from a total of M", and
whether the vendor's compiler plug-in was applied at all). The second is kept because LiteRT
says itself (ai_edge_litert/environment.py) that without a compiler plug-in the dispatch loads,
the CPU runs the unpartitioned model, and the model still reads "fully accelerated".

Invoked as ``python -m qat_harness.devices.litert.compiled_worker request.json response.json``;
keep it free of TensorFlow imports.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from qat_harness.core.child import serve_once
from qat_harness.core.tflite import inspect_model
from qat_harness.devices.litert import runtime
from qat_harness.devices.litert.worker import run_examples, time_models

PARTITIONED = re.compile(r"Partitioned subgraph<(\d+)>, selected (\d+) ops, from a total of (\d+) ops\. "
                         r"resulted in (\d+) partitions")
PLUGINS_APPLIED = re.compile(r"(\d+) compiler plugins were applied successfully")
#: what a vendor's compiler or OpenVINO says when it refuses (kept to name the fallback)
REFUSAL = re.compile(r"Plugin errs|Exception from|Unsupported|not supported", re.IGNORECASE)


@contextlib.contextmanager
def _captured_native_log(sink: list[str]) -> Iterator[None]:
    """LiteRT's C++ log goes to file descriptor 2: read it back while the model compiles, and
    pass it on to the real stderr (the parent keeps its tail for errors)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
            os.write(2, text.encode())
            sink.extend(text.splitlines())


def _preload(libraries: list[str]) -> None:
    """Load the vendor runtime's libraries by path before LiteRT opens the dispatch: the dynamic
    loader then finds the dispatch's dependencies (by their names) already loaded, wherever they
    live, without LD_LIBRARY_PATH."""
    for library in libraries:
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)


def _environment(vendor: dict | None):
    import ai_edge_litert
    from ai_edge_litert.environment import Environment, EnvironmentOptions
    runtime = str(Path(ai_edge_litert.__file__).parent)
    if vendor is None:
        # LiteRT discovers the first vendor in its wheel when no folder is given: the CPU
        # accelerator alone is asked for by pointing both at an empty folder
        empty = tempfile.mkdtemp(prefix="no-vendor-")
        return Environment.create(options=EnvironmentOptions(runtime_path=runtime, dispatch_library_path=empty,
                                                             compiler_plugin_path=empty))
    _preload(vendor.get("preload", []))
    return Environment.create(options=EnvironmentOptions(runtime_path=runtime,
                                                         dispatch_library_path=vendor["dispatch_dir"],
                                                         compiler_plugin_path=vendor["compiler_dir"]))


def _options(num_threads: int | None, vendor: dict | None):
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, IntelOpenVinoGraphBackend, IntelOpenVinoOptions, Options

    cpu = CpuOptions(num_threads=int(num_threads or 0))
    if vendor is None:
        return Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu)
    accelerators = HardwareAccelerator.NPU | HardwareAccelerator.CPU  # the CPU takes what the NPU refuses
    if vendor["name"] != "intel_openvino":
        return Options(hardware_accelerators=accelerators, cpu_options=cpu)
    openvino = IntelOpenVinoOptions(graph_backend=IntelOpenVinoGraphBackend[vendor["graph_backend"]],
                                    configs_map=dict(vendor.get("configs", {})))
    return Options(hardware_accelerators=accelerators, cpu_options=cpu, intel_openvino_options=openvino)


class Compiled:
    """One model compiled for the request's accelerator, with buffers in the model's own
    input and output order."""

    def __init__(self, model_path: str, num_threads: int | None, vendor: dict | None):
        from ai_edge_litert.compiled_model import CompiledModel

        self.log: list[str] = []
        with _captured_native_log(self.log):
            self.model = CompiledModel.from_file(model_path, environment=_environment(vendor),
                                                 options=_options(num_threads, vendor))
        info = inspect_model(model_path)
        self.model_ops = info.op_counts()
        key = next(iter(self.model.get_signature_list()))
        ins, outs = self.model.get_input_tensor_details(key), self.model.get_output_tensor_details(key)
        self.inputs = _in_model_order(info.inputs, ins, "input")
        self.outputs = _in_model_order(info.outputs, outs, "output")
        names = list(self.model.get_signature_list()[key]["inputs"])
        out_names = list(self.model.get_signature_list()[key]["outputs"])
        self.in_buffers = self.model.create_input_buffers(0)
        self.out_buffers = self.model.create_output_buffers(0)
        # buffers come in signature order; keep, per model input, the buffer that feeds it
        self.in_order = [names.index(name) for name, _ in self.inputs]
        self.out_order = [out_names.index(name) for name, _ in self.outputs]

    # the Interpreter's tensor methods, so that ``worker.set_inputs``/``get_outputs`` serve both
    def get_input_details(self) -> list[dict]:
        return [{"name": name, "dtype": d["dtype"], "shape": d["shape"], "index": slot}
                for (name, d), slot in zip(self.inputs, self.in_order)]

    def set_tensor(self, slot: int, x: np.ndarray) -> None:
        self.in_buffers[slot].write(np.ascontiguousarray(x).reshape(-1))

    def get_output_details(self) -> list[dict]:
        return [{"name": name, "dtype": d["dtype"], "shape": d["shape"], "index": slot}
                for (name, d), slot in zip(self.outputs, self.out_order)]

    def get_tensor(self, slot: int) -> np.ndarray:
        d = next(d for d in self.get_output_details() if d["index"] == slot)
        return self.out_buffers[slot].read(int(np.prod(d["shape"])), np.dtype(d["dtype"])).reshape(d["shape"])

    def invoke(self) -> None:
        self.model.run_by_index(0, self.in_buffers, self.out_buffers)

    def acceleration(self) -> dict:
        """What the vendor took, from the API and from the compile's own log."""
        parts = [tuple(int(g) for g in m.groups()) for m in map(PARTITIONED.search, self.log) if m]
        applied = [int(m.group(1)) for m in map(PLUGINS_APPLIED.search, self.log) if m]
        return {"fully_accelerated": self.model.is_fully_accelerated(), "model_ops": self.model_ops,
                "ops_selected": sum(p[1] for p in parts) if parts else None,
                "ops_total": sum(p[2] for p in parts) if parts else None,
                "partitions": sum(p[3] for p in parts) if parts else None,
                "plugins_applied": applied[-1] if applied else None,
                "refusals": [line.strip()[:200] for line in self.log if REFUSAL.search(line)][:6]}


def _in_model_order(tensor_indices: list[int], details: dict, what: str) -> list[tuple[str, dict]]:
    by_index = {int(d["index"]): (name, d) for name, d in details.items()}
    missing = [i for i in tensor_indices if i not in by_index]
    if missing or len(by_index) != len(tensor_indices):
        raise ValueError(f"the model's first signature does not list its {what} tensors {missing or tensor_indices}: "
                         "CompiledModel runs a model through its signature")
    return [by_index[i] for i in tensor_indices]


def run_batch(req: dict) -> dict:
    compiled = Compiled(req["model"], req.get("num_threads"), req.get("vendor"))
    n = run_examples(compiled, req["inputs"], req["outputs"])
    return {"ok": True, "n": n, "ops": compiled.acceleration()}


def loader(req: dict) -> Callable[[str], Compiled]:
    """How this worker loads a model file: a CompiledModel, as the request asks."""
    return lambda path: Compiled(path, req.get("num_threads"), req.get("vendor"))


def bench(req: dict) -> dict:
    timed, compiled = time_models(req, loader(req))
    return {**timed, "ops": {label: model.acceleration() for label, model in compiled.items()}}


def handle(req: dict) -> dict:
    runtime.activate(req.get("runtime_root"))
    return {"run": run_batch, "bench": bench}[req["mode"]](req)


if __name__ == "__main__":
    sys.exit(serve_once(handle))
