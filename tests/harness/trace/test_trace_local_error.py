"""The trace's local error (issue 21): each op alone on the reference kernels' inputs, beside the
cumulative error from the model inputs; the device culprit is the op the error comes from, not
the first finely scaled op it arrives at; a float model's devices judged in relative error; the
minimal repro and its replay. One small Keras model, converted twice (int8, float): ~30 s."""
from __future__ import annotations

import json

import numpy as np
import pytest
from trace_models import digits

from qat_harness.core import tflite
from qat_harness.devices.base import Availability
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.trace import graph, repro, run_trace
from qat_harness.trace.extract import extract_ops

COARSE, FINE = "conv_coarse", "conv_fine"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """conv_coarse: two identical channels A = B = relu(10 * 3x3 sum) in [0, 90] (scale ~0.35);
    conv_fine: 1x1, A - B + bias (bias in [0, 2]: scale ~0.008, ~45x finer). On the reference
    kernels A - B is exactly 0; one step more on A arrives at conv_fine as ~45 of its steps."""
    import tf_keras as keras

    from qat_harness.build.convert import to_tflite

    folder = tmp_path_factory.mktemp("local-error")
    x = digits()
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    coarse = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name=COARSE)
    fine = keras.layers.Conv2D(4, 1, name=FINE)
    h = fine(coarse(inp))
    out = keras.layers.Dense(10, name="logits")(keras.layers.Flatten(name="flat")(h))
    model = keras.Model(inp, out, name="coarse_fine")
    coarse.set_weights([np.full((3, 3, 1, 2), 10.0, np.float32), np.zeros(2, np.float32)])
    k = np.zeros((1, 1, 2, 4), np.float32)
    k[0, 0, 0, :], k[0, 0, 1, :] = 1.0, -1.0
    fine.set_weights([k, np.array([0.0, 0.7, 1.3, 2.0], np.float32)])
    paths = {"int8": folder / "cf_int8.tflite", "float": folder / "cf_float.tflite", "x": x[:8]}
    paths["int8"].write_bytes(to_tflite(model, full_int8=True, calibration=x))
    paths["float"].write_bytes(to_tflite(model, full_int8=False))
    return paths


def _op_of(info: tflite.ModelInfo, layer: str) -> int:
    return next(o.index for o in info.ops if graph.primary_layer(info.tensor(o.outputs[0]).name) == layer)


def shift_channel_bias(src, layer: str, steps: int, dest):
    """A copy of ``src`` whose ``layer`` op computes channel 0 ``steps`` output steps higher (its
    int32 bias moved): a deterministic kernel fault that flows downstream like a real one."""
    s = graph.schema()
    import flatbuffers

    buf = src.read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    sg = model.subgraphs[0]
    for op in sg.operators:
        if graph.primary_layer(sg.tensors[op.outputs[0]].name.decode()) != layer or len(op.inputs) < 3:
            continue
        bias, out = sg.tensors[op.inputs[2]], sg.tensors[op.outputs[0]]
        buffer = model.buffers[bias.buffer]
        data = np.frombuffer(bytes(np.asarray(buffer.data, dtype=np.uint8)), dtype=np.int32).copy()
        data[0] += int(round(steps * out.quantization.scale[0] / bias.quantization.scale[0]))
        buffer.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
    builder = flatbuffers.Builder(1024 + len(buf))
    builder.Finish(model.Pack(builder), file_identifier=tflite.FILE_IDENTIFIER)
    dest.write_bytes(bytes(builder.Output()))
    return dest


class KernelFault(CpuDevice):
    """XNNPACK whose kernel for ``layer``'s op adds ``steps`` output steps to channel 0, in any
    model that holds that op (the whole model, a cut, the op alone)."""
    name = "faulty"

    def __init__(self, layer: str, steps: int):
        super().__init__()
        self.layer, self.steps = layer, steps

    def probe(self):
        return Availability(True, "test double")

    def prepare(self, model_path, workdir):
        return shift_channel_bias(model_path, self.layer, self.steps, workdir / "faulty.tflite"), None


def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16's 8-bit mantissa."""
    bits = np.asarray(a, np.float32).view(np.uint32)
    return ((bits + 0x8000) & 0xFFFF0000).view(np.float32)


class Bf16Device(CpuDevice):
    """A device that computes in bfloat16: every float output rounded to bf16."""
    name = "bf16"

    def probe(self):
        return Availability(True, "test double")

    def run(self, model_path, inputs, timeout_s=300.0):
        result = super().run(model_path, inputs, timeout_s)
        result.outputs = _bf16(result.outputs) if result.outputs.dtype == np.float32 else result.outputs
        result.extra_outputs = [_bf16(a) if a.dtype == np.float32 else a for a in result.extra_outputs]
        return result


def test_extracted_op_keeps_its_constants_and_takes_its_other_inputs(models, tmp_path):
    info = tflite.inspect_model(models["int8"])
    fine = _op_of(info, FINE)
    alone = extract_ops(models["int8"], [fine], tmp_path / "fine.tflite", isolate=True)
    small = tflite.inspect_model(alone.path)
    assert [o.opcode for o in small.ops] == ["CONV_2D"] and len(small.inputs) == 1
    assert alone.inputs == [info.ops[fine].inputs[0]] and alone.outputs == info.ops[fine].outputs
    assert small.tensor(small.outputs[0]).scales == info.tensor(info.ops[fine].outputs[0]).scales
    assert alone.path.stat().st_size < models["int8"].stat().st_size


def test_coarse_rounding_carried_into_a_fine_op_is_blamed_on_the_coarse_op(models, tmp_path):
    """The TF2 PTQ MobileNet V2 case: one step more at a coarse op shows as tens of steps at the
    finer op after it, which computes nothing wrong; the coarse op is named, with its local
    error, and the carried error is shown on the fine op."""
    info = tflite.inspect_model(models["int8"])
    coarse, fine = _op_of(info, COARSE), _op_of(info, FINE)
    scale_c, scale_f = (info.tensor(info.ops[k].outputs[0]).scales[0] for k in (coarse, fine))
    assert scale_c / scale_f > 10, (scale_c, scale_f)
    result = run_trace(None, models["int8"], models["x"], {"faulty": KernelFault(COARSE, 1)}, tmp_path)
    c = result.culprit
    print("carried culprit:", c.reason)
    assert c is not None and c.device == "faulty" and c.op == coarse and c.layer == COARSE
    assert c.local is not None and c.local.max_steps == 1 and c.local_departs is False
    assert c.visible_at == fine and c.carried is not None and c.carried.max_steps > 10
    fine_op = result.ops[fine]
    assert fine_op.local["faulty"].max_steps <= 1 and fine_op.devices["faulty"].max_steps > 10
    summary = result.summary().culprit
    assert summary.local == 1 and summary.carried > 10 and summary.carried_at == fine and summary.domain == "int8 steps"
    md = (tmp_path / "trace.md").read_text()
    assert "faulty local | faulty cumulative" in md and "carried (cumulative)" in md
    local_nodes = json.loads((tmp_path / "trace_nodedata_faulty_local.json").read_text())
    cumulative_nodes = json.loads((tmp_path / "trace_nodedata_faulty.json").read_text())
    fine_tensor = result.ops[fine].tensor_name
    assert local_nodes["results"][fine_tensor]["value"] <= 1 < 10 < cumulative_nodes["results"][fine_tensor]["value"]
    # the smallest model that still disagrees: the coarse op and the fine one, from recorded inputs
    data = json.loads((result.repro / repro.INFO).read_text())
    assert data["kind"] == "ops" and data["ops"] == [coarse, fine]


def test_a_kernel_fault_gets_a_minimal_repro_that_replays_on_its_own(models, tmp_path):
    info = tflite.inspect_model(models["int8"])
    coarse = _op_of(info, COARSE)
    faulty = KernelFault(COARSE, 5)
    result = run_trace(None, models["int8"], models["x"], {"faulty": faulty}, tmp_path / "trace")
    c = result.culprit
    assert c is not None and c.op == coarse and c.local_departs and c.local.max_steps == 5
    folder = result.repro
    assert folder == tmp_path / "trace" / "repro"
    described = json.loads((folder / repro.INFO).read_text())
    assert described["kind"] == "op" and described["ops"] == [coarse]
    assert described["command"] == f"python3 -m qat_harness.trace.repro replay {folder} --device faulty"
    assert len(tflite.inspect_model(folder / repro.MODEL).ops) == 1
    # on its own: copied elsewhere, away from the trace and the original model
    moved = tmp_path / "bug-report"
    moved.mkdir()
    for name in (repro.MODEL, repro.DATA, repro.INFO):
        (moved / name).write_bytes((folder / name).read_bytes())
    replayed = repro.replay(moved, KernelFault(COARSE, 5))
    assert replayed.disagrees and max(d.max_steps for d in replayed.differences) == 5
    assert repro.main(["replay", str(moved), "--device", "cpu"]) == 0


def test_replay_of_a_folder_that_is_no_repro_is_one_line(tmp_path, capsys):
    assert repro.main(["replay", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a trace repro folder" in err and "\n" not in err


def test_a_float_model_is_judged_in_relative_error_and_bf16_is_flagged(models, tmp_path):
    result = run_trace(None, models["float"], models["x"], {"cpu": CpuDevice(), "bf16": Bf16Device()}, tmp_path)
    assert result.float_model
    assert result.devices["cpu"].status == "agrees" and "step" not in result.devices["cpu"].reason
    assert "relative error" in result.devices["cpu"].reason
    c = result.culprit
    print("bf16 culprit:", c.reason)
    assert c is not None and c.device == "bf16" and c.local_departs
    assert c.local.max_steps is None and 1e-4 < c.local.max_rel < 2e-2
    cpu_rel = max(o.local["cpu"].max_rel for o in result.ops)
    assert cpu_rel < 1e-5 and c.local.max_rel > 100 * max(cpu_rel, 1e-9)
    assert "relative error" in (tmp_path / "trace.md").read_text()
