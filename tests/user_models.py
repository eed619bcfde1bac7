"""Small, real "your own model" files made on the spot, for the tests of
``qat-harness run --models PATH.tflite[=FLOAT.tflite] | model.h5 | model.keras | SavedModel-dir
| module:function``. Nothing is downloaded: every model is built, trained (a few seconds on a
synthetic data set) and converted here, with seeded weights.

Use the session fixture ``user_models`` (one ``UserModels`` per test session); each method
builds its files once, lazily, and returns their paths::

    pytest_plugins = ["user_models"]  # in the test module: registers the fixture

    def test_x(user_models):
        int8, float_, x_calib = user_models.classifier_pair()

Needs Keras 2 selected before TensorFlow loads (``tests/conftest.py`` calls
``qat_harness.core.keras2.enter()``): here ``tf_keras`` is Keras 2 and ``import keras`` is
Keras 3.

The synthetic data set ("colour x pattern")
-------------------------------------------
16x16 RGB images on a dark noisy background with one 8x8 patch at a random place: the patch's
colour (red, green, blue, yellow, magenta) and pattern (solid ``square`` or horizontal
``stripes``) make 10 classes. Pixel values are multiples of 1/255, so the PNG copies hold
exactly the same numbers as the .npz.

The classifier has 11 outputs: output 0 is ``background`` (no example ever has it, like the
1001-way TF1 ImageNet models) and outputs 1..10 are the classes in ``CLASS_NAMES`` order. So
``y`` in the .npz is the model's output index, and it is also the line index in
``labels.txt`` (whose line 0 is ``background``). The sorted class folder names
(``blue_square, blue_stripes, green_square, ...``) are in a different order, so scoring by
sorted folder order is wrong and scoring through the labels file is right.
"""
from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import numpy as np
import pytest

# -- the synthetic data set ---------------------------------------------------------------------
COLOURS = {  # label order (NOT alphabetical)
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
}
PATTERNS = ("square", "stripes")
CLASS_NAMES = tuple(f"{c}_{p}" for c in COLOURS for p in PATTERNS)  # model outputs 1..10
BACKGROUND = "background"  # model output 0, never a true label
LABELS = (BACKGROUND, *CLASS_NAMES)  # line index in labels.txt == model output index
NUM_OUTPUTS = len(LABELS)  # 11
IMAGE_SHAPE = (16, 16, 3)
PATCH = 8

TRAIN_EXAMPLES = 1000
EVAL_EXAMPLES_PER_CLASS = 20
CALIBRATION_EXAMPLES = 100
TRAIN_EPOCHS = 8

EDGETPU_CUSTOM_CODE = "edgetpu-custom-op"
# RuntimeError text of ai-edge-litert 2.3's Interpreter.allocate_tensors() on the Edge TPU
# look-alike without the Edge TPU delegate (the same words users report for real compiled
# models, e.g. google-coral/edgetpu#159):
EDGETPU_REFUSAL = ("Encountered unresolved custom op: edgetpu-custom-op.\n"
                   "See instructions: https://www.tensorflow.org/lite/guide/ops_custom "
                   "Node number 0 (edgetpu-custom-op) failed to prepare.")
FACTORY_MODULE = "user_model_factory"
FACTORY_FUNCTION = "build_model"  # returns a tf_keras model
FACTORY_WITH_DATA_FUNCTION = "build_model_and_data"  # returns (model, {"x": ..., "y": ...})


def synthetic_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of each of the 10 classes, shuffled: (x float32 [0,1] NHWC,
    y int64 model output index 1..10). Values are k/255 exactly."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, name in enumerate(CLASS_NAMES, start=1):
        colour, pattern = name.split("_")
        for _ in range(n_per_class):
            xs.append(_one_image(rng, np.array(COLOURS[colour]), pattern))
            ys.append(label)
    order = rng.permutation(len(xs))
    x = np.stack(xs)[order]
    return (np.round(x * 255) / 255).astype(np.float32), np.array(ys, dtype=np.int64)[order]


def _one_image(rng, colour: np.ndarray, pattern: str) -> np.ndarray:
    image = rng.uniform(0.0, 0.25, IMAGE_SHAPE)
    top, left = rng.integers(0, IMAGE_SHAPE[0] - PATCH + 1, size=2)
    brightness = rng.uniform(0.75, 1.0)
    rows = range(PATCH) if pattern == "square" else range(0, PATCH, 2)
    for r in rows:
        image[top + r, left:left + PATCH] = colour * brightness
    return image


@functools.lru_cache(maxsize=1)
def training_set() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(TRAIN_EXAMPLES // len(CLASS_NAMES), seed=1)


@functools.lru_cache(maxsize=1)
def evaluation_set() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(EVAL_EXAMPLES_PER_CLASS, seed=2)


def calibration_inputs() -> np.ndarray:
    return training_set()[0][:CALIBRATION_EXAMPLES]


# -- models ---------------------------------------------------------------------------------------
def small_cnn(keras):
    """The one small Functional CNN, built with whichever Keras module is passed (tf_keras or
    Keras 3): Conv2D+BN+ReLU, DepthwiseConv2D+BN+ReLU, 1x1 Conv2D+ReLU, GAP, Dense softmax."""
    layers = keras.layers
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="conv_bn")(x)
    x = layers.ReLU(name="conv_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.ReLU(name="dw_relu")(x)
    x = layers.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(NUM_OUTPUTS, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def train(model, keras, epochs: int):
    """Adam on the synthetic training set; seeds set by the caller."""
    x, y = training_set()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    return model


def trained_tf_keras_cnn(epochs: int = TRAIN_EPOCHS):
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return train(small_cnn(tf_keras), tf_keras, epochs)


def trained_keras3_cnn(epochs: int = TRAIN_EPOCHS):
    import keras

    keras.utils.set_random_seed(0)
    return train(small_cnn(keras), keras, epochs)


def two_input_two_output_model():
    """A Functional tf_keras model whose input and output names sort differently from their
    declaration order: inputs (image 16x16x3, aux_features 4), outputs (scores 10-way softmax,
    box 3-way linear regression)."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    layers = tf_keras.layers
    image = tf_keras.Input(IMAGE_SHAPE, name="image")
    aux = tf_keras.Input((4,), name="aux_features")
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(image)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    a = layers.Dense(8, activation="relu", name="aux_dense")(aux)
    joined = layers.Concatenate(name="join")([x, a])
    scores = layers.Dense(10, activation="softmax", name="scores")(joined)
    box = layers.Dense(3, name="box")(joined)
    return tf_keras.Model([image, aux], [scores, box], name="two_in_two_out")


# The io order of multi_io_pair's .tflite files: see UserModels.multi_io_pair.
MULTI_IO_ORDER = {"inputs": ("aux_features", "image"), "outputs": ("scores", "box")}


def multi_io_calibration() -> dict[str, np.ndarray]:
    """Calibration inputs keyed by input name: the converter's representative data set is fed
    to the serving signature, whose inputs are sorted by name (a list in declaration order
    would feed ``image`` to ``aux_features``)."""
    rng = np.random.default_rng(4)
    return {"image": calibration_inputs(),
            "aux_features": rng.uniform(-1, 1, (CALIBRATION_EXAMPLES, 4)).astype(np.float32)}


def argmax_segmenter():
    """Segmentation-style tf_keras model on 8x8x1: two convs give 5 class logits per pixel,
    then ``tf.argmax(axis=-1)`` (a TFOpLambda layer) gives int64 class ids [1, 8, 8]."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(5)
    inputs = tf_keras.Input((8, 8, 1), name="image")
    x = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    logits = tf_keras.layers.Conv2D(5, 1)(x)
    class_ids = tf.argmax(logits, axis=-1)
    return tf_keras.Model(inputs, class_ids, name="argmax_segmenter")


@functools.lru_cache(maxsize=1)
def custom_layer_class():
    """``ScaleByTwo``: a custom tf_keras layer class defined in this test module; a model
    using it cannot be loaded without ``custom_objects``."""
    import tf_keras

    class ScaleByTwo(tf_keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2.0

    return ScaleByTwo


def tiny_tf_keras_with(layer):
    import tf_keras

    tf_keras.utils.set_random_seed(6)
    inputs = tf_keras.Input((8, 8, 1))
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = layer(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf_keras.layers.Dense(3, activation="softmax")(x)
    return tf_keras.Model(inputs, outputs)


# -- conversion -----------------------------------------------------------------------------------
def convert(model, *, calibration=None, input_type=None, output_type=None,
            supported_ops=None) -> bytes:
    """TF2 ``from_keras_model`` with post-training quantization when ``calibration`` is given
    (an array, or a dict {input name: array} for a multi-input model)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = supported_ops or [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if input_type is not None:
        converter.inference_input_type = input_type
    if output_type is not None:
        converter.inference_output_type = output_type
    return converter.convert()


def _representative(calibration):
    """An array (one input) or a dict {input name: array} (several inputs)."""
    def examples():
        if isinstance(calibration, dict):
            n = min(len(a) for a in calibration.values())
            for i in range(min(CALIBRATION_EXAMPLES, n)):
                yield {k: a[i:i + 1].astype(np.float32) for k, a in calibration.items()}
        else:
            for i in range(min(CALIBRATION_EXAMPLES, len(calibration))):
                yield [calibration[i:i + 1].astype(np.float32)]
    return examples


def legacy_uint8_tflite() -> bytes:
    """TF1-style fully-uint8 model: a tf.compat.v1 graph (8x8x1 placeholder -> conv 3x3x4 +
    bias + ReLU6 -> depthwise 3x3 + ReLU6 -> 2x2 avg-pool -> reshape -> matmul 3 + bias)
    converted by ``tf.compat.v1.lite.TFLiteConverter.from_session`` with
    ``inference_type=QUANTIZED_UINT8``, ``quantized_input_stats`` (mean 0, std 255: input
    scale 1/255) and ``default_ranges_stats=(0, 6)`` for the ranges that the graph has no
    FakeQuant for. Everything comes out uint8, per-tensor (bias int32)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(7)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, [1, 8, 8, 1], name="input")
        conv_w = tf.constant(rng.normal(0, 0.5, (3, 3, 1, 4)).astype(np.float32))
        conv_b = tf.constant(rng.normal(0, 0.1, 4).astype(np.float32))
        x = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(image, conv_w, 1, "SAME"), conv_b))
        dw_w = tf.constant(rng.normal(0, 0.5, (3, 3, 4, 1)).astype(np.float32))
        x = tf.nn.relu6(tf.nn.depthwise_conv2d(x, dw_w, [1, 1, 1, 1], "SAME"))
        x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
        x = tf.reshape(x, [1, 4 * 4 * 4])
        fc_w = tf.constant(rng.normal(0, 0.2, (64, 3)).astype(np.float32))
        fc_b = tf.constant(np.zeros(3, np.float32))
        logits = tf.identity(tf.matmul(x, fc_w) + fc_b, name="output")
        with v1.Session(graph=graph) as session:
            converter = v1.lite.TFLiteConverter.from_session(session, [image], [logits])
            converter.inference_type = v1.lite.constants.QUANTIZED_UINT8
            converter.quantized_input_stats = {"input": (0.0, 255.0)}
            converter.default_ranges_stats = (0, 6)
            return converter.convert()


# -- flatbuffer rewriting (Edge TPU look-alike) -------------------------------------------------
def _schema():
    from qat_harness.core import tflite

    return tflite._schema()


def edgetpu_lookalike(int8_tflite: bytes) -> bytes:
    """Rewrite a full-int8 model the way ``edgetpu_compiler`` leaves a fully mapped one: the
    main subgraph keeps only its input and output tensors, and all its operators become ONE
    ``CUSTOM`` operator (builtin_code = deprecated_builtin_code = 32, custom_code
    ``edgetpu-custom-op``) reading the input and writing the output. Constant buffers go
    (their data lives inside the compiled executable); metadata buffers (min_runtime_version,
    ...) are kept. Signature defs are dropped.

    Approximation: the real op's ``custom_options`` is a FlexBuffer map whose key ``"4"`` holds
    the compiled Edge TPU "package" (a flatbuffer of executables); here that map holds a
    placeholder blob, so only the container is right. A real compiler also keeps the input
    and output tensors' names, shapes and quantization, as this does."""
    from flatbuffers import flexbuffers

    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(int8_tflite, 0))
    graph = model.subgraphs[0]
    (in_index,), (out_index,) = graph.inputs, graph.outputs
    in_tensor, out_tensor = graph.tensors[in_index], graph.tensors[out_index]

    kept_buffers = [s.BufferT()]  # buffer 0: the empty sentinel every model starts with
    for meta in model.metadata or []:
        kept_buffers.append(model.buffers[meta.buffer])
        meta.buffer = len(kept_buffers) - 1
    for tensor in (in_tensor, out_tensor):
        tensor.buffer = 0

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode = EDGETPU_CUSTOM_CODE
    code.version = 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.customOptions = list(flexbuffers.Dumps({"1": 1, "4": b"placeholder Edge TPU package"}))
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS

    graph.tensors, graph.inputs, graph.outputs = [in_tensor, out_tensor], [0], [1]
    graph.operators = [op]
    model.subgraphs = [graph]
    model.operatorCodes = [code]
    model.buffers = kept_buffers
    model.signatureDefs = None
    return _pack(model)


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# -- files ----------------------------------------------------------------------------------------
def save_png_folder(x: np.ndarray, y: np.ndarray, folder: Path) -> None:
    """One PNG per example in ``folder/<class name>/NNNN.png`` (lossless: values are k/255)."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y)):
        sub = folder / LABELS[label]
        sub.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="RGB").save(sub / f"{i:04d}.png")


FACTORY_SOURCE = '''\
"""A user's model factory, written by tests/user_models.py: ``{plain}()`` returns a
tf_keras model, ``{with_data}()`` returns (model, {{"x": ..., "y": ...}})."""
import numpy as np


def {plain}():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((8, 8, 1))
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf_keras.layers.Dense(3, activation="softmax")(x)
    return tf_keras.Model(inputs, outputs)


def {with_data}():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) * 3).astype(np.int64).clip(0, 2)
    return {plain}(), {{"x": x, "y": y}}
'''


def _cached(method):
    """Build once per instance; later calls return the first result."""
    @functools.wraps(method)
    def wrapper(self, *args):
        key = (method.__name__, *args)
        if key not in self._cache:
            self._cache[key] = method(self, *args)
        return self._cache[key]
    return wrapper


class UserModels:
    """Every user-model file the "your own model" tests need, built lazily under ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cache: dict = {}

    def _path(self, name: str) -> Path:
        return self.folder / name

    def _write(self, name: str, data: bytes) -> Path:
        path = self._path(name)
        path.write_bytes(data)
        return path

    # -- 1. the trained classifier and its data ------------------------------------------------
    @_cached
    def trained_classifier(self):
        """The tf_keras small CNN trained TRAIN_EPOCHS epochs (the source of most .tflite files)."""
        return trained_tf_keras_cnn()

    @_cached
    def classifier_pair(self) -> tuple[Path, Path, np.ndarray]:
        """(int8 .tflite, float .tflite, calibration inputs) of the trained classifier:
        full-int8 with int8 input [1,16,16,3] and int8 output [1,11] (made by the harness's own
        ``to_tflite``), and float32 in/out. They agree on (nearly) every evaluation image."""
        from qat_harness.build.convert import to_tflite

        model, x_calib = self.trained_classifier(), calibration_inputs()
        int8 = self._write("classifier_int8.tflite", to_tflite(model, full_int8=True, calibration=x_calib))
        float_ = self._write("classifier_float.tflite", to_tflite(model, full_int8=False))
        return int8, float_, x_calib

    @_cached
    def classifier_dataset_npz(self) -> Path:
        """``x`` float32 [200,16,16,3] in [0,1], ``y`` int64 model output index (1..10)."""
        x, y = evaluation_set()
        path = self._path("classifier_eval.npz")
        np.savez(path, x=x, y=y)
        return path

    @_cached
    def classifier_image_folder(self) -> tuple[Path, Path]:
        """(folder with one sub-folder of PNGs per class NAME, labels.txt). labels.txt line i
        is the name of model output i (line 0 ``background``); the sorted folder names are in
        another order."""
        folder = self._path("classifier_images")
        save_png_folder(*evaluation_set(), folder)
        labels = self._path("classifier_labels.txt")
        labels.write_text("\n".join(LABELS) + "\n")
        return folder, labels

    # -- 2-7. other quantization schemes and graph shapes --------------------------------------
    @_cached
    def uint8_io_model(self) -> Path:
        """The trained classifier, int8 inside, with uint8 input and output (TF2 converter,
        inference_input_type/output_type = tf.uint8: QUANTIZE ops at both ends)."""
        import tensorflow as tf

        data = convert(self.trained_classifier(), calibration=calibration_inputs(),
                       input_type=tf.uint8, output_type=tf.uint8)
        return self._write("classifier_uint8_io.tflite", data)

    @_cached
    def legacy_uint8_model(self) -> Path:
        """See ``legacy_uint8_tflite``: a real TF1-converter, fully uint8, per-tensor model."""
        return self._write("legacy_uint8.tflite", legacy_uint8_tflite())

    @_cached
    def int16_model(self) -> Path:
        """The trained classifier quantized 16x8 (int16 activations, int8 weights), int16 io."""
        import tensorflow as tf

        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        data = convert(self.trained_classifier(), calibration=calibration_inputs(),
                       input_type=tf.int16, output_type=tf.int16, supported_ops=ops)
        return self._write("classifier_int16x8.tflite", data)

    @_cached
    def multi_io_pair(self) -> tuple[Path, Path]:
        """(full-int8 with int8 io, float32) of ``two_input_two_output_model``: declared
        inputs (image [1,16,16,3], aux_features [1,4]) and outputs (scores [1,10], box [1,3]).
        The order in the .tflite (``MULTI_IO_ORDER``), as TF 2.21's ``from_keras_model``
        writes it and tests/scenarios/test_user_models_factory.py checks with core.tflite and LiteRT's
        signature runner. "Order" is the main subgraph's ``inputs``/``outputs`` lists, which is
        also LiteRT's get_input_details()/get_output_details() order:

        * inputs are sorted by input NAME (the serving signature's keys), not declared order:
          tensor 0 ``serving_default_aux_features:0`` [1,4], tensor 1
          ``serving_default_image:0`` [1,16,16,3];
        * outputs stay in the Keras DECLARED order (scores [1,10], then box [1,3]), but their
          tensor names number the name-sorted signature outputs: scores is
          ``StatefulPartitionedCall:1`` and box is ``StatefulPartitionedCall:0``;
        * the ``serving_default`` signature lists inputs ['aux_features', 'image'] and outputs
          ['box', 'scores'] (both sorted) and maps each name to its tensor. So: match io by
          signature name; neither position nor tensor name follows the Keras model.

        The representative data set is fed by the same signature, hence a dict keyed by input
        name (``multi_io_calibration``)."""
        model = two_input_two_output_model()
        int8 = self._write("multi_io_int8.tflite",
                           convert(model, calibration=multi_io_calibration(),
                                   input_type=_tf().int8, output_type=_tf().int8))
        float_ = self._write("multi_io_float.tflite", convert(model))
        return int8, float_

    @_cached
    def float_output_model(self) -> Path:
        """The trained classifier, int8 input and internals, float32 output (a DEQUANTIZE
        at the end)."""
        tf = _tf()
        data = convert(self.trained_classifier(), calibration=calibration_inputs(),
                       input_type=tf.int8, output_type=tf.float32)
        return self._write("classifier_float_output.tflite", data)

    @_cached
    def argmax_int64_model(self) -> Path:
        """``argmax_segmenter`` full-int8: int8 input [1,8,8,1], int8 convs, ARG_MAX writing
        int64 class ids [1,8,8] (the output is not float, so no output type is set)."""
        rng = np.random.default_rng(8)
        calib = rng.uniform(0, 1, (CALIBRATION_EXAMPLES, 8, 8, 1)).astype(np.float32)
        data = convert(argmax_segmenter(), calibration=calib, input_type=_tf().int8)
        return self._write("argmax_int64.tflite", data)

    # -- 8. Edge TPU look-alike ------------------------------------------------------------------
    @_cached
    def edgetpu_compiled_model(self) -> Path:
        """The int8 classifier rewritten by ``edgetpu_lookalike``: ops
        ``['CUSTOM:edgetpu-custom-op']``, int8 input [1,16,16,3] -> int8 output [1,11].
        ``ai_edge_litert.interpreter.Interpreter(model_path=...)`` constructs without error;
        ``allocate_tensors()`` then raises ``EDGETPU_REFUSAL`` (ai-edge-litert 2.3)."""
        int8, _, _ = self.classifier_pair()
        return self._write("classifier_int8_edgetpu.tflite", edgetpu_lookalike(int8.read_bytes()))

    # -- 9. Keras files --------------------------------------------------------------------------
    @_cached
    def keras_h5_and_keras3(self) -> tuple[Path, Path]:
        """(tf_keras full-model .h5, Keras 3 .keras) of the same small CNN architecture. The
        .h5 is the trained classifier itself (same weights as ``classifier_pair``); the Keras 3
        model is built with ``import keras`` and trained the same way (its own weights)."""
        h5 = self._path("cnn_tf_keras.h5")
        self.trained_classifier().save(h5)
        keras3 = self._path("cnn_keras3.keras")
        trained_keras3_cnn().save(keras3)
        return h5, keras3

    @_cached
    def keras_tf_keras_format(self) -> Path:
        """The trained classifier saved by tf_keras in the ``.keras`` (zip) format
        (metadata.json says keras_version 2.x)."""
        path = self._path("cnn_tf_keras.keras")
        self.trained_classifier().save(path)
        return path

    @_cached
    def saved_model_dir(self) -> Path:
        """The trained classifier as a SavedModel folder (tf_keras ``model.save(folder)``:
        saved_model.pb, variables/, keras_metadata.pb)."""
        path = self._path("cnn_saved_model")
        self.trained_classifier().save(path)
        return path

    # -- 10. bad inputs --------------------------------------------------------------------------
    @_cached
    def keras_with_custom_layer(self) -> Path:
        """tf_keras .h5 with a ``ScaleByTwo`` custom layer (class defined in this module):
        loading it needs ``custom_objects``."""
        path = self._path("custom_layer.h5")
        tiny_tf_keras_with(custom_layer_class()(name="scale_by_two")).save(path)
        return path

    @_cached
    def keras_with_lambda(self) -> Path:
        """tf_keras .h5 with a ``Lambda(lambda t: t * 2)`` layer (Python bytecode in the file)."""
        import tf_keras

        path = self._path("lambda_layer.h5")
        tiny_tf_keras_with(tf_keras.layers.Lambda(lambda t: t * 2.0, name="times_two")).save(path)
        return path

    @_cached
    def keras3_untranslatable(self) -> Path:
        """Keras 3 .keras with a ``Lambda`` layer, which the Keras 3 -> tf_keras translation
        refuses (and Keras 3 loads only with safe_mode=False)."""
        import keras

        keras.utils.set_random_seed(9)
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        x = keras.layers.Lambda(lambda t: t * 2.0, name="times_two")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(3, activation="softmax")(x)
        path = self._path("keras3_lambda.keras")
        keras.Model(inputs, outputs).save(path)
        return path

    @_cached
    def not_a_flatbuffer(self) -> Path:
        """A .tflite file of junk bytes (no 'TFL3' identifier)."""
        return self._write("junk.tflite", b"this is not a flatbuffer\x00\x01\x02" * 4)

    @_cached
    def npz_without_x(self) -> Path:
        """A data set .npz with ``images`` and ``y`` but no ``x`` array."""
        x, y = evaluation_set()
        path = self._path("no_x.npz")
        np.savez(path, images=x, y=y)
        return path

    def factory_module(self, folder: Path | None = None, module: str = FACTORY_MODULE) -> tuple[Path, str]:
        """Write ``<folder>/<module>.py`` and return (the folder to put on sys.path,
        ``"<module>:build_model"``). The module also has ``build_model_and_data`` returning
        (model, {"x": float32 [32,8,8,1], "y": int64 [32]}). Use a distinct ``module`` name
        per folder if one process imports two of them."""
        folder = Path(folder) if folder is not None else self._path("factory")
        folder.mkdir(parents=True, exist_ok=True)
        source = FACTORY_SOURCE.format(plain=FACTORY_FUNCTION, with_data=FACTORY_WITH_DATA_FUNCTION)
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        return folder, f"{module}:{FACTORY_FUNCTION}"

    def factory_with_helper(self, folder: Path, head_units: int) -> str:
        """Write ``<folder>/user_factory_main.py``, whose ``build_model`` takes its classifier
        head from ``<folder>/user_factory_helper.py`` (``Dense(head_units)``), and return
        ``"user_factory_main:build_model"``. Called again with other units, it rewrites only
        the helper (and drops the folder's bytecode cache, so the next import reads it)."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "user_factory_helper.py").write_text(HELPER_SOURCE.format(units=head_units))
        (folder / "user_factory_main.py").write_text(MAIN_WITH_HELPER_SOURCE)
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        return "user_factory_main:build_model"


HELPER_SOURCE = '''\
"""The classifier head a user's factory imports (tests/user_models.py)."""


def head(tf_keras):
    return tf_keras.layers.Dense({units}, activation="softmax")
'''

MAIN_WITH_HELPER_SOURCE = '''\
"""A user's factory whose architecture comes partly from another module (tests/user_models.py)."""
import user_factory_helper


def build_model():
    import tf_keras

    inputs = tf_keras.Input((8, 8, 1))
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, user_factory_helper.head(tf_keras)(x))
'''


def with_input_shape(tflite_bytes: bytes, shape: list[int]) -> bytes:
    """The same model with its first input tensor declaring ``shape`` (and shape signature):
    the flatbuffer still parses; the shape is whatever the file says."""
    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(tflite_bytes, 0))
    graph = model.subgraphs[0]
    tensor = graph.tensors[graph.inputs[0]]
    tensor.shape = list(shape)
    tensor.shapeSignature = list(shape)
    return _pack(model)


def _tf():
    import tensorflow as tf

    return tf


@pytest.fixture(scope="session")
def user_models(tmp_path_factory) -> UserModels:
    """One ``UserModels`` per test session; each model is built the first time it is asked for."""
    return UserModels(tmp_path_factory.mktemp("user-models"))
