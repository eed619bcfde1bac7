"""Long-lived child side of timing two LiteRT runtimes against each other: one such child per
runtime (a process imports one), each holding its models loaded, and the harness asking each in
turn for one block of runs, so that the runtimes' blocks follow the one ABBA schedule
(``core.timing.run_schedule``) as two files' blocks do inside one worker.

Requests, one JSON line each (``core.child.serve_lines``):

* ``{"op": "load", "api": "interpreter" | "compiled", "runtime_root": DIR | null, "models":
  {label: path}, "inputs": {label: npz}, ...the worker's own fields}``: imports LiteRT from
  ``runtime_root``, loads every model, sets its input, times its first invoke; answers with
  ``first_invoke_ms`` and ``runtime`` (the module, file and version really imported);
* ``{"op": "block", "label": L, "runs": N}``: answers ``times_ms``, one per run.

Keep it free of TensorFlow imports."""
from __future__ import annotations

import sys
from typing import Any, Callable

from qat_harness.core import timing
from qat_harness.core.child import serve_lines
from qat_harness.devices.base import load_inputs
from qat_harness.devices.litert import runtime
from qat_harness.devices.litert.compiled_worker import Compiled
from qat_harness.devices.litert.worker import make_interpreter, set_inputs

_loaded: dict[str, Any] = {}


def _loader(req: dict) -> Callable[[str], Any]:
    if req.get("api") == "compiled":
        return lambda path: Compiled(path, req.get("num_threads"), req.get("vendor"))
    return lambda path: make_interpreter(path, req["resolver"], req.get("num_threads"), req.get("delegate"))


def load(req: dict) -> dict:
    runtime.activate(req.get("runtime_root"))
    make = _loader(req)
    first = {}
    for label, path in req["models"].items():
        model = make(path)
        set_inputs(model, [x[:1] for x in load_inputs(req["inputs"][label])])
        first[label] = timing.time_first_invoke(model.invoke)
        _loaded[label] = model
    return {"first_invoke_ms": first, "runtime": runtime.loaded()}


def block(req: dict) -> dict:
    return {"times_ms": timing.time_runs(_loaded[req["label"]].invoke, int(req["runs"]))}


def handle(req: dict, emit) -> dict:
    return {"load": load, "block": block}[req["op"]](req)


if __name__ == "__main__":
    sys.exit(serve_lines(handle))
