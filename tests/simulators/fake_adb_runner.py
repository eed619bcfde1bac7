"""Child process of the fake adb server (test suite only): executes the .tflite files the
fake phone's ``benchmark_model`` is asked to run, on the host CPU with LiteRT, and times them
with benchmark_model's loop rules (at least N runs and at least S seconds, at most M seconds).

One long-lived process per fake device, so the suite does not pay a Python + LiteRT start per
invocation; a runtime that aborts kills only this child (the fake server reports the signal
as a shell would and starts a new one).

Protocol: one JSON request per stdin line; one reply per stdout line, prefixed with
``@@runner `` so stray output from native code can never be mistaken for a reply.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from qat_harness.devices.litert.worker import make_interpreter

REPLY = "@@runner "
_cache: dict[tuple, object] = {}


def _interpreter(model: str, threads: int):
    """(interpreter with LiteRT's default CPU path, the graph's op names, any int8 tensor)."""
    import os
    st = os.stat(model)
    key = (model, st.st_mtime_ns, st.st_size, threads)
    if key not in _cache:
        _cache.clear()  # one model at a time is all a test needs
        # the op list comes from a plan without XNNPACK's partitions: one name per node
        plain = make_interpreter(model, "builtin-no-delegates", 1)
        ops = [d.get("op_name", "?") for d in plain._get_ops_details()]  # noqa: SLF001
        has_int8 = any(np.dtype(t["dtype"]) == np.int8 for t in plain.get_tensor_details())
        _cache[key] = (make_interpreter(model, "auto", threads if threads > 0 else None), ops, has_int8)
    return _cache[key]


def _loop(interp, min_runs: int, min_secs: float, max_secs: float) -> list[float]:
    """benchmark_model's BenchmarkModel::Run loop; per-run microseconds."""
    times = []
    now = time.perf_counter()
    min_finish, max_finish = now + max(min_secs, 0.0), now + max_secs
    while (len(times) < min_runs or now < min_finish) and now <= max_finish:
        t0 = time.perf_counter()
        interp.invoke()
        now = time.perf_counter()
        times.append((now - t0) * 1e6)
    return times


def handle(req: dict) -> dict:
    t0 = time.perf_counter()
    interp, ops, has_int8 = _interpreter(req["model"], int(req.get("num_threads") or 0))
    init_us = (time.perf_counter() - t0) * 1e6
    inp = interp.get_input_details()[0]
    shape, dtype = tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"])
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if req.get("input"):
        data = open(req["input"], "rb").read()
        if len(data) != nbytes:
            return {"error": "input-size", "actual": len(data), "expected": nbytes}
        x = np.frombuffer(data, dtype=dtype).reshape(shape)
    else:  # benchmark_model's random inputs
        rng = np.random.default_rng()
        if dtype.kind == "f":
            x = rng.uniform(-0.5, 0.5, shape).astype(dtype)
        else:
            lo, hi = (-127, 127) if dtype == np.int8 else (0, 254) if dtype == np.uint8 else (0, 99)
            x = rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    interp.set_tensor(inp["index"], x)
    warmup = _loop(interp, int(req["warmup_runs"]), float(req["warmup_min_secs"]), float(req["max_secs"]))
    runs = _loop(interp, int(req["num_runs"]), float(req["min_secs"]), float(req["max_secs"]))
    reply = {"init_us": init_us, "warmup_us": warmup, "runs_us": runs, "ops": ops, "has_int8": has_int8}
    if req.get("output"):
        with open(req["output"], "wb") as f:
            for out in interp.get_output_details():
                f.write(np.ascontiguousarray(interp.get_tensor(out["index"])).tobytes())
    return reply


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = handle(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - reported to the fake benchmark_model as an ERROR line
            reply = {"error": "exception", "message": f"{type(exc).__name__}: {exc}"[:400]}
        sys.stdout.write(REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
