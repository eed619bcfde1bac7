"""From a ``--models`` entry (``sources.ModelSource``) to what the run measures: the
evaluation data, the .tflite variants (built and cached, or the user's own files), and what
the numbers can mean (``PreparedModel``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import cast

from qat_harness.build import qat_precheck
from qat_harness.build.artifacts import NotBuildable, QatKerasModel, build_artifacts, describe_model, get_artifacts
from qat_harness.build.cache import ArtifactCache
from qat_harness.build.keras3_preprocessing import FloatPreprocessing
from qat_harness.claims import tolerances
from qat_harness.core import tflite
from qat_harness.core.errors import UsageError
from qat_harness.measure.scheme import quantization_scheme
from qat_harness.models import datasets
from qat_harness.models.datasets import Dataset
from qat_harness.models.registry import TrainSettings
from qat_harness.sources import ModelSource, SourceKind


@dataclasses.dataclass(frozen=True)
class DataOptions:
    dataset: str | None = None          # image folder or .npz
    labels: str | None = None           # one class name per line
    preprocess: str | None = None       # a scheme of models.datasets.PREPROCESS
    limit_per_class: int | None = None


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input, as the data has to be made for it: per-example shape, the dtype of
    the model's tensor and, for a quantized input, its scale and zero point."""
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def float_range(self) -> tuple[float, float] | None:
        """The real values a quantized input represents (None for any other input)."""
        if self.scale is None or self.zero_point is None or self.dtype not in tflite.QUANTIZED_INPUT_DTYPES:
            return None
        return tflite.represented_range(self.dtype, self.scale, self.zero_point)


@dataclasses.dataclass(frozen=True)
class UserData:
    """A user's model's data, as ``user_data`` made it: the examples (each input in the real
    values it stands for: an input given in its native integers is dequantized exactly, so
    that every variant sees the same examples and quantizing back gives the very bytes given),
    a line saying what they are, how each input of the model under test is fed, and the
    warnings about it for the report."""
    data: Dataset
    note: str
    feeds: list[tflite.InputFeed]
    warnings: list[str]


@dataclasses.dataclass
class PreparedModel:
    label: str
    source: ModelSource
    description: str
    config: dict
    data: Dataset
    data_note: str                      # what the data is and how it was preprocessed
    variants: dict[str, Path]           # 'float', 'ptq_int8', 'qat_int8' or 'int8' -> .tflite
    under_test: str                     # the int8 variant the claims judge
    metrics: dict                       # the build's record (Keras accuracies, timings, errors)
    folder: Path | None = None          # the artifact cache entry, when built
    from_cache: bool | None = None
    has_batchnorm: bool | None = None   # None: unknown (a .tflite given as it is)
    accuracy_skip: str | None = None    # why top-1 and agreement mean nothing here, if so
    notes: list[str] = dataclasses.field(default_factory=list)
    input_names: list[str] | None = None  # a Keras model's inputs in the data's order
    qat_keras: QatKerasModel | None = None  # rebuilds the QAT Keras model (the trace's Keras stage)
    feeds: list[tflite.InputFeed] | None = None  # how the user's data reaches each input; None: built here


def prepare(source: ModelSource, data_opts: DataOptions, cache: ArtifactCache, workdir: Path,
            progress, input_size: int | None = None, weights: str | None = None,
            build_timeout_s: float = 7200.0) -> PreparedModel:
    if source.kind is SourceKind.REGISTRY:
        return _registry(source, data_opts, cache, progress, input_size, weights, build_timeout_s)
    if weights:
        raise UsageError(f"--weights applies to registry models; {source.label} carries its own")
    if source.kind is SourceKind.TFLITE:
        return _tflite(source, data_opts)
    return _keras(source, data_opts, cache, workdir, progress, build_timeout_s)


# -- the three ways in ------------------------------------------------------------------------------
def _registry(source, data_opts, cache, progress, input_size, weights, timeout_s) -> PreparedModel:
    from qat_harness.models import registry

    spec = registry.get(source.label)
    check_weights_apply(spec, weights)
    cfg = spec.config(input_size, weights, data_opts.dataset, data_opts.limit_per_class,
                      data_opts.labels, data_opts.preprocess)
    data = spec.dataset(cfg)
    artifacts = get_artifacts(spec, cfg, data, cache, progress, timeout_s)
    skip = None
    if not (data.labels_meaningful and (spec.trained_here or cfg.weights)):
        skip = ("untrained model (weights=None): int8 outputs are degenerate, agreement and "
                "accuracy mean nothing; give --weights and --dataset for real numbers")
    return PreparedModel(source.label, source, spec.description, dataclasses.asdict(cfg), data,
                         data.name, dict(artifacts.files), "qat_int8", artifacts.metrics,
                         artifacts.folder, artifacts.from_cache, spec.has_batchnorm, skip,
                         qat_keras=artifacts.qat_keras)


def check_weights_apply(spec, weights: str | None) -> None:
    """``--weights`` loads into an application model's architecture; a model trained here
    (digits_cnn) has none to take, and ignoring the file would be a silent surprise."""
    if weights and spec.trained_here:
        from qat_harness.models import registry

        apps = ", ".join(n for n, s in registry.REGISTRY.items() if not s.trained_here)
        raise UsageError(f"--weights applies to the application models ({apps}); {spec.name} is "
                         "trained here on its own data: leave it out of --models or drop --weights")


def _tflite(source: ModelSource, data_opts: DataOptions) -> PreparedModel:
    assert source.path is not None  # a TFLITE source always names its file (sources.parse_models)
    infos = {"int8": _read(source.path)}
    variants = {"int8": source.path}
    if source.float_path:
        infos["float"] = _read(source.float_path)
        variants["float"] = source.float_path
        _check_same_signature(infos["int8"], infos["float"], source)
    specs = [_spec_from_tensor(infos["int8"].tensor(i)) for i in infos["int8"].inputs]
    given = user_data(specs, data_opts, trains=False)  # nothing is trained on a .tflite
    data = given.data
    # a float file given alone is its own float model: nothing else to ask for
    skip = _accuracy_skip(data, has_float=source.float_path is not None
                          or quantization_scheme(infos["int8"]).is_float)
    description = (f"user .tflite {source.path.name}"
                   + (f" with float reference {source.float_path.name}" if source.float_path else ""))
    config = {"source": source.kind.value, "path": str(source.path),
              "float_path": str(source.float_path) if source.float_path else None}
    return PreparedModel(source.label, source, description, config, data, given.note, variants, "int8",
                         {}, accuracy_skip=skip, notes=list(given.warnings), feeds=given.feeds)


def _keras(source, data_opts, cache, workdir, progress, timeout_s) -> PreparedModel:
    if source.kind is SourceKind.KERAS3_FILE:
        assert source.path is not None  # a Keras 3 source always names its file (sources.parse_models)
        qat_precheck.refuse_unbuildable(source.path)  # from the config, before anything loads
    progress(f"{source.label}: loading the model")
    try:
        signature, factory_data = describe_model(source.request(), workdir / "describe", timeout_s)
    except UsageError as exc:  # what translation finds only with the model loaded: the model's row too
        if source.kind is SourceKind.KERAS3_FILE:
            raise NotBuildable(qat_precheck.translation_refusal(str(exc))) from None
        raise
    preprocessing = FloatPreprocessing.from_json(signature.get("float_preprocessing"))
    specs = [InputSpec(f"input_{i}", tuple(-1 if d is None else int(d) for d in s["shape"][1:]), "float32")
             for i, s in enumerate(signature["inputs"])]
    for spec in specs:
        problem = tflite.input_shape_problem((1, *spec.shape))  # -1: a size the model leaves open
        if problem:
            raise UsageError(f"{source.label}: input {spec.name} {problem} (give a model with a "
                             "fixed input size)")
    if data_opts.dataset is None and factory_data is not None:
        data_opts = dataclasses.replace(data_opts, dataset=str(factory_data))
    single_output = len(signature["outputs"]) == 1
    given = user_data(specs, data_opts, trains=single_output)  # QAT fine-tunes a one-output model
    if preprocessing.steps:
        given = _float_preprocessed(given, specs[0], preprocessing)
    data = given.data
    settings = TrainSettings()
    labelled_train = data.x_train is not None and data.y_train is not None
    plan = {"float_epochs": 0, "qat_epochs": 1 if labelled_train and single_output else 0,
            "batch_size": settings.batch_size, "lr": settings.learning_rate,
            "qat_lr": settings.qat_learning_rate, "seed": settings.seed}
    identity = {"model": signature["model_digest"]}
    artifacts = build_artifacts(source.label, source.request(), identity, plan, data, True, cache,
                                progress, timeout_s)
    notes = list(signature.get("notes", [])) + given.warnings
    built = artifacts.metrics.get("model_digest")
    if built and built != signature["model_digest"]:
        notes.append(f"{source.label} gave another model (weights or architecture) each time it was "
                     "loaded, even with the random seed fixed: the artifacts are of one of them, and the "
                     "cache cannot recognise it, so it is rebuilt on every run")
    kinds = {SourceKind.KERAS_FILE: "tf_keras model", SourceKind.KERAS3_FILE: "Keras 3 model (translated)",
             SourceKind.FACTORY: "tf_keras model from a factory"}
    description = f"user {kinds[source.kind]} {source.label}"
    if preprocessing.steps:
        description += f", after float pre-processing outside the quantized graph: {preprocessing.text}"
    return PreparedModel(source.label, source, description,
                         {"source": source.kind.value, "path": str(source.path) if source.path else None,
                          "ref": source.ref, "plan": plan}, data, given.note, dict(artifacts.files),
                         "qat_int8", artifacts.metrics, artifacts.folder, artifacts.from_cache,
                         "BatchNormalization" in signature.get("layer_classes", []),
                         _accuracy_skip(data, has_float=True), notes,
                         signature.get("input_names") or None, artifacts.qat_keras, given.feeds)


def _float_preprocessed(given: UserData, spec: InputSpec, preprocessing: FloatPreprocessing) -> UserData:
    """A Keras 3 model's data through its leading preprocessing layers, which the build left
    out of the quantized model (``build.keras3_preprocessing``): every variant takes what they
    produce. The feed of the one input then says the range the files are given."""
    data = given.data.with_inputs(lambda index, array: preprocessing.apply(array) if index == 0 else array)
    feed = tflite.input_feed(spec.name, spec.dtype, spec.scale, spec.zero_point, data.input_arrays(0))
    return UserData(data, f"{given.note}; then the model's {preprocessing.text}, in float",
                    [feed, *given.feeds[1:]], given.warnings)


# -- data -----------------------------------------------------------------------------------------
def user_data(specs: list[InputSpec], opts: DataOptions, trains: bool) -> UserData:
    """Evaluation data for a user's model: an image folder, an .npz, or seeded synthetic
    inputs (size and latency only). A labelled data set is split only when it also trains
    (``trains``: QAT fine-tunes on it); otherwise every example is evaluated. How each input
    is fed is checked: quantization that clips more than ``tolerances.FEED_CLIP_REFUSE`` of
    an input's values is refused in one line, more than ``FEED_CLIP_WARN`` is a warning."""
    eval_fraction = datasets.TRAIN_EVAL_FRACTION if trains else 1.0
    if opts.dataset is None:
        if opts.labels:
            raise UsageError("--labels goes with --dataset (an image folder)")
        ranges = [s.float_range or ((0.0, 0.0) if s.dtype.startswith(("int", "uint")) else (0.0, 1.0))
                  for s in specs]
        data = datasets.synthetic_for([s.shape for s in specs], [s.dtype for s in specs], ranges)
        return _fed(data, specs, "synthetic inputs (no --dataset): size, latency and kernel agreement only", None)
    path = Path(opts.dataset)
    if path.suffix.lower() == ".npz":
        if opts.labels or opts.preprocess:
            raise UsageError("--labels and --preprocess go with an image folder; an .npz holds the "
                             "model's inputs as they are")
        data = datasets.npz(path, n_inputs=len(specs), eval_fraction=eval_fraction)
        _check_shapes(data, specs, path)
        return _fed(data, specs, f"{data.name}: arrays as given", path.name)
    if not path.is_dir():
        raise UsageError(f"dataset {path} is neither an image folder nor an .npz" if path.exists()
                         else f"dataset not found: {path} (an image folder or an .npz)")
    image = _image_input(specs)
    if image is None:
        raise UsageError(f"an image folder fits a model with one image input (HxW, HxWx1 or HxWx3); "
                         f"this model takes {[list(s.shape) for s in specs]}: give an .npz")
    height, width, channels = image
    spec = specs[0]
    scheme, why = _scheme(spec, opts.preprocess)
    native = scheme == "raw" and spec.dtype == "uint8" and spec.scale is not None
    labels = datasets.read_labels(Path(opts.labels)) if opts.labels else None
    data = datasets.image_folder(path, (height, width),
                                 datasets.pixel_bytes if native else datasets.preprocess(scheme),
                                 opts.limit_per_class, eval_fraction, labels=labels, channels=channels,
                                 channel_axis=len(spec.shape) == 3)
    how = ("the pixels' own bytes, which the uint8 input takes as they are" if native
           else datasets.PREPROCESS[scheme][1])
    note = (f"{data.name}: {'grayscale ' if channels == 1 else ''}images resized to {height}x{width}, "
            f"preprocessing {how} ({why})"
            + (f", classes by {Path(cast(str, opts.labels)).name}" if labels else ", classes by sorted folder name"))
    return _fed(data, specs, note, path.name)


def _image_input(specs: list[InputSpec]) -> tuple[int, int, int] | None:
    """(height, width, channels) of a model's one image input: HxW or HxWx1 (grayscale) or
    HxWx3 (RGB); None when the model's inputs are not one image."""
    if len(specs) != 1:
        return None
    shape = specs[0].shape
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) == 3 and shape[-1] in (1, 3):
        return shape[0], shape[1], shape[2]
    return None


def _fed(data: Dataset, specs: list[InputSpec], note: str, given: str | None) -> UserData:
    """How ``data`` reaches each input (``tflite.input_feed``), checked against the clipping
    tolerances; the data with every native input in the real values it stands for. ``given``:
    the name of the user's data set (None for synthetic inputs), which the note then says how
    it was fed."""
    feeds = [tflite.input_feed(spec.name, spec.dtype, spec.scale, spec.zero_point, data.input_arrays(i))
             for i, spec in enumerate(specs)]
    warnings = []
    for feed in feeds:
        if feed.clipped > tolerances.FEED_CLIP_REFUSE:
            raise UsageError(f"{given or 'the data'}: {_clipping(feed)}; give the data in that range "
                             f"(or {feed.tensor_dtype} arrays, which the model takes as they are)")
        if feed.clipped > tolerances.FEED_CLIP_WARN:
            warnings.append(f"{_clipping(feed)} (more than the {tolerances.FEED_CLIP_WARN:.0%} tolerated)")
    if given is not None:
        how = feeds[0].scheme_text if len(feeds) == 1 else ", ".join(f"'{f.input}' {f.scheme_text}" for f in feeds)
        note = f"{note}; {how}"

    def real_values(index: int, array):
        feed = feeds[index]
        if feed.scheme is not tflite.FeedScheme.NATIVE:
            return array
        assert feed.scale is not None and feed.zero_point is not None  # a native feed is quantized
        return tflite.dequantize(array, feed.scale, feed.zero_point)

    native = any(feed.scheme is tflite.FeedScheme.NATIVE for feed in feeds)
    return UserData(data.with_inputs(real_values) if native else data, note, feeds, warnings)


def _clipping(feed: tflite.InputFeed) -> str:
    low, high = cast(tuple[float, float], feed.represents)  # only a quantized feed clips
    return (f"input '{feed.input}': {feed.clipped:.1%} of the values fed ({feed.dtype} {feed.low:.4g}.."
            f"{feed.high:.4g}) lie beyond the {low:.4g}..{high:.4g} it represents ({feed.scheme_text}) "
            "and are clipped")


def _scheme(spec: InputSpec, given: str | None) -> tuple[str, str]:
    if given:
        datasets.preprocess(given)  # an unknown name is a UsageError
        return given, "--preprocess"
    if spec.float_range is not None:
        low, high = spec.float_range
        return (datasets.scheme_for_range(low, high),
                f"default: the model's quantized input represents {low:.3g}..{high:.3g}")
    return "unit", "default for a float input; set --preprocess if the model expects another range"


def _check_shapes(data: Dataset, specs: list[InputSpec], path: Path) -> None:
    arrays = data.x_eval if isinstance(data.x_eval, list) else [data.x_eval]
    for array, spec in zip(arrays, specs):
        if tuple(array.shape[1:]) != spec.shape:
            raise UsageError(f"{path.name}: examples of shape {list(array.shape[1:])} do not fit the "
                             f"model input {spec.name} of shape {list(spec.shape)}")


def _accuracy_skip(data: Dataset, has_float: bool) -> str | None:
    """Why no output-based claim means anything here. A file given alone is still evaluated:
    its top-1 against the labels needs no float model (the claims that do say so themselves)."""
    if data.name != "synthetic":
        return None
    give_float = "" if has_float else (" and, to compare with float, the float model as --float-model "
                                       "FLOAT.tflite or --models int8.tflite=float.tflite")
    return f"no evaluation data: give --dataset (an image folder or an .npz with x and y){give_float}"


# -- helpers --------------------------------------------------------------------------------------
def _read(path: Path) -> tflite.ModelInfo:
    try:
        info = tflite.inspect_model(path)
    except tflite.InvalidModel as exc:
        raise UsageError(f"{path.name}: {exc}") from None
    if not info.inputs or not info.outputs:
        raise UsageError(f"{path.name}: the model has no {'inputs' if not info.inputs else 'outputs'}")
    return info


def _spec_from_tensor(t: tflite.TensorInfo) -> InputSpec:
    shape = tuple(int(d) for d in t.shape[1:]) if t.shape else ()
    if t.dtype in tflite.QUANTIZED_INPUT_DTYPES and t.scales:
        return InputSpec(t.name, shape, t.dtype, t.scales[0], cast(list, t.zero_points)[0])  # set with scales
    return InputSpec(t.name, shape, t.dtype)


def _check_same_signature(int8: tflite.ModelInfo, flt: tflite.ModelInfo, source: ModelSource) -> None:
    shapes = lambda info, idx: [info.tensor(i).shape for i in idx]  # noqa: E731
    if shapes(int8, int8.inputs) != shapes(flt, flt.inputs) or len(int8.outputs) != len(flt.outputs):
        assert source.path is not None and source.float_path is not None  # both read by the caller
        raise UsageError(f"{source.path.name} and {source.float_path.name} are not the same model: inputs "
                         f"{shapes(int8, int8.inputs)} vs {shapes(flt, flt.inputs)}, "
                         f"{len(int8.outputs)} vs {len(flt.outputs)} output(s)")


def n_examples(x) -> int:
    return len(x[0]) if isinstance(x, list) else len(x)


def take(x, n: int | None):
    if n is None:
        return x
    return [a[:n] for a in x] if isinstance(x, list) else x[:n]

