"""Issue 20, two shapes of real models through ``qat-harness run --devices cpu,cpu-ref``: a
stateful model (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE: its state is a resource variable
updated by every call) and models with a custom op that LiteRT's built-in and reference kernels
lack. Each gets a complete report, a row per claim and device with a one-line reason (ERROR or
SKIP where a device cannot run the file), exit 0 or 1: never an internal error or a traceback.
Only an ``edgetpu-custom-op`` is a compiled model; any other custom op is not called one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import user_models

from qat_harness import cli
from qat_harness.core import tflite

FAST = ["--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1", "--no-trace"]
DEVICES = ("cpu", "cpu-ref")
#: The claims judged per model on every device, and per file (device 'any').
PER_DEVICE = {"K2-reference-agreement", "A1-accuracy", "A2-agreement", "A3-output-fidelity", "C2-cpu-latency"}
PER_FILE = {"C1-size", "C4-full-int", "C5-per-axis", "M3-bn-fold"}
RESOURCE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}
CUSTOM_CODE = "MySoftmax"


def _converter(module, *, int8: bool = False, custom_ops: bool = False):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    converter.experimental_enable_resource_variables = True
    converter.allow_custom_ops = custom_ops
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([np.random.default_rng(i).normal(size=(1, 8)).astype(np.float32)]
                                                    for i in range(16))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _stateful_module():
    """A streaming cell: its state (a tf.Variable) is added to the input and replaced by half the
    hidden activation on every call, so each answer depends on the inputs before it."""
    import tensorflow as tf

    class Streaming(tf.Module):
        def __init__(self):
            super().__init__()
            self.state = tf.Variable(tf.zeros([1, 8]), name="state")
            self.w = tf.constant(np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def __call__(self, x):
            hidden = tf.nn.relu(tf.matmul(x + self.state, self.w))
            self.state.assign(0.5 * hidden)
            return tf.nn.softmax(hidden)

    return Streaming()


def _erfinv_module():
    """``tf.math.erfinv`` has no TFLite builtin: with allow_custom_ops the converter leaves a
    CUSTOM op 'Erfinv' among ordinary float ops."""
    import tensorflow as tf

    class WithErfinv(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def __call__(self, x):
            return tf.nn.softmax(tf.math.erfinv(tf.tanh(tf.matmul(x, tf.ones([8, 8]) * 0.1)) * 0.5))

    return WithErfinv()


def _softmax_as_custom_op(int8_tflite: bytes) -> bytes:
    """The same int8 model with its SOFTMAX rewritten into a CUSTOM op 'MySoftmax' (as a vendor's
    kernel would appear): one custom op among int8 builtins, not a compiled graph."""
    s = user_models._schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(int8_tflite, 0))
    for code in model.operatorCodes:
        if code.builtinCode == s.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
            code.customCode = CUSTOM_CODE
    for graph in model.subgraphs:
        for op in graph.operators:
            if model.operatorCodes[op.opcodeIndex].customCode == CUSTOM_CODE:
                op.builtinOptionsType, op.builtinOptions = 0, None
    return user_models._pack(model)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stateful-custom")
    stateful, erfinv = _stateful_module(), _erfinv_module()
    made = {"stateful_float": _converter(stateful), "stateful_int8": _converter(stateful, int8=True),
            "erfinv_float": _converter(erfinv, custom_ops=True)}
    made["custom_int8"] = _softmax_as_custom_op(made["stateful_int8"])
    paths = {}
    for name, data in made.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    rng = np.random.default_rng(3)
    paths["data"] = folder / "stream.npz"
    np.savez(paths["data"], x=rng.normal(size=(40, 8)).astype(np.float32), y=rng.integers(0, 8, 40))
    return paths


def run(capsys, tmp_path, *args):
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", ",".join(DEVICES), "--out", str(out), *FAST, *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 1), err[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").is_file()
    return report


def rows(report, model):
    """The report's claims of one model, keyed (claim, device); every row has a one-line reason."""
    found = {(c["id"], c["device"]): c for c in report["claims"] if c["model"] == model}
    assert {(cid, d) for cid in PER_DEVICE for d in DEVICES} | {(cid, "any") for cid in PER_FILE} <= set(found)
    for c in found.values():
        assert c["reason"] and "\n" not in c["reason"], c
    return found


def test_the_fixtures_have_the_shapes_they_claim(files):
    ops = {name: {op.opcode for op in tflite.inspect_model(files[name]).ops}
           for name in ("stateful_float", "stateful_int8", "erfinv_float", "custom_int8")}
    assert RESOURCE_OPS <= ops["stateful_float"] and RESOURCE_OPS <= ops["stateful_int8"]
    assert "CUSTOM:Erfinv" in ops["erfinv_float"] and f"CUSTOM:{CUSTOM_CODE}" in ops["custom_int8"]
    assert "SOFTMAX" not in ops["custom_int8"] and "FULLY_CONNECTED" in ops["custom_int8"]


def test_a_stateful_float_model_alone_runs_on_both_kernels_and_agrees(files, capsys, tmp_path):
    model = files["stateful_float"].name
    found = rows(run(capsys, tmp_path, "--models", str(files["stateful_float"])), model)
    k2 = found[("K2-reference-agreement", "cpu")]
    assert k2["verdict"] == "PASS", k2
    c4 = found[("C4-full-int", "any")]
    assert c4["verdict"] == "SKIP" and "float32 file" in c4["reason"], c4


def test_a_stateful_int8_model_with_its_float_model_is_judged_on_both_kernels(files, capsys, tmp_path):
    model = files["stateful_int8"].name
    report = run(capsys, tmp_path, "--models", f"{files['stateful_int8']}={files['stateful_float']}",
                 "--dataset", str(files["data"]))
    found = rows(report, model)
    k2 = found[("K2-reference-agreement", "cpu")]
    assert k2["verdict"] == "PASS" and "int8 steps" in k2["reason"], k2   # the int8 output, in its own steps
    for device in DEVICES:
        a2 = found[("A2-agreement", device)]
        assert a2["verdict"] in ("PASS", "WARN", "FAIL") and a2["measured"] is not None, a2


@pytest.mark.parametrize("name, op", [("erfinv_float", "Erfinv"), ("custom_int8", CUSTOM_CODE)])
def test_a_custom_op_the_kernels_lack_is_an_error_row_naming_it(files, capsys, tmp_path, name, op):
    found = rows(run(capsys, tmp_path, "--models", str(files[name])), files[name].name)
    for device in DEVICES:
        for cid in PER_DEVICE:
            row = found[(cid, device)]
            if row["verdict"] == "SKIP":   # a claim that does not apply on this device (the oracle's own K2, C2)
                continue
            assert row["verdict"] == "ERROR" and f"custom op '{op}'" in row["reason"], row
            assert "work is in" not in row["reason"], row   # one custom op among builtins is not the whole model


@pytest.mark.parametrize("name", ["erfinv_float", "custom_int8"])
def test_only_an_edgetpu_custom_op_is_called_a_compiled_model(files, capsys, tmp_path, name):
    found = rows(run(capsys, tmp_path, "--models", str(files[name])), files[name].name)
    for row in found.values():
        assert "compiled" not in row["reason"] and "uncompiled" not in row["reason"], row
