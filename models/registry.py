"""The registry of named reference models: each entry knows how to build its model, which
data it is evaluated on, how it is preprocessed and how it is trained."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from qat_harness.core.errors import UsageError
from qat_harness.core.files import file_digest, regular_file
from qat_harness.models import datasets


@dataclasses.dataclass
class TrainSettings:
    float_epochs: int = 0     # 0: no float training (the model is used as built / as loaded)
    qat_epochs: int = 0       # QAT fine-tune epochs (0: quantize only)
    batch_size: int = 32
    learning_rate: float = 1e-3
    qat_learning_rate: float = 2e-4
    seed: int = 0


@dataclasses.dataclass
class ModelConfig:
    """What a user can set for a model (CLI flags); all of it goes into the cache key."""
    input_size: int
    weights: str | None = None
    dataset: str | None = None
    limit_per_class: int | None = None
    labels: str | None = None
    preprocess: str | None = None

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        if self.weights:  # the file's content, not its name, determines the model
            d["weights_sha256"] = file_digest(regular_file(self.weights, "weights file"))
        return d


@dataclasses.dataclass
class ModelSpec:
    name: str
    description: str
    default_input_size: int
    build: Callable[[ModelConfig], object]
    dataset: Callable[[ModelConfig], datasets.Dataset]
    train: TrainSettings
    has_batchnorm: bool = True
    #: a model whose agreement/accuracy numbers mean something without user data
    trained_here: bool = False

    def config(self, input_size: int | None = None, weights: str | None = None,
               dataset: str | None = None, limit_per_class: int | None = None,
               labels: str | None = None, preprocess: str | None = None) -> ModelConfig:
        return ModelConfig(input_size or self.default_input_size, weights, dataset, limit_per_class,
                           labels, preprocess)


def _digits_build(cfg: ModelConfig):
    from qat_harness.models.reference import digits_cnn
    return digits_cnn(cfg.input_size)


def _digits_data(cfg: ModelConfig) -> datasets.Dataset:
    if cfg.dataset:
        raise UsageError("digits_cnn is evaluated on scikit-learn's digits; --dataset is for the "
                         "ImageNet-style models")
    return datasets.digits(cfg.input_size)


def _app_builder(arch: str):
    def build(cfg: ModelConfig):
        from qat_harness.models.reference import application
        return application(arch, cfg.input_size, cfg.weights)
    return build


#: each application's own preprocessing, as tf_keras.applications does it
PREPROCESS = {"mobilenet_v1": "mobilenet", "mobilenet_v2": "mobilenet", "resnet50": "caffe"}


def _app_data(arch: str):
    def data(cfg: ModelConfig) -> datasets.Dataset:
        if not cfg.dataset:
            return datasets.synthetic((cfg.input_size, cfg.input_size, 3))
        scheme = cfg.preprocess or PREPROCESS[arch]
        if Path(cfg.dataset).suffix.lower() == ".npz":
            return datasets.npz(Path(cfg.dataset))
        labels = datasets.read_labels(Path(cfg.labels)) if cfg.labels else None
        return datasets.image_folder(Path(cfg.dataset), cfg.input_size, datasets.preprocess(scheme),
                                     cfg.limit_per_class, labels=labels)
    return data


REGISTRY: dict[str, ModelSpec] = {
    "digits_cnn": ModelSpec(
        "digits_cnn", "small CNN (Conv+BN, DepthwiseConv+BN, Dense) trained on scikit-learn digits",
        32, _digits_build, _digits_data,
        TrainSettings(float_epochs=12, qat_epochs=3), trained_here=True),
    "mobilenet_v1": ModelSpec(
        "mobilenet_v1", "MobileNet V1 (tf_keras.applications)", 224,
        _app_builder("mobilenet_v1"), _app_data("mobilenet_v1"), TrainSettings()),
    "mobilenet_v2": ModelSpec(
        "mobilenet_v2", "MobileNet V2 (tf_keras.applications)", 224,
        _app_builder("mobilenet_v2"), _app_data("mobilenet_v2"), TrainSettings()),
    "resnet50": ModelSpec(
        "resnet50", "ResNet50 v1 (tf_keras.applications)", 224,
        _app_builder("resnet50"), _app_data("resnet50"), TrainSettings()),
}


def get(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise UsageError(f"unknown model '{name}'; known models: {', '.join(REGISTRY)}")
    return REGISTRY[name]
