"""A device culprit's minimal repro, and its replay.

``write_repro`` puts into ``DIR/repro/`` the smallest standalone model that still disagrees on
the device — the culprit op alone (when its local error departs), else the ops from the culprit
to the op where the departure shows, fed the reference kernels' values at their inputs, else the
model cut after that op, from the model inputs — with ``data.npz`` (``input_<i>`` its inputs,
``reference_<j>`` and ``device_<j>`` each output on the reference kernels and on the device) and
``repro.json`` (what it is, the bound, the command that replays it). Ready to attach to a bug
report for LiteRT, OpenVINO or a vendor:

    python3 -m qat_harness.trace.repro replay DIR/repro --device NAME

runs ``model.tflite`` on the inputs on device NAME (any name ``qat-harness devices`` lists),
prints each output's difference from the recorded reference, and exits 1 when it still
disagrees, 0 when it agrees, 2 on bad input.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.devices.base import Device
from qat_harness.measure.difference import OutputDifference
from qat_harness.record.folder import write_atomically
from qat_harness.trace import graph
from qat_harness.trace.bisect import Bisector
from qat_harness.trace.extract import extract_ops
from qat_harness.trace.local import Attribution
from qat_harness.trace.measures import departs, device_difference
from qat_harness.trace.results import Mismatch, Thresholds

MODEL, DATA, INFO = "model.tflite", "data.npz", "repro.json"


@dataclasses.dataclass(frozen=True)
class ReproInfo:
    """``repro.json``: what the repro is and how it is judged."""
    kind: str                   # 'op' (the op alone), 'ops' (a run of ops), 'cut' (from the model inputs)
    source_model: str
    ops: list[int]              # the source model's ops it holds
    device: str
    outputs: list[str]          # the output tensors' names
    threshold_steps: float
    threshold_rel: float        # for float outputs
    n_examples: int
    command: str

    def thresholds(self) -> Thresholds:
        return Thresholds(threshold_steps=self.threshold_steps, threshold_rel=self.threshold_rel,
                          threshold_float_rel=self.threshold_rel)


def replay_command(folder: Path, device: str) -> str:
    return shlex.join(["python3", "-m", "qat_harness.trace.repro", "replay", str(folder), "--device", device])


@dataclasses.dataclass
class _Candidate:
    kind: str
    path: Path
    ops: list[int]
    inputs: list[np.ndarray]
    outputs: list[int]


def _candidates(b: Bisector, a: Attribution) -> list[_Candidate]:
    """Smallest first."""
    m, tmp = b.model, b.model.tmp
    k = a.shows_at
    out: list[_Candidate] = []

    def extracted(kind: str, ops: list[int], outputs: list[int] | None, isolate: bool) -> None:
        try:
            e = extract_ops(m.int8_path, ops, tmp / f"repro-{kind}.tflite", isolate=isolate, outputs=outputs)
        except (ValueError, KeyError):
            return
        if all(t in m.reference for t in e.inputs):
            out.append(_Candidate(kind, e.path, e.ops, [m.recorded(t) for t in e.inputs], e.outputs))

    if a.local_departs:
        extracted("op", [a.op], None, True)
    if a.op != k:
        extracted("ops", _span(m.info, a.op, k), [t for t in m.info.ops[k].outputs if t >= 0], False)
    outs = [t for t in m.info.ops[k].outputs if t >= 0]
    out.append(_Candidate("cut", graph.cut_model(m.int8_path, outs, tmp / "repro-cut.tflite"), list(range(k + 1)),
                          m.inputs, outs))
    return out


def _span(info: tflite.ModelInfo, first: int, last: int) -> list[int]:
    """The ops from ``first`` to ``last`` that ``last`` depends on."""
    producers = info.producers()
    wanted, frontier = {last}, [last]
    while frontier:
        j = frontier.pop()
        for t in info.ops[j].inputs:
            p = producers.get(t) if t >= 0 else None
            if p is not None and first <= p and p not in wanted:
                wanted.add(p)
                frontier.append(p)
    return sorted(wanted | {first})


def write_repro(b: Bisector, a: Attribution, out_dir: Path) -> Path | None:
    """The smallest candidate that still disagrees on the device, into ``out_dir/repro``; None
    when none does (the departure does not reproduce outside the whole model)."""
    m = b.model
    for c in _candidates(b, a):
        result = b.run_model(c.path, c.inputs, f"repro-{c.kind}")
        if isinstance(result, DeviceError):
            continue
        differences = [device_difference(v, m.reference[t], m.info.tensor(t), m.n)
                       for t, v in zip(c.outputs, result)]
        if not any(departs(d, b.thresholds, m.float_model) for d in differences):
            continue
        folder = Path(out_dir) / "repro"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL).write_bytes(c.path.read_bytes())
        arrays = {f"input_{i}": x for i, x in enumerate(c.inputs)}
        arrays |= {f"reference_{j}": np.asarray(m.reference[t]) for j, t in enumerate(c.outputs)}
        arrays |= {f"device_{j}": np.asarray(v) for j, v in enumerate(result)}
        np.savez(folder / DATA, **arrays)  # type: ignore[arg-type]  # numpy stub: **arrays read as allow_pickle
        bound = b.thresholds.threshold_float_rel if m.float_model else b.thresholds.threshold_rel
        info = ReproInfo(c.kind, str(m.int8_path), c.ops, b.name, [m.info.tensor(t).name for t in c.outputs],
                         b.thresholds.threshold_steps, bound, m.n, replay_command(folder, b.name))
        write_atomically(folder / INFO, json.dumps(dataclasses.asdict(info), indent=1))
        return folder
    return None


# -- replay ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Replay:
    info: ReproInfo
    differences: list[OutputDifference | Mismatch]
    disagrees: bool


def load(folder: Path) -> tuple[ReproInfo, list[np.ndarray], list[np.ndarray]]:
    folder = Path(folder)
    for name in (MODEL, DATA, INFO):
        if not (folder / name).is_file():
            raise UsageError(f"{folder} is not a trace repro folder: {name} is missing")
    try:
        info = ReproInfo(**json.loads((folder / INFO).read_text()))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{folder / INFO} is not a repro description: {exc}") from None
    with np.load(folder / DATA, allow_pickle=False) as npz:
        inputs = [npz[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in npz.files))]
        reference = [npz[f"reference_{j}"] for j in range(sum(k.startswith("reference_") for k in npz.files))]
    return info, inputs, reference


def replay(folder: Path, device: Device) -> Replay:
    """Run the repro on ``device`` and compare with the recorded reference outputs."""
    folder = Path(folder)
    info, inputs, reference = load(folder)
    model_info = tflite.inspect_model(folder / MODEL)
    float_model = not any(model_info.tensor(t).scales for t in model_info.outputs)
    with tempfile.TemporaryDirectory(prefix="qat-repro-") as tmp:
        path, _ = device.prepare(folder / MODEL, Path(tmp))
        outputs = device.run(path, inputs if len(inputs) > 1 else inputs[0]).all_outputs
    differences = [device_difference(v, r, model_info.tensor(t), info.n_examples)
                   for v, r, t in zip(outputs, reference, model_info.outputs)]
    disagrees = any(departs(d, info.thresholds(), float_model) for d in differences)
    return Replay(info, differences, disagrees)


def _main(argv: list[str] | None) -> int:
    from qat_harness.devices import registry

    parser = argparse.ArgumentParser(prog="python3 -m qat_harness.trace.repro",
                                     description="replay a trace's minimal repro on a device")
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="run DIR/model.tflite on DIR/data.npz's inputs and compare")
    rp.add_argument("folder", type=Path)
    rp.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = registry.create(args.device)
    available = device.probe()
    if not available.available:
        raise UsageError(f"device '{args.device}' is not available: {available.reason}")
    try:
        result = replay(args.folder, device)
    except DeviceError as exc:
        raise UsageError(f"{args.device} could not run the repro ({exc.kind}: {exc.reason[:200]})") from None
    finally:
        device.close()
    for name, d in zip(result.info.outputs, result.differences):
        print(f"{name}: {d.reason if isinstance(d, Mismatch) else d.headline}")
    print(f"{args.device}: {'still disagrees with' if result.disagrees else 'agrees with'} the reference kernels "
          f"(ops {result.info.ops} of {result.info.source_model})")
    return 1 if result.disagrees else 0


def main(argv: list[str] | None = None) -> int:
    from qat_harness.commands.errors import guarded

    return guarded(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
