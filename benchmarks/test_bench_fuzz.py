"""Fuzz benchmark (not a timed test): mutated flatbuffers of a real small int8 .tflite through
the flatbuffer inspector and through both CPU devices, each execution in its own child.

    python3 -m pytest benchmarks/test_bench_fuzz.py --benchmark-only -s

What it tells: how every kind of damage ends. The inspector must end every file as parsed or
``InvalidModel``; a device must end every file as a result or a ``DeviceError`` (a crash of
the runtime is a ``DeviceError(kind='crash')``, fine: it happened in a child); anything else
that reaches the harness is a ``crash`` and fails the benchmark. ``accepted_but_unloadable``
counts files the inspector accepts that neither CPU device can load (claims C1/C4/C5/M3 would
be judged on a model that does not run): it should stay near zero.

``QAT_FUZZ_MUTANTS`` (default 2000) files are made with a fixed seed. Every file the
inspector accepts runs on both devices; of the rejected ones, one in
``QAT_FUZZ_REJECTED_EVERY`` (default 4) runs too, to see whether the inspector refuses models
LiteRT would load (``rejected_but_loadable``). ``QAT_FUZZ_WORKERS`` children run at once
(default 8: a child mostly waits on process start-up)."""
from __future__ import annotations

import collections
import json
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError
from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice

MUTANTS = int(os.environ.get("QAT_FUZZ_MUTANTS", 2000))
REJECTED_EVERY = int(os.environ.get("QAT_FUZZ_REJECTED_EVERY", 4))
WORKERS = int(os.environ.get("QAT_FUZZ_WORKERS", 8))
RUN_TIMEOUT_S = 30.0
SEED = 20240601


# -- mutations ------------------------------------------------------------------------------------
def bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(8, len(data))]


def splice(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """A chunk of ``other`` (the float model, or the file itself) pasted over the file."""
    source = rng.choice((data, other))
    n = rng.randint(4, 256)
    start = rng.randrange(max(1, len(source) - n))
    at = rng.randrange(8, len(data))
    return data[:at] + source[start:start + n] + data[at + n:]


def int_overwrite(data: bytes, rng: random.Random) -> bytes:
    """A 32-bit word replaced: flatbuffer offsets and vector lengths are 32-bit words."""
    out = bytearray(data)
    i = rng.randrange(8, len(out) - 4) & ~3
    value = rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(data), rng.getrandbits(32), rng.randrange(64)))
    out[i:i + 4] = value.to_bytes(4, "little")
    return bytes(out)


def make_mutants(seed_model: bytes, other: bytes, n: int, seed: int = SEED) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    kinds = ("bit_flips", "truncation", "splice", "int_overwrite")
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "bit_flips":
            out.append((kind, bit_flips(seed_model, rng)))
        elif kind == "truncation":
            out.append((kind, truncation(seed_model, rng)))
        elif kind == "splice":
            out.append((kind, splice(seed_model, rng, other)))
        else:
            out.append((kind, int_overwrite(seed_model, rng)))
    return out


# -- outcomes -------------------------------------------------------------------------------------
def inspect_outcome(data: bytes) -> tuple[str, tflite.ModelInfo | None]:
    try:
        return "parsed", tflite.inspect_model(data)
    except tflite.InvalidModel:
        return "InvalidModel", None
    except Exception as exc:  # noqa: BLE001 - what the benchmark is looking for
        return f"crash:{type(exc).__name__}", None


def device_inputs(info: tflite.ModelInfo | None):
    """Zeros shaped as the (mutated) model says, else as the seed model's input."""
    if info is not None and len(info.inputs) == 1:
        t = info.tensor(info.inputs[0])
        shape = [d if 0 < d <= 64 else 1 for d in (t.shape or [1])]
        dtype = t.dtype if t.dtype in ("int8", "uint8", "int16", "float32", "int32") else "int8"
        return np.zeros(shape, dtype)
    return np.zeros((1, 8, 8, 1), np.int8)


def device_outcome(device, path: Path, inputs) -> str:
    try:
        device.run(path, inputs, RUN_TIMEOUT_S)
        return "ran"
    except DeviceError as exc:
        return f"DeviceError:{exc.kind}"
    except Exception as exc:  # noqa: BLE001 - a failure that escaped the isolation
        return f"crash:{type(exc).__name__}"


def fuzz(seed_model: bytes, other: bytes, n: int, folder: Path) -> dict:
    mutants = make_mutants(seed_model, other, n)
    inspected = [inspect_outcome(data) for _kind, data in mutants]
    counts = {"mutants": n, "by_kind": dict(collections.Counter(k for k, _ in mutants)),
              "inspector": dict(collections.Counter(o for o, _ in inspected))}
    to_run = [i for i, (o, _) in enumerate(inspected) if o == "parsed" or i % REJECTED_EVERY == 0]
    devices = {"cpu": CpuDevice(), "cpu-ref": CpuRefDevice()}

    def run_one(i: int) -> tuple[int, dict[str, str]]:
        path = folder / f"mutant-{i}.tflite"
        path.write_bytes(mutants[i][1])
        x = device_inputs(inspected[i][1])
        return i, {name: device_outcome(dev, path, x) for name, dev in devices.items()}

    with ThreadPoolExecutor(WORKERS) as pool:
        device_results = dict(pool.map(run_one, to_run))
    for name in devices:
        counts[name] = dict(collections.Counter(r[name] for r in device_results.values()))
    loads = {i: any(o == "ran" for o in r.values()) for i, r in device_results.items()}
    counts["executions"] = len(device_results) * len(devices)
    counts["accepted_but_unloadable"] = sum(1 for i, ok in loads.items()
                                            if inspected[i][0] == "parsed" and not ok)
    counts["rejected_but_loadable"] = sum(1 for i, ok in loads.items()
                                          if inspected[i][0] != "parsed" and ok)
    counts["rejected_run"] = sum(1 for i in loads if inspected[i][0] != "parsed")
    return counts


@pytest.fixture(scope="module")
def seed_models(tmp_path_factory):
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    return to_tflite(model, full_int8=True, calibration=x), to_tflite(model, full_int8=False)


def test_fuzzed_flatbuffers_end_as_parsed_invalid_or_device_error(benchmark, seed_models):
    int8, float32 = seed_models
    with tempfile.TemporaryDirectory(prefix="qat-fuzz-") as tmp:
        t0 = time.perf_counter()
        counts = benchmark.pedantic(fuzz, args=(int8, float32, MUTANTS, Path(tmp)), rounds=1, iterations=1)
        counts["seconds"] = round(time.perf_counter() - t0, 1)
    benchmark.extra_info["counts"] = counts
    print("\nfuzz counts:", json.dumps(counts, indent=1))
    crashes = {where: {k: v for k, v in c.items() if k.startswith("crash")}
               for where, c in counts.items() if isinstance(c, dict)}
    assert not any(crashes.values()), crashes
    assert counts["inspector"].get("parsed", 0) + counts["inspector"].get("InvalidModel", 0) == MUTANTS
