"""A model's three .tflite variants and its Keras-side metrics, from the artifact cache or
built on a miss by the builder child (``build.builder``): build → train float (where the
model has a training set) → QAT (tfmot) and fine-tune → convert float32, post-training
full-int8 and QAT full-int8. Keras 2 never enters the harness's own process."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from qat_harness.build.cache import ArtifactCache, cache_key
from qat_harness.core.child import run_child
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.models.datasets import Dataset
from qat_harness.models.registry import ModelConfig, ModelSpec

BUILDER = "qat_harness.build.builder"
VARIANTS = ("float", "ptq_int8", "qat_int8")


@dataclasses.dataclass
class Artifacts:
    model: str
    folder: Path
    files: dict[str, Path]         # variant -> .tflite (only the ones that converted)
    metrics: dict                  # Keras accuracies, training record, conversion errors
    from_cache: bool

    def path(self, variant: str) -> Path | None:
        return self.files.get(variant)


class BuildFailed(Exception):
    """The builder child crashed, hung or failed: the model's artifacts do not exist."""


def train_plan(spec: ModelSpec, data: Dataset) -> dict:
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
                  progress=lambda msg: None, timeout_s: float = 7200.0) -> Artifacts:
    plan = train_plan(spec, data)
    key = cache_key({"model": spec.name, "config": cfg.key(), "plan": plan, "dataset": data.name})
    entry = cache.lookup(key)
    from_cache = entry is not None
    if entry is None:
        source = {"kind": "registry", "name": spec.name, "config": dataclasses.asdict(cfg)}
        entry = cache.store(key, lambda folder: _build(spec.name, source, plan, data, folder,
                                                       cfg.weights is not None, progress, timeout_s))
    metrics = json.loads((entry / "metrics.json").read_text())
    files = {v: entry / f"{v}.tflite" for v in VARIANTS if (entry / f"{v}.tflite").exists()}
    return Artifacts(spec.name, entry, files, metrics, from_cache)


def _build(label: str, source: dict, plan: dict, data: Dataset, folder: Path, pretrained: bool,
           progress, timeout_s: float) -> None:
    inputs = folder / ".data.npz"
    arrays = {k: v for k, v in {"x_train": data.x_train, "y_train": data.y_train,
                                "x_eval": data.x_eval, "y_eval": data.y_eval}.items() if v is not None}
    np.savez(inputs, **{k: np.asarray(v) for k, v in arrays.items()})
    request = {"label": label, "source": source, "plan": plan, "data": str(inputs.resolve()),
               "out": str(folder.resolve()), "labels_meaningful": data.labels_meaningful,
               "pretrained": pretrained}
    try:
        run_child(BUILDER, request, timeout_s, progress=progress)
    except DeviceError as exc:
        if exc.kind == "usage":
            raise UsageError(exc.reason) from None
        raise BuildFailed(f"building {label} failed ({exc.kind}): {exc.reason}") from None
    finally:
        inputs.unlink(missing_ok=True)
