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
from typing import Any

from qat_harness.core import timing
from qat_harness.core.child import serve_lines
from qat_harness.devices.litert import compiled_worker, runtime, worker

_loaded: dict[str, Any] = {}
#: the worker whose loader each ``api`` uses, so that a model is loaded here as it is there
LOADERS = {"interpreter": worker.loader, "compiled": compiled_worker.loader}


def load(req: dict) -> dict:
    runtime.activate(req.get("runtime_root"))
    models, first = worker.load_models(req, LOADERS[req.get("api", "interpreter")](req))
    _loaded.update(models)
    return {"first_invoke_ms": first, "runtime": runtime.loaded()}


def block(req: dict) -> dict:
    return {"times_ms": timing.time_runs(_loaded[req["label"]].invoke, int(req["runs"]))}


def handle(req: dict, emit) -> dict:
    return {"load": load, "block": block}[req["op"]](req)


if __name__ == "__main__":
    sys.exit(serve_lines(handle))
