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
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
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


# -- SQLite history files ---------------------------------------------------------------------------
# Mutants of a real history.sqlite given to `qat-harness history DIR` and `qat-harness compare R R
# --history DB`, each command in a long-lived worker process (so a case costs no interpreter start)
# answering within HISTORY_BOUND_S or counted as a hang. An escape is a traceback (exit 3, or an
# exception out of main, or an error of more than one line), a write to the file, a hang, or a
# hostile file (code in its schema, another application's id, a newer version) not refused.
HISTORY_MUTANTS = int(os.environ.get("QAT_FUZZ_SQLITE_MUTANTS", 300))
HISTORY_WORKERS = int(os.environ.get("QAT_FUZZ_SQLITE_WORKERS", 2))
HISTORY_BOUND_S = 30.0
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
A_REPORT = FIXTURES / "report_before_architecture_digits_cnn.json"
ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1e15) SELECT i FROM n WHERE i < 0"
HOSTILE = {   # kind -> statements that make a history hostile (each must be refused)
    "trigger": ["CREATE TRIGGER all_pass AFTER INSERT ON claims BEGIN UPDATE claims SET verdict = 'PASS'; END"],
    "trigger_on_runs": ["CREATE TRIGGER t BEFORE INSERT ON runs BEGIN SELECT RAISE(IGNORE); END"],
    "view_endless": [f"CREATE VIEW slow AS {ENDLESS}"],
    "table_as_view": ["DROP TABLE claims",
                      "CREATE VIEW claims AS SELECT i AS run_id, 'C2' AS claim, 'm' AS model, 'cpu' AS device, "
                      f"'PASS' AS verdict, NULL AS measured, 0 AS simulated, NULL AS reason FROM ({ENDLESS})"],
    "generated_column": ["ALTER TABLE claims ADD COLUMN shown TEXT GENERATED ALWAYS AS ('PASS')"],
    "virtual_table": ["CREATE VIRTUAL TABLE notes USING fts5(body)"],
    "foreign_table": ["CREATE TABLE notes (body TEXT)"],
    "retyped_column": ["ALTER TABLE accuracy RENAME TO old_accuracy",
                       "CREATE TABLE accuracy (run_id INTEGER, model TEXT, device TEXT, variant TEXT,"
                       " top1 TEXT, n INTEGER)",
                       "INSERT INTO accuracy SELECT * FROM old_accuracy", "DROP TABLE old_accuracy"],
    "foreign_application_id": None,   # a random id, in make_history_mutants
    "user_version": None,
}
WORKER = """
import contextlib, io, json, sys
from qat_harness import cli
answer = sys.stdout
for line in sys.stdin:
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli.main(json.loads(line))
    except BaseException as exc:  # what the benchmark is looking for
        code = f"raised {type(exc).__name__}"
    answer.write(json.dumps({"code": code, "stderr": err.getvalue()}) + "\\n")
    answer.flush()
"""


def seed_history(folder: Path) -> bytes:
    """A history as a nightly folder holds it: the 0.2.0 fixture, stamped, plus two nights."""
    from qat_harness import history
    from qat_harness.record import codec

    db = folder / "history.sqlite"
    shutil.copy(FIXTURES / "history" / "history-before-stamping.sqlite", db)
    for night in range(2):
        history.record(db, codec.load(A_REPORT), folder / f"night{night}" / "report.json")
    return db.read_bytes()


def _tampered(seed: bytes, folder: Path, statements: list[str]) -> bytes:
    path = folder / "tamper.sqlite"
    path.write_bytes(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        conn.execute(statement)
    conn.close()
    data = path.read_bytes()
    path.unlink()
    return data


def header_flips(data: bytes, rng: random.Random) -> bytes:
    """Bits flipped in the 100-byte header: page size, counts, schema cookie, encoding, ..."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 3))):
        i = rng.randrange(16, 100)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def make_history_mutants(seed: bytes, n: int, folder: Path, seed_value: int = SEED) -> list[tuple[str, bytes]]:
    rng = random.Random(seed_value)
    damage = {"bit_flips": bit_flips, "truncation": truncation, "int_overwrite": int_overwrite,
              "header_flips": header_flips}
    kinds = [*damage, *HOSTILE]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind in damage:
            out.append((kind, damage[kind](seed, rng)))
        elif kind == "foreign_application_id":
            app_id = rng.choice([rng.getrandbits(31) + 1, -rng.getrandbits(31) - 1, 0x0F055112])
            out.append((kind, _tampered(seed, folder, [f"PRAGMA application_id = {app_id}"])))
        elif kind == "user_version":
            version = rng.choice([2, 2**31 - 1, -1, -2**31, rng.getrandbits(31) + 2])
            out.append((kind, _tampered(seed, folder, [f"PRAGMA user_version = {version}"])))
        else:
            out.append((kind, _tampered(seed, folder, HOSTILE[kind])))
    return out


class HistoryWorker:
    def __init__(self, folder: Path):
        env = {**os.environ, "TMPDIR": str(folder)}   # crash logs, if any, stay in the fuzz folder
        self.proc = subprocess.Popen([sys.executable, "-P", "-c", WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=folder)

    def run(self, argv: list[str], bound_s: float) -> dict | None:
        """The command's exit code and stderr, or None when it did not answer within bound_s."""
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], bound_s)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"code": "worker died", "stderr": ""}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def history_outcome(kind: str, answer: dict | None, before: bytes, after: bytes) -> str:
    if answer is None:
        return "escape:hang"
    if after != before:
        return "escape:write"
    code, err = answer["code"], answer["stderr"].strip()
    if code == 2 and err.startswith("qat-harness: error: ") and "\n" not in err:
        return "refused"
    if code in (0, 1) and kind not in HOSTILE:
        return "accepted"
    if code in (0, 1):
        return "escape:hostile_accepted"
    return f"escape:traceback(code {code})"


def fuzz_histories(n: int, folder: Path) -> dict:
    seed = seed_history(folder)
    mutants = make_history_mutants(seed, n, folder)
    commands = {
        "history": lambda case: ["history", str(case), "--out", str(case.parent / "history.html")],
        "compare": lambda case: ["compare", str(A_REPORT), str(A_REPORT), "--history", str(case / "history.sqlite")],
    }
    results: dict[tuple[int, str], str] = {}
    side_files = 0

    def run_share(share: list[int]) -> None:
        nonlocal side_files
        worker = HistoryWorker(folder)
        try:
            warm = folder / f"warm-{share[0]}"
            warm.mkdir()
            (warm / "history.sqlite").write_bytes(seed)
            assert worker.run(commands["history"](warm), 300)["code"] == 0   # imports, first plot
            for i in share:
                case = folder / f"case-{i}"
                case.mkdir()
                db = case / "history.sqlite"
                db.write_bytes(mutants[i][1])
                for name, argv in commands.items():
                    answer = worker.run(argv(case), HISTORY_BOUND_S)
                    results[i, name] = history_outcome(mutants[i][0], answer, mutants[i][1], db.read_bytes())
                    if answer is None:   # a hang: this worker is stuck in it; start another
                        worker.close()
                        worker = HistoryWorker(folder)
                side_files += len([p for p in case.iterdir() if p.name not in ("history.sqlite", "history.html")])
        finally:
            worker.close()

    with ThreadPoolExecutor(HISTORY_WORKERS) as pool:
        list(pool.map(run_share, [list(range(n))[w::HISTORY_WORKERS] for w in range(HISTORY_WORKERS)]))
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (i, name), outcome in results.items():
        by_kind[mutants[i][0]][f"{name}:{outcome}"] += 1
    escapes = collections.Counter(f"{name}:{o}" for (i, name), o in results.items() if o.startswith("escape"))
    return {"cases": n, "executions": len(results), "seed_bytes": len(seed),
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
            "escapes": sum(escapes.values()), "escape_kinds": dict(escapes), "side_files": side_files}


def test_fuzzed_histories_end_as_read_or_refused_in_one_line(benchmark):
    with tempfile.TemporaryDirectory(prefix="qat-fuzz-history-") as tmp:
        t0 = time.perf_counter()
        counts = benchmark.pedantic(fuzz_histories, args=(HISTORY_MUTANTS, Path(tmp)), rounds=1, iterations=1)
        counts["seconds"] = round(time.perf_counter() - t0, 1)
    benchmark.extra_info["counts"] = counts
    print("\nhistory fuzz counts:", json.dumps(counts, indent=1))
    assert counts["escapes"] == 0, counts["escape_kinds"]
    assert counts["executions"] == 2 * HISTORY_MUTANTS


HISTORY_BIG_ROWS = int(os.environ.get("QAT_FUZZ_SQLITE_BIG_ROWS", 2_000_000))


def _history_command_after_sigterm(folder: Path, send_after_s: float) -> tuple[int, float]:
    """`qat-harness history FOLDER` sent SIGTERM while it reads: its exit code and how long it
    took to exit after the signal."""
    proc = subprocess.Popen([sys.executable, "-P", "-m", "qat_harness.cli", "history", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(send_after_s)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return code, time.perf_counter() - sent


def test_sigterm_stops_reading_a_large_history(benchmark, tmp_path):
    """How long after SIGTERM reading a large history (HISTORY_BIG_ROWS latency rows, sorted in
    SQLite before the first row comes back) stops, against how long the read takes whole."""
    from qat_harness import history, history_db
    from qat_harness.core.child import Terminated, sigterm_as_interrupt

    db = tmp_path / "history.sqlite"
    with history_db.writing(db) as conn:
        conn.execute("INSERT INTO runs (id, started, report_path) VALUES (1, '2026-01-01', 'r.json')")
        conn.execute("INSERT INTO latency (run_id, model, device, variant, median_ms) "
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                     "SELECT 1000 - i % 1000, 'm' || (i % 7), 'cpu', 'qat_int8', abs(random() % 1000) FROM n",
                     (HISTORY_BIG_ROWS,))
    t0 = time.perf_counter()
    whole = len(history.load(db).latency)
    whole_s = time.perf_counter() - t0

    stops_ms = []

    def stopped_after_sigterm() -> None:
        sent = []

        def send():
            sent.append(time.perf_counter())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

        timer = threading.Timer(min(0.5, whole_s / 4), send)
        with sigterm_as_interrupt():
            timer.start()
            try:
                history.load(db)
            except Terminated:
                stops_ms.append(round((time.perf_counter() - sent[0]) * 1000, 1))
                return
            finally:
                timer.cancel()
        raise AssertionError("the read ended before SIGTERM stopped it")

    benchmark.pedantic(stopped_after_sigterm, rounds=3, iterations=1)
    command_exit, command_stop_s = _history_command_after_sigterm(tmp_path, send_after_s=min(8.0, whole_s / 2))
    benchmark.extra_info.update(rows=whole, whole_read_s=round(whole_s, 2), stopped_after_sigterm_ms=stops_ms,
                                command_exit=command_exit, command_stopped_after_s=round(command_stop_s, 2),
                                db_mb=round(db.stat().st_size / 2**20, 1))
    print(f"\nhistory of {whole} latency rows ({db.stat().st_size / 2**20:.0f} MB): read whole in "
          f"{whole_s:.2f} s; stopped {stops_ms} ms after SIGTERM; `qat-harness history` exited "
          f"{command_exit} {command_stop_s:.2f} s after SIGTERM")
    assert command_exit == 143
    assert whole == HISTORY_BIG_ROWS


# == config fuzz: hostile .keras / .h5 model configs ================================================
# A user's Keras model file is JSON that loaders act on. Random edits of real configs (tf_keras
# .keras and .h5 of a model with every wrapper and cell, a Keras 3 .keras the translator takes):
# wrappers, cells and nested models added around layers, Lambda layers, lambda objects,
# ``module`` and ``registered_name`` fields placed anywhere. Every case goes through what the
# harness runs (the parent's ``sources.parse_entry``, then the builder child's loading, here
# in-process) and must end as loaded or refused in one line. Escapes: the Lambda's code ran
# (its canary file exists), a named module was imported (its canary file, or ``this`` in
# sys.modules), or anything else than a one-line UsageError came out. Must be 0.
#
#     python3 -m pytest benchmarks/test_bench_fuzz.py -k config -s
#
# ``QAT_FUZZ_CONFIGS`` cases (default 150, about 1 s each on 2 cores) with a fixed seed.
CONFIGS = int(os.environ.get("QAT_FUZZ_CONFIGS", 150))
CONFIG_FORMS = ("keras", "h5", "keras3")
LAYER_KEYS = ("layer", "forward_layer", "backward_layer", "cell")
FOREIGN_MODULES = ("os", "subprocess", "this", "keras.src.utils.generic_utils", "builtins")
KERAS_MODULES = ("keras.layers", "keras", "tf_keras.src.engine.functional", "keras.initializers")
OBJECT_KEYS = ("kernel_initializer", "activation", "dtype", "kernel_regularizer", "bias_constraint",
               "recurrent_initializer", "function")


def _hostile_helpers():
    folder = str(Path(__file__).resolve().parents[1] / "tests" / "harness" / "build")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import hostile_keras_files

    return hostile_keras_files


def _layer_slots(config) -> list[tuple[object, object]]:
    """(container, key) of every layer entry: items of ``layers``/``cells`` lists and the
    values of wrapper and RNN keys, at any depth."""
    slots, stack = [], [config]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            for key, child in value.items():
                if key in ("layers", "cells") and isinstance(child, list):
                    slots += [(child, i) for i, item in enumerate(child) if isinstance(item, dict)]
                elif key in LAYER_KEYS and isinstance(child, dict):
                    slots.append((value, key))
                stack.append(child)
    return slots


def _dicts(config) -> list[dict]:
    out, stack = [], [config]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            out.append(value)
            stack.extend(value.values())
    return out


def _wrapped(entry: dict, wrapper: dict, inner_key: str, n: int) -> dict:
    """``entry`` moved inside ``wrapper`` (the wrapper takes its place: its top-level name
    and call wiring)."""
    import copy

    inner = copy.deepcopy(entry)
    outer = {k: v for k, v in inner.items() if k in ("name", "inbound_nodes")}
    for key in ("name", "inbound_nodes"):
        inner.pop(key, None)
    if isinstance(inner.get("config"), dict):
        inner["config"]["name"] = f"inner_{n}"
    wrapper = copy.deepcopy(wrapper)
    wrapper["config"][inner_key] = [inner] if inner_key == "layers" else inner
    wrapper["config"].setdefault("name", outer.get("name", f"wrap_{n}"))
    return {**wrapper, **outer}


class ConfigMutator:
    """Random edits; ``hostile`` lists the ones that put code or a foreign module in."""

    def __init__(self, rng: random.Random, lambda_entries: dict, canary_module: str):
        self.rng, self.lambda_entries, self.canary_module = rng, lambda_entries, canary_module
        self.n = 0

    def mutate(self, config, form: str) -> list[str]:
        ops = [self.rng.choice(self.OPS) for _ in range(self.rng.randint(1, 3))]
        done = []
        for op in ops:
            self.n += 1
            if getattr(self, op)(config, form):
                done.append(op)
        return done

    OPS = ("wrap_time_distributed", "wrap_bidirectional", "stack_cells", "nest_model", "lambda_layer",
           "lambda_object", "lambda_function_type", "foreign_module", "keras_module",
           "registered_name", "wrap_time_distributed", "nest_model")
    HOSTILE = {"lambda_layer", "lambda_object", "lambda_function_type", "foreign_module",
               "registered_name"}

    def _slot(self, config):
        slots = _layer_slots(config)
        return self.rng.choice(slots) if slots else None

    def wrap_time_distributed(self, config, form):
        slot = self._slot(config)
        if slot:
            container, key = slot
            td = {"module": "keras.layers", "class_name": "TimeDistributed", "registered_name": None,
                  "config": {}}
            container[key] = _wrapped(container[key], td, "layer", self.n)
        return bool(slot)

    def wrap_bidirectional(self, config, form):
        slot = self._slot(config)
        if slot:
            import copy

            container, key = slot
            bi = {"module": "keras.layers", "class_name": "Bidirectional", "registered_name": None,
                  "config": {"merge_mode": "concat"}}
            container[key] = _wrapped(container[key], bi, "layer", self.n)
            if self.rng.random() < 0.5:
                backward = copy.deepcopy(container[key]["config"]["layer"])
                backward.setdefault("config", {})["go_backwards"] = True
                container[key]["config"]["backward_layer"] = backward
        return bool(slot)

    def stack_cells(self, config, form):
        import copy

        holders = [d for d in _dicts(config) if isinstance(d.get("cell"), dict)]
        if not holders:
            return False
        holder = self.rng.choice(holders)
        cell = holder["cell"]
        holder["cell"] = {"module": "keras.layers", "class_name": "StackedRNNCells", "registered_name": None,
                          "config": {"name": f"stack_{self.n}", "cells": [cell, copy.deepcopy(cell)]}}
        return True

    def nest_model(self, config, form):
        slot = self._slot(config)
        if slot:
            container, key = slot
            seq = {"module": "keras", "class_name": "Sequential", "registered_name": None, "config": {}}
            container[key] = _wrapped(container[key], seq, "layers", self.n)
        return bool(slot)

    def lambda_layer(self, config, form):
        import copy

        slot = self._slot(config)
        if slot:
            container, key = slot
            old = container[key]
            new = copy.deepcopy(self.lambda_entries[form])
            new["config"]["name"] = (old.get("config") or {}).get("name", f"lambda_{self.n}")
            container[key] = {**{k: v for k, v in old.items() if k in ("name", "inbound_nodes")}, **new}
        return bool(slot)

    def _some_config(self, config) -> dict | None:
        configs = [d["config"] for d in _dicts(config) if isinstance(d.get("config"), dict)]
        return self.rng.choice(configs) if configs else None

    def lambda_object(self, config, form):
        import copy

        target = self._some_config(config)
        if target is not None:  # copies: an edit must never reach the template (or make a cycle)
            target[self.rng.choice(OBJECT_KEYS)] = {"class_name": "__lambda__", "config": {
                "value": copy.deepcopy(self.lambda_entries[form]["config"]["function"])}}
        return target is not None

    def lambda_function_type(self, config, form):
        target = self._some_config(config)
        if target is not None:
            import copy

            lam = self.lambda_entries[form]["config"]
            target.update({"dropout_fn": copy.deepcopy(lam.get("function")), "dropout_fn_type": "lambda"})
        return target is not None

    def foreign_module(self, config, form):
        entry = self.rng.choice(_dicts(config))
        module = self.rng.choice((self.canary_module,) + FOREIGN_MODULES)
        entry["module"] = module
        if module == "builtins" or self.rng.random() < 0.3:
            entry.update({"class_name": "function", "config": self.rng.choice(("eval", "exec", "print")),
                          "registered_name": None})
        return True

    def keras_module(self, config, form):
        self.rng.choice(_dicts(config))["module"] = self.rng.choice(KERAS_MODULES)
        return True

    def registered_name(self, config, form):
        entry = self.rng.choice(_dicts(config))
        entry["registered_name"] = self.rng.choice(("evil_pkg>Thing", "Lambda", "Custom>Dense"))
        return True


REFUSALS: collections.Counter = collections.Counter()
#: A config tf_keras never finishes rebuilding (a Functional graph whose nodes never get their
#: inputs loops forever in ``reconstruct_from_config``): in the harness the builder child's
#: timeout ends it with one line; here each case gets this long, then counts as ``hang``.
CASE_TIMEOUT_S = int(os.environ.get("QAT_FUZZ_CASE_TIMEOUT_S", 60))


class _CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException, so that no ``except Exception`` swallows it."""


def _raise_case_timeout(signum, frame):
    raise _CaseTimeout


def _reason(message: str) -> str:
    """A refusal without its file and names: what kind of refusal it is."""
    import re

    return re.sub(r"'[^']*'", "'.'", message.partition(": ")[2])[:100]


def config_outcome(path: Path, canaries: list[Path], canary_module: str) -> str:
    from qat_harness import sources
    from qat_harness.build import keras_loading
    from qat_harness.core.errors import UsageError

    previous = signal.signal(signal.SIGALRM, _raise_case_timeout)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        keras_loading.load_model(sources.parse_entry(str(path)).request())
        outcome = "loaded"
    except _CaseTimeout:
        outcome = "hang"
    except UsageError as exc:
        outcome = "refused" if "\n" not in str(exc) else "escape:multi-line"
        REFUSALS[_reason(str(exc))] += 1
    except Exception as exc:  # noqa: BLE001 - what the benchmark is looking for
        outcome = f"escape:traceback:{type(exc).__name__}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if any(c.exists() for c in canaries):
        outcome = "escape:code-ran-or-imported"
    for module in (canary_module, "this"):
        if module in sys.modules:
            outcome = f"escape:imported:{module}"
            del sys.modules[module]
    for canary in canaries:
        canary.unlink(missing_ok=True)
    return outcome


def fuzz_configs(n: int, folder: Path) -> dict:
    import keras
    import tf_keras

    helpers = _hostile_helpers()
    files = helpers.ModelFiles(folder / "bases")
    keras.utils.set_random_seed(0)
    keras3_base = folder / "bases" / "keras3_dense.keras"
    keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu", name="d1"),
                      keras.layers.Dense(3, name="d2")]).save(keras3_base)
    lambda_ran, imported = folder / "lambda-ran", folder / "module-imported"
    modules = folder / "modules"
    canary_module = helpers.canary_module(modules, imported)
    sys.path.insert(0, str(modules))
    lambda_entries = {"keras": helpers.lambda_entry(tf_keras, lambda_ran, "lam"),
                      "h5": helpers.lambda_entry(tf_keras, lambda_ran, "lam"),
                      "keras3": helpers.lambda_entry(keras, lambda_ran, "lam")}
    lambda_ran.unlink(missing_ok=True)
    rng = random.Random(SEED)
    mutator = ConfigMutator(rng, lambda_entries, canary_module)
    counts: dict = {"cases": n, "by_form": collections.Counter(), "ops": collections.Counter(),
                    "hostile": collections.Counter(), "benign": collections.Counter()}
    escapes, hangs = [], []
    try:
        for i in range(n):
            form = CONFIG_FORMS[i % len(CONFIG_FORMS)]
            ops: list[str] = []
            edit = lambda config, form=form, ops=ops: ops.extend(mutator.mutate(config, form))  # noqa: E731
            if form == "keras3":
                path = helpers.write_archive_config(keras3_base, folder / f"case-{i}.keras", edit)
            else:
                path = files.edited(form, edit, f"case-{i}")
            outcome = config_outcome(path, [lambda_ran, imported], canary_module)
            counts["by_form"][form] += 1
            counts["ops"].update(ops)
            hostile = bool(mutator.HOSTILE.intersection(ops))
            counts["hostile" if hostile else "benign"][outcome] += 1
            if outcome.startswith("escape") or (hostile and outcome == "loaded"):
                escapes.append({"case": i, "form": form, "ops": ops, "outcome": outcome})
            if outcome == "hang":
                hangs.append({"case": i, "form": form, "ops": ops})
            tf_keras.backend.clear_session()
            path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
    finally:
        sys.path.remove(str(modules))
    counts = {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in counts.items()}
    counts["escapes"], counts["hangs"] = escapes, hangs
    counts["refusal_reasons"] = dict(REFUSALS.most_common(12))
    return counts


def test_fuzzed_keras_configs_never_run_or_import_code(benchmark):
    with tempfile.TemporaryDirectory(prefix="qat-config-fuzz-") as tmp:
        t0 = time.perf_counter()
        counts = benchmark.pedantic(fuzz_configs, args=(CONFIGS, Path(tmp)), rounds=1, iterations=1)
        counts["seconds"] = round(time.perf_counter() - t0, 1)
    benchmark.extra_info["config_counts"] = counts
    print("\nconfig fuzz counts:", json.dumps(counts, indent=1))
    assert counts["escapes"] == [], counts["escapes"]
    assert sum(counts["hostile"].values()) > CONFIGS // 3  # the fuzz did put code in
