"""Issue 21: the trace of a model it cannot wholly follow on the host (a stateful model's resource
ops, a compiled Edge TPU subgraph, a custom op LiteRT's kernels lack, a child that crashes)
traces what it can and ends with its report written, naming in one line each what it skipped;
never an internal error. The models are the issue-20 scenario's small tf.Module conversions."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import user_models

from qat_harness import cli
from qat_harness.core.errors import DeviceError
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.trace import capture, service

SCENARIO = Path(__file__).parents[2] / "scenarios" / "test_real_models_stateful_and_custom.py"
STATE_LINE = ("op 0 CALL_ONCE, op 1 VAR_HANDLE, op 2 READ_VARIABLE, op 9 ASSIGN_VARIABLE: resource-variable ops "
              "(the model's state) hold no value to compare and are not traced; the state they read is fed to the "
              "other ops from the reference kernels' run, in a stateless copy whose op numbers are not the "
              "file's (file op = traced op + 3)")
COMPILED_LINE = ("op 0 CUSTOM:edgetpu-custom-op: edgetpu-custom-op (a compiled Edge TPU subgraph): runs only on "
                 "an Edge TPU; trace its uncompiled .tflite instead; no op before it to trace: nothing traced")
COPY_INPUTS = ["add/ReadVariableOp", "serving_default_x:0"]   # the state READ_VARIABLE read, and x
ERFINV_LINE = ("op 3 CUSTOM:Erfinv: custom op 'Erfinv', which LiteRT's built-in and reference kernels lack: "
               "it does not load on the host; op 4 after it is not traced")


def _scenario():
    """The issue-20 scenario's model builders (one definition of these models)."""
    spec = importlib.util.spec_from_file_location("stateful_and_custom_builders", SCENARIO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    m = _scenario()
    folder = tmp_path_factory.mktemp("untraceable")
    stateful = m._stateful_module()
    made = {"stateful_float": m._converter(stateful), "stateful_int8": m._converter(stateful, int8=True),
            "erfinv_float": m._converter(m._erfinv_module(), custom_ops=True)}
    made["custom_int8"] = m._softmax_as_custom_op(made["stateful_int8"])
    made["compiled"] = user_models.edgetpu_lookalike(made["stateful_int8"])
    paths = {name: folder / f"{name}.tflite" for name in made}
    for name, data in made.items():
        paths[name].write_bytes(data)
    paths["data"] = folder / "stream.npz"
    rng = np.random.default_rng(3)
    np.savez(paths["data"], x=rng.normal(size=(40, 8)).astype(np.float32), y=rng.integers(0, 8, 40))
    return paths


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(5).normal(size=(4, 8)).astype(np.float32)


class DisagreesOnFullyConnected(CpuDevice):
    """XNNPACK with a simulated graph-level bug: the stateless copy cut at or past its
    FULLY_CONNECTED and run from its inputs (the model's input and the state) is off, int8
    outputs by 10 steps, float ones by 1.0; ops run alone on recorded inputs are right."""
    name = "fc-off"

    def run(self, model_path, inputs, timeout_s=300.0):
        from qat_harness.core import tflite

        result = super().run(model_path, inputs, timeout_s)
        info = tflite.inspect_model(model_path)
        from_copy_inputs = sorted(info.tensor(t).name for t in info.inputs) == COPY_INPUTS
        if from_copy_inputs and any(op.opcode == "FULLY_CONNECTED" for op in info.ops):
            def bump(a):
                if a.dtype == np.int8:
                    return np.clip(a.astype(np.int32) + 10, -128, 127).astype(a.dtype)
                return a + 1.0
            result.outputs = bump(result.outputs)
            result.extra_outputs = [bump(a) for a in result.extra_outputs]
        return result


def test_a_stateful_model_is_traced_without_its_resource_ops(files, x, tmp_path):
    result = service.trace_model(files["stateful_float"], files["stateful_int8"], x, {}, tmp_path)
    assert result.skipped == [STATE_LINE]
    assert [o.opcode for o in result.ops] == ["QUANTIZE", "ADD", "FULLY_CONNECTED", "SOFTMAX", "MUL", "DEQUANTIZE"]
    add = result.ops[1]
    assert add.quant is not None and add.quant.max_steps is not None   # int8 vs the float twin, with the same state
    assert result.culprit is None
    assert f"- skipped: {STATE_LINE}" in (tmp_path / "trace.md").read_text()
    assert json.loads((tmp_path / "trace.json").read_text())["skipped"] == [STATE_LINE]


def test_a_device_that_departs_on_a_stateful_model_is_found_in_the_stateless_copy(files, x, tmp_path):
    result = service.trace_model(files["stateful_float"], files["stateful_int8"], x,
                                 {"fc-off": DisagreesOnFullyConnected()}, tmp_path)
    assert result.culprit is not None and result.culprit.stage == "device"
    assert result.culprit.opcode == "FULLY_CONNECTED" and result.culprit.op == 2   # op 5 of the file
    assert result.skipped == [STATE_LINE]


def test_a_custom_op_the_kernels_lack_ends_the_trace_before_it(files, x, tmp_path):
    erfinv = files["erfinv_float"]
    result = service.trace_model(erfinv, erfinv, x, {}, tmp_path)
    assert result.skipped == [ERFINV_LINE]
    assert [o.opcode for o in result.ops] == ["FULLY_CONNECTED", "TANH", "MUL"]
    assert result.ops[2].quant is not None   # the float model traced against itself: measured, zero
    assert f"- skipped: {ERFINV_LINE}" in (tmp_path / "trace.md").read_text()


def test_a_compiled_model_ends_with_a_report_naming_what_it_skipped(files, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["trace", "--models", str(files["compiled"]), "--devices", "cpu",
                     "--dataset", str(files["data"]), "--out", str(out)])
    err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err.err and "internal error" not in err.err
    md = (out / "compiled.tflite" / "trace.md").read_text()
    assert f"- skipped: {COMPILED_LINE}" in md and "Nothing traced" in md
    data = json.loads((out / "compiled.tflite" / "trace.json").read_text())
    assert data["ops"] == [] and data["skipped"] == [COMPILED_LINE]


def test_the_runs_trace_of_a_stateful_custom_op_model_records_both_skips(files, tmp_path):
    """What the automatic trace of a run calls (``trace_prepared``), on a model with both."""
    from qat_harness.build.cache import ArtifactCache
    from qat_harness.preparation import DataOptions, prepare
    from qat_harness.sources import parse_models

    (source,) = parse_models([str(files["custom_int8"])])
    prepared = prepare(source, DataOptions(dataset=str(files["data"])), ArtifactCache(), tmp_path / "work", print)
    result = service.trace_prepared(prepared, {}, tmp_path / "trace", n_examples=4)
    assert result.skipped[0].startswith("op 6 CUSTOM:MySoftmax: custom op 'MySoftmax', which LiteRT's built-in "
                                        "and reference kernels lack")
    assert result.skipped[0].endswith("; ops 7-9 after it are not traced")
    assert result.skipped[1].startswith("op 0 CALL_ONCE, op 1 VAR_HANDLE, op 2 READ_VARIABLE: resource-variable ops")
    assert [o.opcode for o in result.ops] == ["QUANTIZE", "ADD", "FULLY_CONNECTED"]
    assert result.summary().markdown == str(tmp_path / "trace" / "trace.md")


def test_a_child_that_crashes_is_a_recorded_skip(files, x, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise DeviceError("runtime crashed with SIGSEGV", kind="crash")

    monkeypatch.setattr(capture, "run_child", crash)
    erfinv = files["erfinv_float"]
    result = service.trace_model(erfinv, erfinv, x, {}, tmp_path)
    assert result.ops == [] and result.culprit is None
    assert result.skipped == [ERFINV_LINE, "the whole model: LiteRT could not run it to trace it "
                                           "(crash: runtime crashed with SIGSEGV)"]
    assert "Nothing traced" in (tmp_path / "trace.md").read_text()
