"""Build (or find in the cache) a model's three .tflite variants and its Keras-side metrics:
build → train float (where the model has a training set) → QAT (tfmot) and fine-tune →
convert float32, post-training full-int8 and QAT full-int8."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from qat_harness.cache import ArtifactCache, cache_key
from qat_harness.models.datasets import Dataset
from qat_harness.models.registry import ModelConfig, ModelSpec


@dataclasses.dataclass
class Artifacts:
    model: str
    folder: Path
    files: dict[str, Path]         # variant -> .tflite (only the ones that converted)
    metrics: dict                  # Keras accuracies, training record, conversion errors
    from_cache: bool

    def path(self, variant: str) -> Path | None:
        return self.files.get(variant)


def _train_plan(spec: ModelSpec, cfg: ModelConfig, data: Dataset) -> dict:
    """What training happens, from the spec and what the data allows."""
    has_train = data.x_train is not None and data.labels_meaningful
    plan = {"float_epochs": spec.train.float_epochs if has_train else 0,
            "qat_epochs": spec.train.qat_epochs if has_train else 0,
            "batch_size": spec.train.batch_size, "lr": spec.train.learning_rate,
            "qat_lr": spec.train.qat_learning_rate, "seed": spec.train.seed}
    if has_train and not spec.trained_here and plan["qat_epochs"] == 0:
        plan["qat_epochs"] = 1  # a user dataset with a train split: a short QAT fine-tune
    return plan


def get_artifacts(spec: ModelSpec, cfg: ModelConfig, data: Dataset, cache: ArtifactCache,
                  progress=lambda msg: None) -> Artifacts:
    plan = _train_plan(spec, cfg, data)
    key = cache_key({"model": spec.name, "config": cfg.key(), "plan": plan, "dataset": data.name})
    entry = cache.lookup(key)
    from_cache = entry is not None
    if entry is None:
        entry = cache.store(key, lambda folder: _build(spec, cfg, data, plan, folder, progress))
    metrics = json.loads((entry / "metrics.json").read_text())
    files = {v: entry / f"{v}.tflite" for v in ("float", "ptq_int8", "qat_int8")
             if (entry / f"{v}.tflite").exists()}
    return Artifacts(spec.name, entry, files, metrics, from_cache)


def _build(spec, cfg, data: Dataset, plan: dict, folder: Path, progress) -> None:
    from qat_harness import convert, training

    metrics: dict = {"plan": plan, "conversion_errors": {}, "timings_s": {}}
    t0 = time.perf_counter()
    progress(f"{spec.name}: building model")
    model = spec.build(cfg)
    if plan["float_epochs"]:
        progress(f"{spec.name}: training float ({plan['float_epochs']} epochs)")
        metrics["float_train_accuracy"] = training.train_float(
            model, data.x_train, data.y_train, plan["float_epochs"], plan["batch_size"],
            plan["lr"], plan["seed"])
    metrics["timings_s"]["float_training"] = time.perf_counter() - t0

    calibration = data.x_train if data.x_train is not None else data.x_eval
    if data.labels_meaningful and data.y_eval is not None:
        metrics["float_keras_accuracy"] = training.accuracy(model, data.x_eval, data.y_eval)

    t0 = time.perf_counter()
    progress(f"{spec.name}: quantization-aware training")
    qat_model = training.quantize(model)
    if plan["qat_epochs"]:
        metrics["qat_train_accuracy"] = training.fine_tune_qat(
            qat_model, data.x_train, data.y_train, plan["qat_epochs"], plan["batch_size"],
            plan["qat_lr"], plan["seed"])
        metrics["qat_calibration"] = f"fine-tuned {plan['qat_epochs']} epoch(s)"
    elif cfg.weights is None:
        training.calibrate_qat_ranges(qat_model, calibration[:64])
        metrics["qat_calibration"] = "ranges calibrated on inputs (untrained model, zero learning rate)"
    else:
        metrics["qat_calibration"] = "none: no training data, QAT ranges are tfmot's initial ones"
    if data.labels_meaningful and data.y_eval is not None:
        metrics["qat_keras_accuracy"] = training.accuracy(qat_model, data.x_eval, data.y_eval)
    metrics["timings_s"]["qat"] = time.perf_counter() - t0

    jobs = {"float": (model, False), "ptq_int8": (model, True), "qat_int8": (qat_model, True)}
    for variant, (m, full_int8) in jobs.items():
        t0 = time.perf_counter()
        progress(f"{spec.name}: converting {variant}")
        try:
            blob = convert.to_tflite(m, full_int8, np.asarray(calibration[:100]))
            (folder / f"{variant}.tflite").write_bytes(blob)
        except convert.ConversionError as exc:
            metrics["conversion_errors"][variant] = str(exc)
        metrics["timings_s"][f"convert_{variant}"] = time.perf_counter() - t0
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
