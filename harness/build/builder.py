"""Child-process side of artifact building (Keras 2 lives only here): build or load the model,
train it in float where there is training data, apply tfmot's default 8-bit QAT scheme and
fine-tune, then convert the float32, post-training full-int8 and QAT full-int8 variants,
and the A1 control arm (``float_ft``: the float model fine-tuned exactly like QAT).

Run by ``build.artifacts`` as ``python -P -m qat_harness.build.builder request response``
(``core.child``): a converter that aborts or a training that hangs takes down only this
process. The request names the model source, the training plan, the data file (.npz written
by the parent) and the folder to fill; the response is the metrics written to metrics.json.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from qat_harness.build import fingerprint
from qat_harness.core import keras2
from qat_harness.core.child import report_progress, serve_once
from qat_harness.core.errors import UsageError

VARIANT_FILES = ("float", "ptq_int8", "qat_int8")
#: The QAT Keras model's weights (fake-quant ranges included): with the source, the trace
#: rebuilds the QAT Keras model and reads its layer outputs (the "conversion" stage: QAT Keras
#: vs the int8 file). Weights, not a saved model: a user model's custom objects need no
#: serialization, and loading never deserializes code.
QAT_WEIGHTS_FILE = "qat_keras.weights.h5"
#: The A1 control arm: the float model fine-tuned exactly like QAT (same epochs, learning
#: rate, batch size, seed and data), so that "QAT int8 vs float" does not count QAT's extra
#: training as a gain of quantization. Float32; not one of the variants under test.
CONTROL_VARIANT = "float_ft"


def build_model(source: dict):
    """(float tf_keras model, dataset the source brings or None, notes) for a source."""
    loaded = load_source(source)
    return loaded.model, loaded.dataset, loaded.notes


def load_source(source: dict):
    """The source's float tf_keras model with what comes with it (``keras_loading.LoadedModel``)."""
    from qat_harness.build import keras_loading

    if source["kind"] == "registry":
        from qat_harness.models import registry
        spec = registry.get(source["name"])
        return keras_loading.LoadedModel(spec.build(registry.ModelConfig(**source["config"])))
    if source["kind"] == "factory":
        import tf_keras

        # unseeded initialisers then give the same model in every child: its digest keys the cache
        tf_keras.utils.set_random_seed(0)
    return keras_loading.load(source)


def describe(req: dict) -> dict:
    """The model's signature (and the dataset a factory brings, written to ``req['data_out']``),
    so that the parent can prepare data before the build."""
    from qat_harness.build import keras_loading

    keras2.enter()
    loaded = load_source(req["source"])
    model, dataset = loaded.model, loaded.dataset
    result = {**keras_loading.signature(model), "notes": loaded.notes, "has_dataset": dataset is not None,
              "model_digest": fingerprint.model_digest(model),  # what the cache key reads
              "float_preprocessing": loaded.float_preprocessing.to_json()}
    if dataset is not None:
        np.savez(req["data_out"], **{k: np.asarray(v) for k, v in dataset.items()})
    return result


def _load_data(path: str) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _inputs(data: dict, name: str):
    """One array, or a list for a model with several inputs (saved as name_0, name_1, ...)."""
    if name in data:
        return data[name]
    parts = [data[f"{name}_{i}"] for i in range(len(data)) if f"{name}_{i}" in data]
    return parts or None


def _first(x, n: int):
    return [a[:n] for a in x] if isinstance(x, list) else x[:n]


def build(req: dict) -> dict:
    from qat_harness.build import convert, training

    keras2.enter()
    plan, folder, name = req["plan"], Path(req["out"]), req["label"]
    data = _load_data(req["data"])
    x_train, y_train = _inputs(data, "x_train"), data.get("y_train")
    x_eval, y_eval = _inputs(data, "x_eval"), data.get("y_eval")
    labelled = bool(req["labels_meaningful"]) and y_eval is not None
    metrics: dict = {"plan": plan, "conversion_errors": {}, "timings_s": {}}

    t0 = time.perf_counter()
    report_progress(f"{name}: building model")
    model, _, notes = build_model(req["source"])
    metrics["source_notes"] = notes
    if req["source"]["kind"] != "registry":  # the parent checks it is the model it described
        metrics["model_digest"] = fingerprint.model_digest(model)
    if plan["float_epochs"]:
        report_progress(f"{name}: training float ({plan['float_epochs']} epochs)")
        metrics["float_train_accuracy"] = training.train_float(
            model, x_train, y_train, plan["float_epochs"], plan["batch_size"], plan["lr"], plan["seed"])
    metrics["timings_s"]["float_training"] = time.perf_counter() - t0

    calibration = x_train if x_train is not None else x_eval
    if labelled:
        metrics["float_keras_accuracy"] = training.accuracy(model, x_eval, y_eval)

    t0 = time.perf_counter()
    report_progress(f"{name}: quantization-aware training")
    # the control arm starts from the weights QAT starts from
    control_start = training.copy_model(model) if plan["qat_epochs"] else None
    qat_model = training.quantize(model)
    if plan["qat_epochs"]:
        from_logits = training.outputs_are_logits(model, _first(x_train, 32))
        metrics["qat_train_accuracy"] = training.fine_tune_qat(
            qat_model, x_train, y_train, plan["qat_epochs"], plan["batch_size"], plan["qat_lr"],
            plan["seed"], from_logits)
        metrics["qat_calibration"] = f"fine-tuned {plan['qat_epochs']} epoch(s)"
    elif not req["pretrained"]:
        training.calibrate_qat_ranges(qat_model, _first(calibration, 64))
        metrics["qat_calibration"] = "ranges calibrated on inputs (untrained model, zero learning rate)"
    else:
        metrics["qat_calibration"] = "none: no training data, QAT ranges are tfmot's initial ones"
    if labelled:
        metrics["qat_keras_accuracy"] = training.accuracy(qat_model, x_eval, y_eval)
    metrics["timings_s"]["qat"] = time.perf_counter() - t0
    try:
        qat_model.save_weights(str(folder / QAT_WEIGHTS_FILE))
    except Exception as exc:  # noqa: BLE001 - the trace loses one stage; the build goes on
        metrics["qat_weights_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"

    jobs = {"float": (model, False), "ptq_int8": (model, True), "qat_int8": (qat_model, True)}
    if plan["qat_epochs"]:
        t0 = time.perf_counter()
        report_progress(f"{name}: control arm: float fine-tuned like QAT ({plan['qat_epochs']} epochs)")
        control = _control_arm(control_start, x_train, y_train, plan, from_logits)
        metrics["control_arm"] = {"variant": CONTROL_VARIANT, "file": f"{CONTROL_VARIANT}.tflite",
                                  "what": f"float fine-tuned {plan['qat_epochs']} epoch(s) at lr "
                                          f"{plan['qat_lr']:g}, batch {plan['batch_size']}, seed "
                                          f"{plan['seed']}, on the QAT fine-tune's data",
                                  "train_accuracy": control.train_accuracy}
        if labelled:
            metrics["float_ft_keras_accuracy"] = training.accuracy(control.model, x_eval, y_eval)
        metrics["timings_s"]["control_arm"] = time.perf_counter() - t0
        jobs[CONTROL_VARIANT] = (control.model, False)
    for variant, (m, full_int8) in jobs.items():
        t0 = time.perf_counter()
        report_progress(f"{name}: converting {variant}")
        try:
            blob = convert.to_tflite(m, full_int8, _first(calibration, 100))
            (folder / f"{variant}.tflite").write_bytes(blob)
        except convert.ConversionError as exc:
            metrics["conversion_errors"][variant] = str(exc)
        metrics["timings_s"][f"convert_{variant}"] = time.perf_counter() - t0
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"ok": True}


@dataclasses.dataclass
class ControlArm:
    model: object
    train_accuracy: float


def _control_arm(twin, x_train, y_train, plan: dict, from_logits: bool) -> ControlArm:
    """``twin`` (a copy of the trained float model) fine-tuned with QAT's own settings."""
    from qat_harness.build import training

    acc = training.fine_tune(twin, x_train, y_train, plan["qat_epochs"], plan["batch_size"],
                             plan["qat_lr"], plan["seed"], from_logits)
    return ControlArm(twin, acc)


def handle(req: dict) -> dict:
    try:
        return describe(req) if req.get("mode") == "describe" else build(req)
    except UsageError as exc:  # the user's model or data: a one-line error in the parent
        return {"error": str(exc), "kind": "usage"}


if __name__ == "__main__":
    sys.exit(serve_once(handle))
