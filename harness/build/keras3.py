"""Translate Keras 3 ``.keras`` models into tf_keras (Keras 2) models, weights included.

tfmot only quantizes tf_keras models, while Keras 3 is what users save today. This module
rebuilds a Keras 3 Sequential or Functional model made of standard layers as the same
tf_keras model, copies every weight across and proves the two compute the same function on
a seeded batch before handing the tf_keras model to QAT.

Two halves:

* ``read_keras_archive`` and ``check_translatable`` are pure Python (zipfile + json): the
  harness's parent process imports neither TensorFlow nor Keras, and nothing in the archive
  is unpickled or executed. A refusal is one ``UsageError`` line naming the first layer that
  cannot be translated and why.
* ``translate`` runs in a harness child process (Keras 2 selected with ``keras2.enter``). It
  loads the Keras 3 model with Keras 3 itself (``safe_mode=True``) only to read its weights;
  the tf_keras graph is rebuilt from the archive's own config, which is the documented,
  versioned description of the model (the Keras 3 objects' graph attributes are private).
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

from qat_harness.build import keras3_preprocessing
from qat_harness.build.config_guard import CodeInConfig, find_code, shown
from qat_harness.build.keras3_preprocessing import layer_name as _layer_name
from qat_harness.core.errors import UsageError, one_line

# --- reading the archive (pure Python) --------------------------------------------------

# config.json of a very large model is a few MB; anything near these limits is not a model.
MAX_JSON_MEMBER_BYTES = 64 * 2**20
MAX_ARCHIVE_MEMBERS = 10_000
# What a .keras archive holds (tf_keras and Keras 3 write the same names): the two JSON files,
# the weights (HDF5, or .npz) and the assets folder of layers that keep files (vocabularies).
JSON_MEMBERS = ("config.json", "metadata.json")
WEIGHTS_MEMBERS = ("model.weights.h5", "model.weights.npz")
ASSETS_FOLDER = "assets/"
# Loaders unpack an archive with more than 3 members (weights included) into a temporary
# folder, so the sizes its headers declare are what it costs on disk. Keras writes members
# stored, not compressed (ratio 1); float weights deflate by ~1.1x, all-zero ones far more.
# A member may declare at most this multiple of its compressed size, and all of them
# together at most MAX_ARCHIVE_UNCOMPRESSED_BYTES (ResNet-50's weights are 100 MB).
MAX_EXPANSION = 32
EXPANSION_SLACK_BYTES = 2**20  # a tiny member compresses to a few bytes
MAX_ARCHIVE_UNCOMPRESSED_BYTES = 4 * 2**30

MODEL_CLASSES = ("Sequential", "Functional")


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One layer entry of a model config, as written in the archive."""
    name: str
    class_name: str
    module: str | None
    registered_name: str | None
    entry: dict = dataclasses.field(repr=False)  # the raw entry: class_name, config, inbound_nodes
    sublayers: tuple[LayerInfo, ...] = ()  # the layers of a nested Sequential/Functional model

    @property
    def is_custom(self) -> bool:
        return _is_custom(self.module, self.registered_name)

    @property
    def is_keras_op(self) -> bool:
        """A ``keras.ops`` function called on a Keras tensor (``x * 2``, ``keras.ops.mean``):
        Keras 3 records it as an operation, which may share a layer's class name."""
        return (self.module or "").startswith("keras.src.ops")

    @property
    def is_nested_model(self) -> bool:
        return not self.is_custom and self.class_name in MODEL_CLASSES

    @property
    def label(self) -> str:
        return self.registered_name if self.is_custom and self.registered_name else self.class_name


@dataclasses.dataclass(frozen=True)
class KerasArchive:
    path: Path
    keras_version: str | None  # from metadata.json; None when the archive has none
    is_keras3: bool
    model_class: str  # "Sequential", "Functional", or a subclassed model's class name
    config: dict = dataclasses.field(repr=False)  # config.json: module, class_name, config, ...
    layers: tuple[LayerInfo, ...] = ()

    @property
    def is_sequential_or_functional(self) -> bool:
        return self.model_class in MODEL_CLASSES and not _is_custom_entry(self.config)


def read_keras_archive(path: str | Path) -> KerasArchive:
    """Read a ``.keras`` file's metadata and model config without importing Keras."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such .keras file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path.name}: not a .keras file (a .keras file is a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive_members(path, archive)
            names = set(archive.namelist())
            if "config.json" not in names:
                raise UsageError(f"{path.name}: not a Keras model archive (no config.json in the zip)")
            config = _read_json_member(path, archive, "config.json")
            metadata = _read_json_member(path, archive, "metadata.json") if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UsageError(f"{path.name}: corrupt .keras archive ({exc})") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise UsageError(f"{path.name}: config.json does not describe a Keras model")
    keras_version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    model_config = config.get("config") or {}
    return KerasArchive(
        path=path,
        keras_version=keras_version,
        is_keras3=_written_by_keras3(keras_version, config),
        model_class=str(config["class_name"]),
        config=config,
        layers=_layer_infos(model_config.get("layers") or []),
    )


def _check_archive_members(path: Path, archive: zipfile.ZipFile) -> None:
    """Only the members a Keras archive has, each declaring no more than its data can hold."""
    members = archive.infolist()
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise UsageError(f"{path.name}: {len(members)} files in the archive; not a Keras model")
    total = 0
    for member in members:
        name = member.filename
        if name in JSON_MEMBERS:
            limit = MAX_JSON_MEMBER_BYTES
        elif name in WEIGHTS_MEMBERS or (name.startswith(ASSETS_FOLDER) and _plain_path(name)):
            limit = MAX_EXPANSION * member.compress_size + EXPANSION_SLACK_BYTES
        else:
            raise UsageError(f"{path.name}: unexpected file '{shown(name)}' in the archive (a Keras "
                             f"archive holds {', '.join(JSON_MEMBERS + WEIGHTS_MEMBERS)} and "
                             f"{ASSETS_FOLDER}); refused")
        if member.file_size > limit:
            raise UsageError(f"{path.name}: '{shown(name)}' declares {member.file_size:,} bytes "
                             f"unpacked from {member.compress_size:,} (limit {limit:,}); refused")
        total += member.file_size
    if total > MAX_ARCHIVE_UNCOMPRESSED_BYTES:
        raise UsageError(f"{path.name}: the archive unpacks to {total / 2**30:.1f} GiB "
                         f"(limit {MAX_ARCHIVE_UNCOMPRESSED_BYTES / 2**30:.0f} GiB); refused")


def _plain_path(name: str) -> bool:
    """A relative path without '..', empty parts (but a folder's trailing '/') or backslashes."""
    parts = name.rstrip("/").split("/")
    return "\\" not in name and all(part not in ("", ".", "..") for part in parts)


def _read_json_member(path: Path, archive: zipfile.ZipFile, name: str) -> Any:
    # Read at most limit+1 bytes: the size in the zip header is the archive's own claim.
    with archive.open(name) as member:
        data = member.read(MAX_JSON_MEMBER_BYTES + 1)
    if len(data) > MAX_JSON_MEMBER_BYTES:
        raise UsageError(f"{path.name}: {name} is larger than "
                         f"{MAX_JSON_MEMBER_BYTES // 2**20} MiB; refused")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{path.name}: {name} is not valid JSON ({one_line(exc)})") from None


def _written_by_keras3(keras_version: str | None, config: dict) -> bool:
    if keras_version:
        major = keras_version.split(".")[0]
        return major.isdigit() and int(major) >= 3
    # No metadata.json: Keras 3 writes dtype policies as objects, Keras 2 as strings.
    return '"DTypePolicy"' in json.dumps(config)


def _is_custom(module: str | None, registered_name: str | None) -> bool:
    """Defined outside Keras: a user's class (registered as ``package>Name``, or not)."""
    if registered_name and ">" in registered_name:
        return True
    return (module or "").split(".")[0] != "keras"


def _is_custom_entry(entry: dict) -> bool:
    return _is_custom(entry.get("module"), entry.get("registered_name"))


def _layer_infos(entries: list) -> tuple[LayerInfo, ...]:
    infos = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        info = LayerInfo(name=_layer_name(entry), class_name=str(entry.get("class_name")),
                         module=entry.get("module"), registered_name=entry.get("registered_name"),
                         entry=entry)
        if info.is_nested_model:
            info = dataclasses.replace(
                info, sublayers=_layer_infos((entry.get("config") or {}).get("layers") or []))
        infos.append(info)
    return tuple(infos)


# --- what can be translated (pure Python) -----------------------------------------------

# Standard layers whose Keras 3 and tf_keras versions compute the same function with the
# same weights in the same order. Every class here is translated in the test suite.
TRANSLATABLE_LAYERS = frozenset({
    "InputLayer",
    # weights
    "Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose",
    "BatchNormalization", "LayerNormalization", "Embedding", "PReLU",
    # activations
    "ReLU", "LeakyReLU", "ELU", "Softmax", "Activation",
    # identity at inference
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "ActivityRegularization",
    # shape
    "Flatten", "Reshape", "Permute", "RepeatVector",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D",
    # pooling
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    # merging
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    # preprocessing that is plain arithmetic
    "Rescaling", "Normalization",
})

CUSTOM_CLASS_REASON = "it is a custom class; tf_keras cannot rebuild it"
NOT_TRANSLATED_BECAUSE = {
    "Lambda": "Lambda layers carry Python code; give the model as module:function instead",
    "TFSMLayer": "it wraps a TensorFlow SavedModel, not Keras layers",
    "LSTM": "recurrent layers are not translated",
    "GRU": "recurrent layers are not translated",
    "SimpleRNN": "recurrent layers are not translated",
    "RNN": "recurrent layers are not translated",
    "Bidirectional": "recurrent layers are not translated",
    "ConvLSTM2D": "recurrent layers are not translated",
    "TimeDistributed": "wrapper layers are not translated",
    "MultiHeadAttention": "attention layers are not translated",
    "GroupQueryAttention": "attention layers are not translated",
    "Attention": "attention layers are not translated",
    "EinsumDense": "EinsumDense is not translated",
    "StringLookup": "lookup layers hold vocabularies, not weights; not translated",
    "IntegerLookup": "lookup layers hold vocabularies, not weights; not translated",
    "TextVectorization": "lookup layers hold vocabularies, not weights; not translated",
}

# Activation names that mean the same function in Keras 3 and tf_keras. Keras 3's
# hard_sigmoid (relu6(x+3)/6) is not tf_keras's (0.2x+0.5, clipped); hard_silu has no
# tf_keras counterpart.
SAME_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "softplus",
    "softsign", "elu", "selu", "exponential", "swish", "silu", "gelu", "mish", "leaky_relu",
})


def check_translatable(archive: KerasArchive) -> None:
    """Raise UsageError (one line) unless ``translate`` can rebuild the model in tf_keras."""
    name = archive.path.name
    if not archive.is_keras3:
        written_by = f"Keras {archive.keras_version}" if archive.keras_version else "Keras 2"
        raise UsageError(f"{name} was written by {written_by} (tf_keras), not Keras 3: there is "
                         "nothing to translate; the harness loads it with tf_keras directly")
    if not archive.is_sequential_or_functional:
        raise UsageError(f"{name}: the model is a subclassed Keras model ({_entry_label(archive.config)}): "
                         "only Sequential and Functional models can be translated to tf_keras; "
                         "give the model as module:function instead")
    code = find_code(archive.config)  # anywhere: in wrappers, cells, initializers, ...
    if code is not None:
        raise UsageError(f"{name}: {code.subject} ({code.registered_name or code.class_name}) "
                         f"cannot be translated to tf_keras: {_code_reason(code)}")
    found = _first_untranslatable(archive.layers)
    if found is not None:
        layer_path, layer, why = found
        raise UsageError(f"{name}: layer '{shown(layer_path)}' ({shown(layer.label)}) cannot be "
                         f"translated to tf_keras: {why}")


def _code_reason(code: CodeInConfig) -> str:
    if code.kind == "lambda_layer":
        return NOT_TRANSLATED_BECAUSE["Lambda"]
    if code.in_layer_entry and code.kind in ("module", "registered_name"):
        return CUSTOM_CLASS_REASON
    return f"it {code.what}; give the model as module:function instead"


def _entry_label(entry: dict) -> str:
    return str(entry.get("registered_name") or entry.get("class_name"))


def _first_untranslatable(layers: tuple[LayerInfo, ...],
                          prefix: str = "") -> tuple[str, LayerInfo, str] | None:
    for layer in layers:
        layer_path = f"{prefix}{layer.name}"
        if layer.is_nested_model:
            found = _first_untranslatable(layer.sublayers, prefix=f"{layer_path}/")
            if found is not None:
                return found
            continue
        why = untranslatable_reason(layer)
        if why is not None:
            return layer_path, layer, why
    return None


def untranslatable_reason(layer: LayerInfo) -> str | None:
    """Why this (non-model) layer cannot be translated, or None if it can."""
    if layer.is_custom:
        return CUSTOM_CLASS_REASON
    if layer.is_keras_op:
        return ("it is a keras.ops operation applied to a Keras tensor, which has no tf_keras "
                "layer; use the matching keras.layers layer instead")
    if layer.class_name in NOT_TRANSLATED_BECAUSE:
        return NOT_TRANSLATED_BECAUSE[layer.class_name]
    if layer.class_name not in TRANSLATABLE_LAYERS:
        return f"{layer.class_name} is not on the translator's list of standard layers"
    config = layer.entry.get("config") or {}
    if layer.class_name == "InputLayer":
        if config.get("sparse") or config.get("ragged"):
            return "sparse and ragged inputs are not translated"
        return None
    policy = dtype_policy_name(config.get("dtype"))
    if policy not in (None, "float32"):
        return f"its dtype policy is {policy!r}; QAT needs a float32 model"
    activation = config.get("activation")
    if activation is not None and not (isinstance(activation, str) and activation in SAME_ACTIVATIONS):
        label = activation if isinstance(activation, str) else _entry_label(activation)
        return f"activation {label!r} has no identical tf_keras activation"
    return None


def dtype_policy_name(dtype: Any) -> str | None:
    """Keras 3 writes ``{"class_name": "DTypePolicy", "config": {"name": "float32"}}``;
    tf_keras wants the policy name."""
    if dtype is None or isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict):
        if dtype.get("class_name") != "DTypePolicy":
            return str(dtype.get("class_name"))  # quantized and other special policies
        return (dtype.get("config") or {}).get("name")
    return str(dtype)


# --- translation (harness child process: Keras 2 selected) ------------------------------

@dataclasses.dataclass
class Translation:
    model: Any  # a tf_keras.Model
    max_abs_diff: float  # largest |keras3 - tf_keras| over every output on the check batch
    n_layers: int  # layers rebuilt in tf_keras (InputLayers and nested models' layers included)
    notes: list[str]
    # the leading Rescaling/Normalization layers, left out of ``model`` (applied to the data in float)
    preprocessing: keras3_preprocessing.FloatPreprocessing = keras3_preprocessing.FloatPreprocessing()


# Keras 3 options tf_keras does not have, with the value that makes them a no-op. A Keras 3
# option missing here and unknown to tf_keras stops the translation (one line).
KERAS3_ONLY_OPTIONS_AT_NO_OP = {
    "optional": False,  # InputLayer
    "quantization_config": None,
    "lora_rank": None,
    "lora_alpha": None,
    "rms_scaling": False,  # LayerNormalization
    "input_axes": None,  # variance-scaling initializers
    "output_axes": None,
    "data_format": "channels_last",  # the only layout of tf_keras's 1D padding/cropping/upsampling
}

RENAMED_OPTIONS = {
    "LeakyReLU": {"negative_slope": "alpha"},
}

# Keras 3 weight names that tf_keras spells differently (same tensor, same layout).
RENAMED_WEIGHTS = {
    "DepthwiseConv1D": {"kernel": "depthwise_kernel"},
    "DepthwiseConv2D": {"kernel": "depthwise_kernel"},
}

# The options every tf_keras layer takes through **kwargs (tf_keras Layer.__init__).
TF_KERAS_BASE_LAYER_OPTIONS = frozenset({
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
})


@dataclasses.dataclass
class _Context:
    file: str
    notes: list[str]
    # (keras 3 layer, tf_keras layer, path): weights copied once the tf_keras model is built
    layer_pairs: list[tuple[Any, Any, str]] = dataclasses.field(default_factory=list)
    n_layers: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def refuse(self, layer_path: str, label: str, why: str) -> UsageError:
        return UsageError(f"{self.file}: layer '{shown(layer_path)}' ({shown(label)}) cannot be "
                          f"translated to tf_keras: {why}")


def translate(path: str | Path, check_batch: int = 8, tolerance: float = 1e-5) -> Translation:
    """Rebuild the Keras 3 model at ``path`` as a tf_keras model with the same weights, and
    check both give the same outputs (max abs diff <= tolerance) on a seeded batch."""
    from qat_harness.core import keras2

    keras2.enter()
    archive = read_keras_archive(path)
    check_translatable(archive)
    keras3_model = _load_keras3_model(archive.path)
    context = _Context(file=archive.path.name, notes=[f"written by Keras {archive.keras_version}"])
    split = keras3_preprocessing.split_config(archive.config)  # the leading Rescaling/Normalization
    preprocessing = keras3_preprocessing.float_preprocessing(split, keras3_model)
    model = _translate_model(split.model, keras3_model, context, prefix="")
    _copy_weights(context)
    diff = _max_abs_output_diff(keras3_model, model, archive, check_batch, context, preprocessing)
    if not diff <= tolerance:  # also catches NaN
        raise UsageError(f"{archive.path.name}: the tf_keras translation differs from the Keras 3 "
                         f"model by {diff:.3g} (max abs over {check_batch} seeded inputs; "
                         f"tolerance {tolerance:g})")
    return Translation(model=model, max_abs_diff=diff, n_layers=context.n_layers,
                       notes=context.notes + ([preprocessing.note] if preprocessing.steps else []),
                       preprocessing=preprocessing)


def _load_keras3_model(path: Path):
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's file
        raise UsageError(f"{path.name}: Keras 3 could not load it: {one_line(exc)}") from None


def _translate_model(entry: dict, keras3_model, context: _Context, prefix: str):
    config = entry.get("config") or {}
    if entry["class_name"] == "Sequential":
        model = _translate_sequential(config, keras3_model, context, prefix)
    else:
        model = _translate_functional(config, keras3_model, context, prefix)
    if config.get("trainable") is False:  # a frozen backbone stays frozen for QAT fine-tuning
        model.trainable = False  # (setting True would unfreeze every layer inside)
    return model


def _translate_sequential(config: dict, keras3_model, context: _Context, prefix: str):
    import tf_keras

    entries = config.get("layers") or []
    if entries and entries[0]["class_name"] == "InputLayer":
        layers = [_make_input(entries[0], context)]
        entries = entries[1:]
    elif config.get("build_input_shape") is not None:
        layers = [tf_keras.Input(batch_shape=tuple(config["build_input_shape"]))]
    else:
        raise UsageError(f"{context.file}: the Sequential model '{config.get('name')}' was "
                         "saved unbuilt (no input shape); build it before saving")
    layers += [_translate_layer(entry, keras3_model, context, prefix) for entry in entries]
    return tf_keras.Sequential(layers, name=config.get("name"))


def _make_input(entry: dict, context: _Context):
    import tf_keras

    config = dict(entry.get("config") or {})
    batch_shape = config.get("batch_shape") or config.get("batch_input_shape")
    context.n_layers += 1
    return tf_keras.Input(batch_shape=tuple(batch_shape), dtype=dtype_policy_name(config.get("dtype")),
                          name=config.get("name"))


def _translate_functional(config: dict, keras3_model, context: _Context, prefix: str):
    import tf_keras

    # (layer name, call index, output index) -> tf_keras tensor. The call index is the
    # position of the call in the layer's inbound_nodes, which is what Keras 3 writes in the
    # keras_history of a call's arguments.
    tensors: dict[tuple[str, int, int], Any] = {}
    calls: list[tuple[str, Any, int, dict]] = []
    class_of: dict[str, str] = {}
    for entry in config.get("layers") or []:
        name = _layer_name(entry)
        class_of[name] = entry["class_name"]
        if entry["class_name"] == "InputLayer":
            tensors[(name, 0, 0)] = _make_input(entry, context)
            continue
        layer = _translate_layer(entry, keras3_model, context, prefix)
        for call_index, node in enumerate(entry.get("inbound_nodes") or []):
            calls.append((name, layer, call_index, node))

    # A shared layer can be called at different depths: call whatever has its inputs ready
    # until nothing is left (Keras 3's own from_config does the same).
    while calls:
        waiting = []
        for name, layer, call_index, node in calls:
            try:
                args, kwargs = _call_arguments(node, tensors, context, prefix + name, class_of[name])
            except _NotReady:
                waiting.append((name, layer, call_index, node))
                continue
            outputs = layer(*args, **kwargs)
            for output_index, tensor in enumerate(_as_list(outputs)):
                tensors[(name, call_index, output_index)] = tensor
        if len(waiting) == len(calls):
            raise UsageError(f"{context.file}: the Functional graph of '{config.get('name')}' "
                             f"cannot be resolved (layer '{prefix}{waiting[0][0]}' never gets its inputs)")
        calls = waiting

    def endpoint(reference: list):
        name, node_index, output_index = reference
        # In input_layers/output_layers (not in call arguments) Keras 3 counts a nested
        # Functional model's own construction node as node 0.
        call_index = node_index - 1 if class_of.get(name) == "Functional" else node_index
        return tensors[(name, call_index, output_index)]

    inputs = _map_references(config["input_layers"], endpoint)
    outputs = _map_references(config["output_layers"], endpoint)
    return tf_keras.Model(inputs, outputs, name=config.get("name"))


class _NotReady(Exception):
    """A call's input tensor has not been produced yet."""


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _is_reference(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))


def _map_references(structure, endpoint):
    if _is_reference(structure):
        return endpoint(structure)
    if isinstance(structure, dict):
        return {key: _map_references(value, endpoint) for key, value in structure.items()}
    return [_map_references(value, endpoint) for value in structure]


def _call_arguments(node: dict, tensors: dict, context: _Context, layer_path: str,
                    class_name: str) -> tuple[list, dict]:
    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            name, call_index, output_index = value["config"]["keras_history"]
            key = (name, call_index, output_index)
            if key not in tensors:
                raise _NotReady
            return tensors[key]
        if isinstance(value, list):
            return [resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        return value

    args = [resolve(arg) for arg in node.get("args") or []]
    kwargs = {}
    for key, value in (node.get("kwargs") or {}).items():
        if value is None:
            continue  # e.g. mask=None, which Keras 3 records for every mask-aware layer
        if key == "training" and isinstance(value, bool):
            kwargs[key] = value
            continue
        raise context.refuse(layer_path, class_name,
                             f"it is called with {key}=..., which is not translated")
    return args, kwargs


def _translate_layer(entry: dict, keras3_parent, context: _Context, prefix: str):
    """The tf_keras layer (or nested model) for one Keras 3 layer entry."""
    import tf_keras

    name = _layer_name(entry)
    class_name = entry["class_name"]
    layer_path = prefix + name
    keras3_layer = keras3_parent.get_layer(name)
    if class_name in MODEL_CLASSES:
        context.note(f"nested {class_name} model '{layer_path}' translated as a nested tf_keras model")
        return _translate_model(entry, keras3_layer, context, prefix=f"{layer_path}/")
    layer_class = getattr(tf_keras.layers, class_name)
    config = _translate_layer_config(entry, layer_class, context, layer_path)
    try:
        layer = layer_class.from_config(config)
    except Exception as exc:  # noqa: BLE001 - a config tf_keras does not take
        raise context.refuse(layer_path, class_name, one_line(exc)) from None
    context.layer_pairs.append((keras3_layer, layer, layer_path))
    context.n_layers += 1
    return layer


def _accepted_options(layer_class) -> set[str]:
    import inspect

    accepted = set(TF_KERAS_BASE_LAYER_OPTIONS)
    for cls in layer_class.__mro__:
        if "__init__" in vars(cls):
            for parameter in inspect.signature(cls.__init__).parameters.values():
                if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                    accepted.add(parameter.name)
    accepted.discard("self")
    return accepted


def _translate_layer_config(entry: dict, layer_class, context: _Context, layer_path: str) -> dict:
    class_name = entry["class_name"]
    renames = RENAMED_OPTIONS.get(class_name, {})
    accepted = _accepted_options(layer_class)
    translated = {}
    for key, value in (entry.get("config") or {}).items():
        key = renames.get(key, key)
        if key == "dtype":
            value = dtype_policy_name(value)
        elif isinstance(value, dict) and "class_name" in value:
            value = _translate_object(value, context, layer_path, class_name, key)
        if key in accepted:
            translated[key] = value
        elif key in KERAS3_ONLY_OPTIONS_AT_NO_OP and value == KERAS3_ONLY_OPTIONS_AT_NO_OP[key]:
            continue
        else:
            raise context.refuse(layer_path, class_name,
                                 f"Keras 3 option {key}={value!r} has no tf_keras equivalent")
    return translated


def _translate_object(value: dict, context: _Context, layer_path: str, layer_class: str,
                      option: str) -> dict:
    """An initializer, regularizer or constraint in Keras 3's serialisation, as tf_keras's
    ``{"class_name", "config"}`` (unknown Keras 3-only keys dropped when they are no-ops)."""
    if _is_custom_entry(value):
        raise context.refuse(layer_path, layer_class,
                             f"its {option} is a custom object ({_entry_label(value)})")
    config = {}
    for key, item in (value.get("config") or {}).items():
        if key in KERAS3_ONLY_OPTIONS_AT_NO_OP and item == KERAS3_ONLY_OPTIONS_AT_NO_OP[key]:
            continue
        config[key] = item
    return {"class_name": value["class_name"], "config": config}


def _copy_weights(context: _Context) -> None:
    for keras3_layer, layer, layer_path in context.layer_pairs:
        source = keras3_layer.weights
        target = layer.weights
        label = type(keras3_layer).__name__
        renames = RENAMED_WEIGHTS.get(label, {})
        if len(source) != len(target):
            raise context.refuse(layer_path, label, f"Keras 3 has {len(source)} weights, "
                                 f"tf_keras {len(target)}")
        for keras3_weight, weight in zip(source, target):
            source_name = keras3_weight.name.split("/")[-1]
            source_name = renames.get(source_name, source_name)
            target_name = weight.name.split("/")[-1].split(":")[0]
            if source_name != target_name or tuple(keras3_weight.shape) != tuple(weight.shape):
                raise context.refuse(layer_path, label,
                                     f"weight {source_name}{tuple(keras3_weight.shape)} does not "
                                     f"match tf_keras {target_name}{tuple(weight.shape)}")
        layer.set_weights(keras3_layer.get_weights())


def _max_abs_output_diff(keras3_model, model, archive: KerasArchive, batch: int, context: _Context,
                         preprocessing: keras3_preprocessing.FloatPreprocessing) -> float:
    import numpy as np

    inputs = _check_inputs(archive, batch, context)
    expected = _flatten(keras3_model(inputs, training=False))
    actual = _flatten(model(preprocessing.apply_to_inputs(inputs), training=False))
    if len(expected) != len(actual):
        raise UsageError(f"{archive.path.name}: the tf_keras translation has {len(actual)} "
                         f"outputs, the Keras 3 model {len(expected)}")
    diff = 0.0
    for keras3_output, output in zip(expected, actual):
        keras3_output, output = np.asarray(keras3_output), np.asarray(output)
        if keras3_output.shape != output.shape:
            raise UsageError(f"{archive.path.name}: an output of the tf_keras translation has "
                             f"shape {output.shape}, the Keras 3 model's {keras3_output.shape}")
        diff = max(diff, float(np.max(np.abs(keras3_output.astype(np.float64) - output))))
    return diff


def _check_inputs(archive: KerasArchive, batch: int, context: _Context):
    """Seeded inputs in the model's input structure: floats uniform in [-1, 1), integer
    inputs (token ids) below the smallest Embedding vocabulary."""
    import numpy as np

    rng = np.random.default_rng(0)
    config = archive.config["config"]
    input_entries = {_layer_name(e): e for e in config.get("layers") or []
                     if e["class_name"] == "InputLayer"}
    vocabulary = min(_embedding_sizes(config) or [16])

    def make(entry: dict):
        layer_config = entry["config"]
        dims = list(layer_config.get("batch_shape") or layer_config.get("batch_input_shape"))[1:]
        if any(dim is None for dim in dims):
            context.note("unknown input dimensions set to 8 for the output check")
        shape = (batch, *[8 if dim is None else dim for dim in dims])
        dtype = np.dtype(dtype_policy_name(layer_config.get("dtype")) or "float32")
        if np.issubdtype(dtype, np.integer):
            return rng.integers(0, vocabulary, shape).astype(dtype)
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)

    if archive.model_class == "Sequential":
        first = (config.get("layers") or [{}])[0]
        if first.get("class_name") == "InputLayer":
            return make(first)
        return make({"config": {"batch_shape": config["build_input_shape"], "dtype": "float32"}})
    return _map_references(config["input_layers"], lambda ref: make(input_entries[ref[0]]))


def _embedding_sizes(config: dict) -> list[int]:
    sizes = []
    for entry in config.get("layers") or []:
        if entry["class_name"] == "Embedding":
            sizes.append(int(entry["config"]["input_dim"]))
        elif entry["class_name"] in MODEL_CLASSES:
            sizes.extend(_embedding_sizes(entry.get("config") or {}))
    return sizes


def _flatten(structure) -> list:
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in _flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in _flatten(item)]
    return [structure]
