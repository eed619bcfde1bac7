"""The layers of a Keras 3 model that tfmot's default 8-bit QAT cannot quantize, named before
anything is built.

tfmot refuses such a layer only inside ``quantize_model``, after the model was loaded,
translated and described (tens of seconds for an application model), with advice
(``quantize_annotate_layer``) that a user who gives a ``.keras`` file cannot follow. The
archive's config says the same in well under a second, in the parent, without TensorFlow:
``refuse_unbuildable`` raises ``artifacts.NotBuildable`` (one line naming each layer, why, and
what the user of a ``.keras`` file can do), which the run records as that model's error row
while it goes on with the next model.

The leading Rescaling/Normalization chain is not judged: the harness keeps it outside the
quantized graph (``build.keras3_preprocessing``). The tables below are what tfmot's
``Default8BitQuantizeRegistry``, its layout transforms and its activation quantizers accept;
``build.tfmot_registry`` reads the same from tfmot in a child, and
tests/harness/build/test_qat_precheck_registry.py holds them to the installed tfmot.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness.build import keras3, keras3_preprocessing
from qat_harness.build.artifacts import NotBuildable
from qat_harness.build.config_guard import shown
from qat_harness.core.errors import UsageError

#: layer classes with a QuantizeConfig in tfmot's Default8BitQuantizeRegistry
REGISTRY_LAYERS = frozenset({
    "Activation", "ActivityRegularization", "Add", "AveragePooling1D", "AveragePooling2D", "Concatenate",
    "Conv2D", "Conv2DTranspose", "Cropping1D", "Cropping2D", "Cropping3D", "Dense", "DepthwiseConv2D",
    "Dropout", "Flatten", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "LeakyReLU", "MaxPooling2D",
    "Permute", "ReLU", "Reshape", "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D",
})
#: not in the registry, but rewritten by a layout transform into layers that are
REWRITTEN_LAYERS = frozenset({"SeparableConv1D", "SeparableConv2D"})
#: a BatchNormalization is folded (layout transforms) only into one of these right before it,
#: with a linear activation, whose output goes to the BatchNormalization alone
BATCHNORM_FOLDS_INTO = frozenset({"Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D"})
#: the ``activation=`` of a layer with weights: QuantizeAwareActivation's pre- and post-quantized ones
LAYER_ACTIVATIONS = frozenset({"gelu", "linear", "relu", "sigmoid", "softmax", "swish", "tanh"})
#: an ``Activation`` layer's: Default8BitActivationQuantizeConfig's
ACTIVATION_LAYER_ACTIVATIONS = frozenset({"gelu", "linear", "relu", "relu6", "sigmoid", "softmax",
                                          "swish", "tanh"})
#: Keras 3 activation names that tf_keras's functions carry under another ``__name__``
TF_KERAS_ACTIVATION_NAMES = {"silu": "swish"}

MAX_CLASSES_SHOWN = 3  # layer classes named in the one-line refusal
KEEP_IT = ("to keep it, give the model as module:function returning a tf_keras model that wraps "
           "it in tfmot's quantize_annotate_layer with a QuantizeConfig of yours")


@dataclasses.dataclass(frozen=True)
class Unquantizable:
    """One layer tfmot's default 8-bit QAT would refuse, and what the user can do about it."""
    path: str
    class_name: str
    why: str
    advice: str

    @property
    def text(self) -> str:
        return f"layer '{shown(self.path)}' ({shown(self.class_name)}): {self.why}; {self.advice}"


def refuse_unbuildable(path: Path) -> None:
    """Raise ``NotBuildable`` (one line) when the Keras 3 model at ``path`` cannot be translated
    to tf_keras, or has layers tfmot's default 8-bit QAT cannot quantize."""
    archive = keras3.read_keras_archive(path)
    try:
        keras3.check_translatable(archive)
    except UsageError as exc:
        raise NotBuildable(translation_refusal(str(exc))) from None
    found = unquantizable_layers(archive)
    if found:
        groups: dict[str, list[Unquantizable]] = {}
        for layer in found:
            groups.setdefault(layer.class_name, []).append(layer)
        texts = [_group_text(layers) for layers in groups.values()]
        more = f"; and {len(texts) - MAX_CLASSES_SHOWN} more layer class(es)" if len(texts) > MAX_CLASSES_SHOWN else ""
        raise NotBuildable(f"{path.name}: tfmot's default 8-bit QAT cannot quantize {len(found)} layer(s), "
                           f"so nothing was built: {'; '.join(texts[:MAX_CLASSES_SHOWN])}{more}")


def translation_refusal(message: str) -> str:
    """A translation refusal, with what the user of a .keras file can do when it does not say."""
    if "layer '" in message and "module:function" not in message:
        message += ("; replace it, in the model you save, by a layer or activation tf_keras has, or give "
                    "the model as module:function returning a tf_keras model")
    return f"{message}; nothing was built for it"


def _group_text(layers: list[Unquantizable]) -> str:
    first, others = layers[0], layers[1:]
    if not others:
        return first.text
    names = ", ".join(f"'{shown(u.path)}'" for u in others[:3]) + (", ..." if len(others) > 3 else "")
    return (f"layer '{shown(first.path)}' ({shown(first.class_name)}) and {len(others)} more "
            f"{shown(first.class_name)} ({names}): {first.why}; {first.advice}")


def unquantizable_layers(archive: keras3.KerasArchive) -> list[Unquantizable]:
    """Every layer of a translatable Keras 3 model that ``quantize_model`` would refuse, in
    the config's order (the leading preprocessing chain left out, as the build leaves it)."""
    model = keras3_preprocessing.split_config(archive.config).model
    return _check_layers(model, prefix="")


def _check_layers(model: dict, prefix: str) -> list[Unquantizable]:
    config = model.get("config") or {}
    entries = [e for e in config.get("layers") or [] if e.get("class_name") != "InputLayer"]
    graph = _Graph(model.get("class_name") == "Sequential", entries)
    found = []
    for entry in entries:
        name = keras3_preprocessing.layer_name(entry)
        problem = _problem(entry, graph)
        if problem is not None:
            found.append(Unquantizable(prefix + name, str(entry.get("class_name")), *problem))
    return found


class _Graph:
    """Who feeds a layer, and how many calls read a layer's output."""

    def __init__(self, sequential: bool, entries: list[dict]):
        self.by_name = {keras3_preprocessing.layer_name(e): e for e in entries}
        self.inbound: dict[str, list[str]] = {}
        self.readers: dict[str, int] = {}
        previous = None
        for entry in entries:
            name = keras3_preprocessing.layer_name(entry)
            if sequential:
                sources = [previous] if previous else []
                previous = name
            else:
                sources = [ref[0] for node in entry.get("inbound_nodes") or []
                           for ref in keras3_preprocessing.call_references(node)]
            self.inbound[name] = sources
            for source in sources:
                self.readers[source] = self.readers.get(source, 0) + 1

    def only_input(self, name: str) -> dict | None:
        sources = self.inbound.get(name) or []
        return self.by_name.get(sources[0]) if len(sources) == 1 else None


def _activation(entry: dict) -> str:
    value = (entry.get("config") or {}).get("activation") or "linear"
    return TF_KERAS_ACTIVATION_NAMES.get(str(value), str(value))


def _problem(entry: dict, graph: _Graph) -> tuple[str, str] | None:
    """(why, advice) for a layer tfmot's default 8-bit scheme refuses, or None."""
    class_name = str(entry.get("class_name"))
    if class_name in keras3.MODEL_CLASSES:
        return ("a model used as a layer: tfmot quantizes one flat model, not a model inside another",
                "save the model with the inner model's layers inline (for a keras.applications "
                "backbone, build it with input_tensor=... instead of calling it as a layer)")
    if class_name == "BatchNormalization":
        return _standalone_batchnorm(entry, graph)
    if class_name in keras3_preprocessing.PREPROCESSING_LAYERS:
        return (f"tfmot's default 8-bit registry has no {class_name}; the harness keeps it out of "
                "the quantized graph only at the model's start, right after its one input",
                "move it there, or remove it and give data already scaled that way")
    if class_name not in REGISTRY_LAYERS | REWRITTEN_LAYERS:
        return (f"{class_name} has no QuantizeConfig in tfmot's default 8-bit registry",
                f"replace it by a layer the registry has, or remove it, in the Keras model you save; {KEEP_IT}")
    activation = _activation(entry)
    if class_name == "Activation" and activation not in ACTIVATION_LAYER_ACTIVATIONS:
        return (f"tfmot quantizes an Activation layer of {_either(ACTIVATION_LAYER_ACTIVATIONS)} "
                f"only, not {activation!r}", f"use one of those, or remove it; {KEEP_IT}")
    if class_name != "Activation" and "activation" in (entry.get("config") or {}) \
            and activation not in LAYER_ACTIVATIONS:
        return (f"tfmot fake-quantizes a layer's activation= of {_either(LAYER_ACTIVATIONS)} "
                f"only, not {activation!r}",
                "give the layer activation='linear' and follow it by a separate layer for the activation "
                "(ReLU(max_value=6.0) for relu6), or use one of those")
    return None


def _standalone_batchnorm(entry: dict, graph: _Graph) -> tuple[str, str] | None:
    before = graph.only_input(keras3_preprocessing.layer_name(entry))
    if (before is not None and before.get("class_name") in BATCHNORM_FOLDS_INTO
            and _activation(before) == "linear" and graph.readers.get(keras3_preprocessing.layer_name(before)) == 1):
        return None
    after = (f"'{shown(keras3_preprocessing.layer_name(before))}' ({shown(str(before.get('class_name')))})"
             if before is not None else "the model's input or several layers")
    return ("tfmot has no QuantizeConfig for a BatchNormalization: it folds one only into a "
            f"{_either(BATCHNORM_FOLDS_INTO)} right before it (activation linear, read by the "
            f"BatchNormalization alone), and this one follows {after}",
            "move it right after such a layer (activation on a layer after it), fold its "
            f"statistics into the layer before it, or remove it; {KEEP_IT}")


def _either(names) -> str:
    first = sorted(names)
    return f"{', '.join(first[:-1])} or {first[-1]}"
