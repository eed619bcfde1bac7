"""Can Qualcomm's HTP emulator (onnxruntime-qnn, x86-64, QNN's HTP backend emulated, CPU fallback
disabled) judge the harness's int8 models? Issue 22's measurement, kept runnable. Not a test.

The chain: the harness's QAT int8 ``.tflite`` -> QDQ ONNX (tf2onnx, ``--tflite``) -> exact
rewrites into the node units QNN's HTP takes -> ONNX Runtime's CPU EP and the HTP emulator, each
against LiteRT's reference kernels and XNNPACK on the same int8 inputs.

Three Python environments, none of them the harness's own for the ONNX side:

    python3 -m venv /tmp/qnnvenv && /tmp/qnnvenv/bin/pip install onnxruntime-qnn onnx
    python3 -m venv --system-site-packages /tmp/tf2onnxvenv && \\
        /tmp/tf2onnxvenv/bin/pip install --no-deps tf2onnx && /tmp/tf2onnxvenv/bin/pip install onnx
    python3 benchmarks/qnn_htp_emulator.py MODEL.tflite --qnn-python /tmp/qnnvenv/bin/python \\
        --tf2onnx-python /tmp/tf2onnxvenv/bin/python [--examples 64]

(``tflite2onnx`` 0.4.1 refuses per-channel weights: "Per-tensor support only currently".)
Inputs: digits' evaluation split for a 32x32x1 model, else random int8.

The rewrites (``rewrite``) keep every int8 value: tf2onnx writes op -> Relu (or Clip, ReLU6) ->
Q(s, zp) with zp above -128 (TFLite's fused ReLU clamps at Q(0)), which QNN does not group;
op -> Q -> DQ -> Relu -> Q computes max(Q(x), zp) = Q(relu(x)) (Q is monotonic). An int8
Reshape/Squeeze/Transpose feeding a DQ becomes DQ -> it -> Q -> DQ (Q(DQ(q)) = q). Batch 1 is
made static (QNN needs shapes). Checked: ONNX Runtime's CPU EP gives the same values before and
after the rewrite at ORT_ENABLE_BASIC.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


# -- run by the QNN environment's python ------------------------------------------------------
def rewrite(src: str, dst: str) -> None:
    import onnx
    from onnx import helper

    m = onnx.load(src)
    g = m.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    produced_by_dq = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    added, k = [], 0
    for n in list(g.node):
        users = consumers.get(n.output[0], [])
        if n.op_type in ("Relu", "Clip") and n.input[0] not in produced_by_dq and len(users) == 1 \
                and users[0].op_type == "QuantizeLinear":
            q, k = users[0], k + 1
            added += [helper.make_node("QuantizeLinear", [n.input[0], q.input[1], q.input[2]], [f"rq{k}"]),
                      helper.make_node("DequantizeLinear", [f"rq{k}", q.input[1], q.input[2]], [f"rdq{k}"])]
            n.input[0] = f"rdq{k}"
        elif n.op_type in ("Reshape", "Squeeze", "Transpose") and len(users) == 1 \
                and users[0].op_type == "DequantizeLinear":
            dq, k = users[0], k + 1
            moved = helper.make_node(n.op_type, [f"sdq{k}", *n.input[1:]], [f"s{k}"])
            moved.attribute.extend(n.attribute)  # Transpose's perm
            added += [helper.make_node("DequantizeLinear", [n.input[0], dq.input[1], dq.input[2]], [f"sdq{k}"]),
                      moved,
                      helper.make_node("QuantizeLinear", [f"s{k}", dq.input[1], dq.input[2]], [f"sq{k}"])]
            dq.input[0] = f"sq{k}"
            g.node.remove(n)
    g.node.extend(added)
    known = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        ready = [n for n in pending if all(t in known for t in n.input)]
        if not ready:
            raise SystemExit("the rewritten graph has a cycle")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if n not in ready]
    del g.node[:]
    g.node.extend(ordered)
    for v in list(g.input) + list(g.output):
        dim = v.type.tensor_type.shape.dim[0]
        if dim.dim_param:
            dim.ClearField("dim_param")
            dim.dim_value = 1
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


def _compare(a: np.ndarray, b: np.ndarray, label: str) -> None:
    diff = np.abs(a.astype(int) - b.astype(int))
    print(f"{label}: max {diff.max()} steps, mean {diff.mean():.3f}, identical {(diff == 0).mean():.2%}, "
          f"within 1 step {(diff <= 1).mean():.2%}, top-1 agreement {(a.argmax(1) == b.argmax(1)).mean():.2%}")


def evaluate(onnx_path: str, npz_path: str) -> None:
    import time

    import onnxruntime as ort
    import onnxruntime_qnn

    d = np.load(npz_path)
    x, ref, xnn = d["x"], d["ref"], d["xnn"]

    def run(session) -> np.ndarray:
        name = session.get_inputs()[0].name
        t0 = time.perf_counter()
        out = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
        print(f"  {len(x)} inferences in {time.perf_counter() - t0:.1f} s")
        return out

    options = ort.SessionOptions()
    # measured: ORT_ENABLE_ALL computes the rewritten graph wrong (max 250 steps); BASIC keeps it
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    cpu = run(ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"]))
    _compare(cpu, ref, "ONNX Runtime CPU EP vs LiteRT reference kernels")
    _compare(cpu, xnn, "ONNX Runtime CPU EP vs XNNPACK")
    _compare(xnn, ref, "XNNPACK vs LiteRT reference kernels")
    ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    devices = [dev for dev in ort.get_ep_devices() if dev.ep_name == "QNNExecutionProvider"]
    htp_options = ort.SessionOptions()
    htp_options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    htp_options.add_provider_for_devices(devices[:1], {"backend_type": "htp"})
    htp = run(ort.InferenceSession(onnx_path, htp_options))
    _compare(htp, ref, "QNN HTP emulator vs LiteRT reference kernels")
    _compare(htp, cpu, "QNN HTP emulator vs ONNX Runtime CPU EP")
    _compare(htp, xnn, "QNN HTP emulator vs XNNPACK")


# -- run by the harness's python ----------------------------------------------------------------
def reference(model: Path, examples: int, npz: Path) -> None:
    from qat_harness.core.errors import DeviceError
    from qat_harness.core.tflite import inspect_model, model_inputs
    from qat_harness.devices.litert.cpu import CpuDevice, CpuRefDevice

    info = inspect_model(model)
    shape = info.tensor(info.inputs[0]).shape
    if list(shape[1:]) == [32, 32, 1]:
        from qat_harness.models.datasets import digits

        x = model_inputs(info, np.asarray(digits().x_eval)[:examples])
    else:
        x = np.random.default_rng(0).integers(-128, 128, (examples, *shape[1:]), dtype=np.int8)
    x = x[0] if isinstance(x, list) else x
    xnn = CpuDevice().run(model, x).outputs
    try:
        ref = CpuRefDevice().run(model, x).outputs
    except DeviceError as exc:  # the reference kernels abort on some graphs: XNNPACK stands in, said so
        print(f"LiteRT's reference kernels did not run it ({exc.reason}): 'reference kernels' below are XNNPACK")
        ref = xnn
    np.savez(npz, x=x, ref=ref, xnn=xnn)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("rewrite", "evaluate"):
        {"rewrite": rewrite, "evaluate": evaluate}[sys.argv[1]](sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--qnn-python", required=True)
    parser.add_argument("--tf2onnx-python", required=True)
    parser.add_argument("--examples", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qnn-htp-") as tmp:
        folder = Path(tmp)
        reference(args.model.resolve(), args.examples, folder / "ref.npz")
        subprocess.run([args.tf2onnx_python, "-m", "tf2onnx.convert", "--tflite", str(args.model.resolve()),
                        "--output", str(folder / "qdq.onnx"), "--opset", "17"], check=True, capture_output=True)
        here = str(Path(__file__).resolve())
        subprocess.run([args.qnn_python, here, "rewrite", str(folder / "qdq.onnx"), str(folder / "qnn.onnx")],
                       check=True)
        subprocess.run([args.qnn_python, here, "evaluate", str(folder / "qnn.onnx"), str(folder / "ref.npz")],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
