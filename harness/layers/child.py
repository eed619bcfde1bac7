"""Child-process side of the layer matrix: builds a probe model, takes it through the ``qat``
and ``convert`` stages and writes the .tflite, its inputs and the QAT Keras model's outputs.
When the request asks for ``float_model`` (the recipe axis, ``layers --recipes``), it also
writes the probe's float .tflite (the Keras model before QAT, converted without quantization),
the float model's outputs on the probe inputs and which Keras layers are under test.

One child serves many probes (a TensorFlow import costs seconds, a probe about one): the
parent (``harness.layers``) writes one JSON request per line on stdin; the child answers on
its original stdout with JSON lines: ``{"event": "ready"}`` once, then per probe a
``{"event": "stage", "stage": ...}`` before each stage and a ``{"event": "result", ...}``.
File descriptor 1 is pointed at stderr right away, so whatever TensorFlow, tfmot or a user's
probe prints can never corrupt the protocol. A converter that aborts or a probe that hangs
kills only this process: the parent knows which stage was running, records an ERROR, and
starts a new child for the next probe.

Run through ``core.child.ServingChild("qat_harness.layers.child")``.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

from qat_harness.claims.layer_matrix import Cell
from qat_harness.core import keras2
from qat_harness.core.child import serve_lines
from qat_harness.layers.protocol import (
    BUILTIN,
    USER,
    Documentation,
    FloatModel,
    FloatModelFiles,
    ProbeFiles,
    ProbeLayer,
    ProbeRequest,
    ProbeResult,
)
from qat_harness.results import Verdict

SEED = 0
TRAIN_LR = 1e-3
#: the folder user probe modules are imported from (the user's working folder)
USER_DIR_ENV = "QAT_HARNESS_PROBE_PATH"


class ProbeBuildError(Exception):
    """The probe's own builder failed (ERROR at the first stage, not the layer's fault)."""


def _line(exc: BaseException, limit: int = 300) -> str:
    """The first meaningful line of an exception, prefixed by its type. Keras wraps errors
    raised inside a layer ('Exception encountered when calling layer ...'): then the inner
    error line is the meaningful one."""
    import re

    text = str(exc)
    wrapped = re.match(r'Exception encountered when calling layer "([^"]+)"', text)
    inner = re.findall(r"^\s*(\w+(?:Error|Exception)): (.+)$", text, re.M)
    if wrapped and inner:
        return f"{inner[-1][0]}: {inner[-1][1].strip()[:limit]} (in layer {wrapped.group(1)})"
    for raw in text.splitlines():
        text = raw.strip()
        if text and not text.startswith(("Traceback", "<unknown>", "File ")):
            if "error:" in text and "tfl." in text:  # MLIR: keep the diagnostic itself
                text = text.split("error:", 1)[1].strip()
            return f"{type(exc).__name__}: {text[:limit]}"
    return type(exc).__name__


def _qat_refusal(exc: BaseException) -> str:
    """tfmot's 'Layer x:<class 'a.b.C'> is not supported. You can quantize ...' said short."""
    import re

    m = re.search(r"Layer (\S+):<class '[^']*?(\w+)'> is not supported", str(exc))
    if m:
        return (f"{type(exc).__name__}: layer {m.group(1)} ({m.group(2)}) is not supported by the "
                "default 8-bit registry; it needs a QuantizeConfig (quantize_annotate_layer)")
    return _line(exc)


# -- probe loading ------------------------------------------------------------------------------
def load_probe(req: ProbeRequest):
    """(model, quantize_configs, layer label, int_high) for a built-in or user probe.

    A user probe is ``module:function`` (``qat-harness layers --probe my_probes:make``). The
    module is imported in this child process, from the folder the harness runs in (or from
    PYTHONPATH): that runs the user's code by the user's own request; no model file is ever
    deserialized. The function takes no argument and returns one of:

    - a tf_keras model (Sequential or Functional; one input and one output to reach the
      device stages);
    - ``(model, quantize_configs)`` where ``quantize_configs`` maps a layer class (or its
      name) to a ``tfmot.quantization.keras.QuantizeConfig`` instance (or a class that takes
      no argument): every layer of that class is annotated with it, every other layer with
      tfmot's default 8-bit registry, and ``quantize_apply`` runs inside a ``quantize_scope``
      that knows the model's layer classes and the config classes.

    Optional attributes on the function: ``quantize_configs`` (the same dict, when the
    function returns only the model), ``probe_layer`` (the name shown in the matrix;
    default: the class of the model's last layer), ``int_high`` (integer inputs drawn from
    [0, int_high), e.g. token ids; integer model inputs default to [0, 16)). Inputs are
    otherwise seeded floats in [-1, 1].

    A function that raises, or returns something else, is an ERROR of the ``qat`` stage
    with the reason; one that crashes or hangs the process is an ERROR too (the parent sees
    the signal or the timeout)."""
    import tf_keras as keras

    if req.kind == BUILTIN:
        from qat_harness.models.probes import PROBES
        probe = PROBES[req.ref]
        try:
            model = probe.build()
        except Exception as exc:  # noqa: BLE001
            raise ProbeBuildError(f"probe builder raised {_line(exc)}") from None
        return model, {}, probe.layer, probe.int_high
    from qat_harness.build.keras_loading import call_user_function

    func, returned = call_user_function(req.ref, ProbeBuildError)
    configs = getattr(func, "quantize_configs", None)
    model = returned
    if isinstance(returned, tuple):
        if len(returned) != 2:
            raise ProbeBuildError(f"{req.ref} returned a tuple of {len(returned)}; "
                                  "expected a model or (model, quantize_configs)")
        model, configs = returned
    if not isinstance(model, keras.Model):
        raise ProbeBuildError(f"{req.ref} returned {type(model).__name__}, not a tf_keras model "
                              "(build it with `import tf_keras as keras`)")
    label = getattr(func, "probe_layer", None) or _last_layer(model)
    return model, _normalise_configs(configs, req.ref), label, getattr(func, "int_high", None)


def _all_layers(model) -> list:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _last_layer(model) -> str:
    layers = getattr(model, "layers", [])
    return type(layers[-1]).__name__ if layers else type(model).__name__


def _normalise_configs(configs, ref: str) -> dict:
    """{layer class name: QuantizeConfig instance}; keys may be names or classes, values
    instances or zero-argument classes."""
    import tensorflow_model_optimization as tfmot

    if not configs:
        return {}
    if not isinstance(configs, dict):
        raise ProbeBuildError(f"{ref}: quantize_configs must be a dict {{layer class name: QuantizeConfig}}")
    out = {}
    base = tfmot.quantization.keras.QuantizeConfig
    for key, value in configs.items():
        name = key if isinstance(key, str) else getattr(key, "__name__", str(key))
        if isinstance(value, type) and issubclass(value, base):
            value = value()
        if not isinstance(value, base):
            raise ProbeBuildError(f"{ref}: the config for {name} is {type(value).__name__}, "
                                  "not a tfmot QuantizeConfig")
        out[name] = value
    return out


# -- stages -------------------------------------------------------------------------------------
def make_inputs(model, n: int, int_high: int | None):
    """Seeded inputs of the model's input shape: floats in [-1, 1], or token ids in
    [0, int_high) for an integer input."""
    import numpy as np

    shape = _input_shape(model)
    rng = np.random.default_rng(SEED)
    dtype = model.inputs[0].dtype.name if getattr(model, "inputs", None) else "float32"
    if int_high or dtype.startswith("int"):
        return rng.integers(0, int_high or 16, (n, *shape)).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)


def _input_shape(model) -> tuple:
    if getattr(model, "inputs", None):
        return tuple(int(d) for d in model.inputs[0].shape[1:])
    built = getattr(model, "_build_input_shape", None)
    if built is None:
        raise ProbeBuildError("the model has no known input shape (build or call it first)")
    return tuple(int(d) for d in tuple(built)[1:])


def quantize(model, configs: dict, user: bool = False):
    """tfmot's default 8-bit QAT, with the probe's own QuantizeConfigs where given.
    A user's model goes through ``quantize_scope`` with its own layer classes, so a custom
    layer without a QuantizeConfig is refused for what it is (not in the registry) rather
    than with tfmot's 'Unable to clone model'. Returns (qat_model, tfmot warnings)."""
    import tensorflow_model_optimization as tfmot

    from qat_harness.build import training

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not configs and not user:
            qat = training.quantize(model)
        else:
            qat = _quantize_with_configs(model, configs, tfmot.quantization.keras)
    notes = [str(w.message).strip().splitlines()[0] for w in caught
             if "model_optimization" in (w.filename or "") or "quantiz" in str(w.message).lower()]
    return qat, list(dict.fromkeys(notes))


def _quantize_with_configs(model, configs: dict, qk):
    """What ``quantize_model`` does, except that layers of the classes in ``configs`` are
    annotated with the probe's QuantizeConfig instead of the registry's."""
    import tf_keras as keras

    from qat_harness.build import training

    training.check_supported_model(model)

    def annotate(layer):
        cfg = configs.get(type(layer).__name__)
        if cfg is not None:
            return qk.quantize_annotate_layer(layer, cfg)
        if isinstance(layer, keras.layers.Lambda):
            warnings.warn("Lambda layers are not supported by automatic model annotation; "
                          "this layer will not be quantized", stacklevel=2)
            return layer
        if isinstance(layer, keras.Model):
            raise ValueError("Quantizing a keras Model inside another keras Model is not supported.")
        return qk.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    scope = {type(c).__name__: type(c) for c in configs.values()}
    scope.update({type(l).__name__: type(l) for l in model.layers})
    with qk.quantize_scope(scope):
        return qk.quantize_apply(annotated)


def train_one_step(qat, x) -> float:
    """One optimizer step on the whole input set (MSE to a seeded random target)."""
    import numpy as np
    import tf_keras as keras

    out_shape = tuple(int(d) for d in qat.outputs[0].shape[1:])
    y = np.random.default_rng(SEED + 1).normal(size=(len(x), *out_shape)).astype(np.float32)
    qat.compile(optimizer=keras.optimizers.Adam(TRAIN_LR), loss="mse")
    hist = qat.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return float(hist.history["loss"][-1])


def run_probe(req: ProbeRequest, emit) -> ProbeResult:
    import tf_keras as keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    workdir = Path(req.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result = ProbeResult()

    emit({"event": "stage", "stage": "qat"})
    t0 = time.perf_counter()
    try:
        model, configs, label, int_high = load_probe(req)
    except ProbeBuildError as exc:
        result.stages["qat"] = Cell(Verdict.ERROR, str(exc))
        return result
    result.layer = label
    _qat_and_convert(req, emit, workdir, result, model, configs, int_high, t0)
    if req.float_model:
        # After the int8 stages, which therefore never depend on the flag; QAT works on a
        # clone, so ``model`` still holds the untouched float weights here.
        emit({"event": "stage", "stage": "float"})
        result.float_model = write_float_model(model, label, workdir, req.n_examples, int_high)
    return result


def _single_io(model) -> bool:
    return len(getattr(model, "inputs", None) or [None]) == 1 and \
        len(getattr(model, "outputs", None) or [None]) == 1


def _qat_and_convert(req: ProbeRequest, emit, workdir: Path, result: ProbeResult, model, configs: dict,
                     int_high: int | None, t0: float) -> None:
    """The ``qat`` and ``convert`` stages; fills ``result`` (stages, files, timings)."""
    import numpy as np

    from qat_harness.build.convert import ConversionError, to_tflite

    stages = result.stages
    try:
        from qat_harness.build import tfmot_registry
        from qat_harness.record.codec import structure
        result.documented = structure(Documentation, tfmot_registry.document_model(model, configs))
    except Exception as exc:  # noqa: BLE001 - a registry we cannot read documents nothing
        result.documented = Documentation("unknown", summary=f"registry not readable: {_line(exc)}")
    result.has_batchnorm = any("BatchNormalization" in type(l).__name__ for l in _all_layers(model))
    result.single_io = _single_io(model)
    try:
        qat, notes = quantize(model, configs, user=req.kind == USER)
    except Exception as exc:  # noqa: BLE001 - tfmot refusing the layer is the finding
        stages["qat"] = Cell(Verdict.FAIL, f"QAT refused: {_qat_refusal(exc)}")
        return
    try:
        x = make_inputs(qat, req.n_examples, int_high)
        loss = train_one_step(qat, x)
    except ProbeBuildError as exc:
        stages["qat"] = Cell(Verdict.ERROR, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a QAT model that cannot train is the finding
        stages["qat"] = Cell(Verdict.FAIL, f"QAT model applied but one training step failed: {_line(exc)}")
        return
    result.timings["qat_s"] = round(time.perf_counter() - t0, 3)
    if not np.isfinite(loss):
        stages["qat"] = Cell(Verdict.FAIL, f"one training step gave a non-finite loss ({loss})")
        return
    if notes:
        stages["qat"] = Cell(Verdict.WARN, f"QAT applied, with tfmot warning: {notes[0]}")
    else:
        stages["qat"] = Cell(Verdict.PASS, f"quantize_model applied, one training step (loss {loss:.3g})")
    result.custom_configs = sorted(configs)

    emit({"event": "stage", "stage": "convert"})
    t0 = time.perf_counter()
    try:
        blob = to_tflite(qat, full_int8=True, calibration=x)
    except ConversionError as exc:
        stages["convert"] = Cell(Verdict.FAIL, f"converter refused: {exc}")
        return
    except Exception as exc:  # noqa: BLE001
        stages["convert"] = Cell(Verdict.FAIL, f"converter failed: {_line(exc)}")
        return
    result.timings["convert_s"] = round(time.perf_counter() - t0, 3)
    stages["convert"] = Cell(Verdict.PASS, f"full-int8 .tflite, {len(blob)} bytes")
    files = ProbeFiles(str(workdir / "model.tflite"), str(workdir / "inputs.npy"),
                       str(workdir / "keras_outputs.npy"))
    Path(files.tflite).write_bytes(blob)
    np.save(files.inputs, x, allow_pickle=False)
    outputs = qat.predict(x, verbose=0, batch_size=len(x))
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    np.save(files.keras_outputs, np.asarray(outputs, dtype=np.float32), allow_pickle=False)
    result.files = files


# -- the float model, for the recipe axis ---------------------------------------------------------
def _converter_line(exc: BaseException) -> str:
    """'ConverterError: <frozen runpy>:198:1: error: what' said as 'ConverterError: what'."""
    text = str(exc)
    kind, sep, rest = text.partition(": ")
    if sep and " error: " in rest:
        return f"{kind}: {rest.split(' error: ', 1)[1].strip()}"
    return text


def layers_under_test(model, label: str) -> list[ProbeLayer]:
    """Every Keras layer of the model (nested ones too) with its weight count and whether it
    is under test: a layer whose class the probe's label names ('Conv2D+BatchNormalization'
    names both; 'ReLU(max_value=6)' names ReLU). When the label names no class ('Sequential
    model'), the whole model is under test."""
    import re

    named = set(re.findall(r"[A-Za-z_]\w*", label or ""))
    layers = [l for l in _all_layers(model) if type(l).__name__ != "InputLayer"]
    tested = {id(l) for l in layers if type(l).__name__ in named} or {id(l) for l in layers}
    return [ProbeLayer(l.name, type(l).__name__, len(l.weights), id(l) in tested) for l in layers]


def write_float_model(model, label: str, workdir: Path, n_examples: int, int_high: int | None) -> FloatModel:
    """The probe's float .tflite, the probe inputs and the float Keras model's outputs on them
    (the seeded inputs of ``make_inputs``: the same values the int8 stages use). Never raises:
    a refusal is the ``verdict``/``reason`` of the result."""
    import numpy as np

    from qat_harness.build.convert import ConversionError, to_tflite

    layers, layers_error = None, None
    try:
        layers = layers_under_test(model, label)
    except Exception as exc:  # noqa: BLE001 - the weights stage then says it cannot tell
        layers_error = _line(exc)

    def answer(verdict: Verdict, reason: str, files: FloatModelFiles | None = None,
               seconds: float | None = None) -> FloatModel:
        return FloatModel(verdict, reason, files or FloatModelFiles(), layers, layers_error, seconds)

    t0 = time.perf_counter()
    try:
        blob = to_tflite(model, full_int8=False)
    except ConversionError as exc:
        return answer(Verdict.FAIL, f"the float model does not convert: {_converter_line(exc)}")
    except Exception as exc:  # noqa: BLE001
        return answer(Verdict.FAIL, f"the float conversion failed: {_line(exc)}")
    float_tflite = workdir / "float.tflite"
    float_tflite.write_bytes(blob)
    files = FloatModelFiles(str(float_tflite))
    if _single_io(model):  # the device adapters feed one input and read one output
        try:
            x = make_inputs(model, n_examples, int_high)
            outputs = model.predict(x, verbose=0, batch_size=len(x))
        except Exception as exc:  # noqa: BLE001
            return answer(Verdict.ERROR, f"the float model cannot predict: {_line(exc)}", files)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        inputs, float_outputs = workdir / "float_inputs.npy", workdir / "float_outputs.npy"
        np.save(inputs, x, allow_pickle=False)
        np.save(float_outputs, np.asarray(outputs, dtype=np.float32), allow_pickle=False)
        files = FloatModelFiles(str(float_tflite), str(inputs), str(float_outputs))
    return answer(Verdict.PASS, f"float .tflite, {len(blob)} bytes", files, round(time.perf_counter() - t0, 3))


# -- protocol -----------------------------------------------------------------------------------
def _prepare() -> None:
    keras2.enter()
    import tensorflow  # noqa: F401 - pay the import before saying ready
    import tensorflow_model_optimization  # noqa: F401
    import tf_keras  # noqa: F401

    # User probe modules are found as from the user's shell: the parent passes its working
    # folder, since a harness child runs in a private folder with the safe-path flag.
    user_dir = os.environ.get(USER_DIR_ENV)
    if user_dir:
        sys.path.append(user_dir)  # after the standard library: a json.py there shadows nothing


def _handle(request: dict, emit) -> dict:
    from qat_harness.record.codec import structure

    try:
        return run_probe(structure(ProbeRequest, request), emit).to_json()
    except Exception as exc:  # noqa: BLE001 - the harness's own failure, reported per probe
        return ProbeResult(error=f"probe child failed: {_line(exc)}").to_json()


if __name__ == "__main__":
    sys.exit(serve_lines(_handle, prepare=_prepare))
