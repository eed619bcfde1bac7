"""A model's three .tflite variants and its Keras-side metrics, from the artifact cache or
built on a miss by the builder child (``build.builder``): build → train float (where the
model has a training set) → QAT (tfmot) and fine-tune → convert float32, post-training
full-int8 and QAT full-int8. Keras 2 never enters the harness's own process."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from qat_harness.build.builder import QAT_WEIGHTS_FILE
from qat_harness.build.cache import ArtifactCache, cache_key
from qat_harness.core.child import run_child
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.models.datasets import Dataset
from qat_harness.models.registry import ModelConfig, ModelSpec

BUILDER = "qat_harness.build.builder"
VARIANTS = ("float", "ptq_int8", "qat_int8")


@dataclasses.dataclass(frozen=True)
class QatKerasModel:
    """What rebuilds a build's QAT Keras model in a child (the trace's Keras stage): the
    builder's source request and the weights it saved after QAT."""
    source: dict
    weights: Path

    @property
    def env(self) -> dict | None:
        return user_env(self.source)


@dataclasses.dataclass
class Artifacts:
    model: str
    folder: Path
    files: dict[str, Path]         # variant -> .tflite (only the ones that converted)
    metrics: dict                  # Keras accuracies, training record, conversion errors
    from_cache: bool
    qat_keras: QatKerasModel | None = None

    def path(self, variant: str) -> Path | None:
        return self.files.get(variant)


class BuildFailed(Exception):
    """The builder child crashed, hung or failed: the model's artifacts do not exist."""


class NotBuildable(BuildFailed):
    """The harness cannot build this model (a Keras 3 layer it cannot translate, a layer tfmot
    cannot quantize): known before any build, and the run records it as the model's error row."""


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
    """A registry model's artifacts."""
    source = {"kind": "registry", "name": spec.name, "config": dataclasses.asdict(cfg)}
    return build_artifacts(spec.name, source, {"config": cfg.key()}, train_plan(spec, data), data,
                           cfg.weights is not None, cache, progress, timeout_s)


def build_artifacts(label: str, source: dict, identity: dict, plan: dict, data: Dataset,
                    pretrained: bool, cache: ArtifactCache, progress=lambda msg: None,
                    timeout_s: float = 7200.0) -> Artifacts:
    """The artifacts of any buildable source, from the cache or from the builder child.
    ``identity`` is what determines the model beyond the source's request (a registry model's
    configuration and weights file digest, or the digest of the model the builder child loaded,
    ``build.fingerprint``): it goes into the cache key with the plan and the data (its arrays'
    digest: another file of the same name must not reuse ranges calibrated on the old one)."""
    key = cache_key({"model": label, "source": source, "identity": identity, "plan": plan,
                     "dataset": data.digest()})
    entry = cache.lookup(key)
    from_cache = entry is not None
    if entry is None:
        entry = cache.store(key, lambda folder: _build(label, source, plan, data, folder, pretrained,
                                                       progress, timeout_s))
    metrics = json.loads((entry / "metrics.json").read_text())
    files = {v: entry / f"{v}.tflite" for v in VARIANTS if (entry / f"{v}.tflite").exists()}
    weights = entry / QAT_WEIGHTS_FILE
    qat_keras = QatKerasModel(source, weights) if weights.is_file() else None
    return Artifacts(label, entry, files, metrics, from_cache, qat_keras)


def describe_model(source: dict, workdir: Path, timeout_s: float = 1800.0) -> tuple[dict, Path | None]:
    """Ask the builder child for a model's signature (inputs, outputs, layer classes). A
    factory that returns ``(model, dataset)`` leaves its dataset in an .npz, returned too."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_out = workdir / "factory-dataset.npz"
    try:
        result = run_child(BUILDER, {"mode": "describe", "source": source, "data_out": str(data_out)},
                           timeout_s, env=user_env(source))
    except DeviceError as exc:
        if exc.kind == "usage":
            raise UsageError(exc.reason) from None
        raise BuildFailed(f"loading {source.get('label')} failed ({exc.kind}): {exc.reason}") from None
    return result, (data_out if result.get("has_dataset") else None)


def _arrays(data: Dataset) -> dict[str, np.ndarray]:
    """A dataset as .npz arrays; a model with several inputs keeps x_eval_0, x_eval_1, ..."""
    out = {}
    for name in ("x_train", "y_train", "x_eval", "y_eval"):
        value = getattr(data, name)
        if value is None:
            continue
        if isinstance(value, list):
            out.update({f"{name}_{i}": np.asarray(v) for i, v in enumerate(value)})
        else:
            out[name] = np.asarray(value)
    return out


def _build(label: str, source: dict, plan: dict, data: Dataset, folder: Path, pretrained: bool,
           progress, timeout_s: float) -> None:
    inputs = folder / ".data.npz"
    np.savez(inputs, **_arrays(data))
    request = {"label": label, "source": source, "plan": plan, "data": str(inputs.resolve()),
               "out": str(folder.resolve()), "labels_meaningful": data.labels_meaningful,
               "pretrained": pretrained}
    try:
        run_child(BUILDER, request, timeout_s, progress=progress, env=user_env(source))
    except DeviceError as exc:
        if exc.kind == "usage":
            raise UsageError(exc.reason) from None
        raise BuildFailed(f"building {label} failed ({exc.kind}): {exc.reason}") from None
    finally:
        inputs.unlink(missing_ok=True)


def user_env(source: dict) -> dict | None:
    """A factory's module is imported from the folder the user runs the harness in (children
    start in a private folder, without the current folder on sys.path)."""
    if source.get("kind") != "factory":
        return None
    import os

    from qat_harness.build.keras_loading import USER_DIR_ENV
    return {USER_DIR_ENV: os.getcwd()}
