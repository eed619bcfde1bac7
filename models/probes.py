"""Probe models for the layer support matrix: one tiny model per layer (or per layer
arrangement) that the matrix takes through QAT, full-int8 conversion and every device.

Each probe has one float input and one output (the device adapters feed and read one
tensor), real shapes (8x8x3 images, 6-step sequences of 4 features) and is built inside the
child process that quantizes it, so nothing here imports TensorFlow at module level: the
parent lists probes without paying for a TensorFlow import.

Groups: ``allow-listed`` (layers tfmot's QAT guide lists, claim M2), ``batchnorm`` (M3),
``concat`` (M4), ``model-kind`` (Sequential / Functional / subclassed / nested, M1) and
``outside`` (layers outside the list, among them the RNNs of M5).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

IMAGE = (8, 8, 3)
SEQUENCE = (6, 4)
VOCAB = 16


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str
    layer: str                    # the layer (or arrangement) under test, for the report
    build: Callable[[], object]   # -> tf_keras model; runs in the child process
    group: str
    description: str
    claims: tuple[str, ...] = ()
    #: a BatchNormalization the converter is expected to fold into the layer before it (M3)
    bn_fold: bool = False
    #: integer inputs in [0, int_high) instead of floats in [-1, 1] (token ids)
    int_high: int | None = None


def _keras():
    from qat_harness.core import keras2

    keras2.enter()  # probes are built in the layer-matrix child, Keras 2 before TensorFlow loads
    import tf_keras as keras
    return keras


def _seq(*layers, shape=IMAGE):
    keras = _keras()
    return keras.Sequential([keras.Input(shape), *layers])


def _conv(filters=4, **kw):
    return _keras().layers.Conv2D(filters, 3, padding="same", **kw)


# -- allow-listed layers (M2) ------------------------------------------------------------------
def conv2d():
    return _seq(_conv(8, activation="relu"))


def depthwise_conv2d():
    return _seq(_keras().layers.DepthwiseConv2D(3, padding="same"))


def separable_conv2d():
    return _seq(_keras().layers.SeparableConv2D(8, 3, padding="same"))


def conv2d_transpose():
    return _seq(_keras().layers.Conv2DTranspose(4, 3, strides=2, padding="same"))


def dense():
    return _seq(_keras().layers.Dense(8, activation="relu"), shape=(16,))


def relu():
    return _seq(_conv(), _keras().layers.ReLU())


def relu6():
    return _seq(_conv(), _keras().layers.ReLU(max_value=6.0))


def leaky_relu():
    return _seq(_conv(), _keras().layers.LeakyReLU(0.1))


def softmax():
    keras = _keras()
    return _seq(keras.layers.Dense(10), keras.layers.Softmax(), shape=(16,))


def activation_sigmoid():
    return _seq(_conv(), _keras().layers.Activation("sigmoid"))


def activation_tanh():
    return _seq(_conv(), _keras().layers.Activation("tanh"))


def add():
    keras = _keras()
    x = keras.Input(IMAGE)
    out = keras.layers.Add()([_conv()(x), _conv()(x)])
    return keras.Model(x, out)


def average_pooling2d():
    return _seq(_conv(), _keras().layers.AveragePooling2D(2))


def average_pooling2d_mid():
    keras = _keras()
    return _seq(_conv(), keras.layers.AveragePooling2D(2), _conv())


def max_pooling2d():
    return _seq(_conv(), _keras().layers.MaxPooling2D(2))


def global_average_pooling2d():
    return _seq(_conv(), _keras().layers.GlobalAveragePooling2D())


def global_max_pooling2d():
    return _seq(_conv(), _keras().layers.GlobalMaxPooling2D())


def upsampling2d_nearest():
    return _seq(_conv(), _keras().layers.UpSampling2D(2, interpolation="nearest"))


def upsampling2d_bilinear():
    return _seq(_conv(), _keras().layers.UpSampling2D(2, interpolation="bilinear"))


def reshape():
    return _seq(_conv(), _keras().layers.Reshape((16, 16)))


def flatten():
    keras = _keras()
    return _seq(_conv(), keras.layers.Flatten(), keras.layers.Dense(4))


def zero_padding2d():
    return _seq(_conv(), _keras().layers.ZeroPadding2D(1))


def cropping2d():
    return _seq(_conv(), _keras().layers.Cropping2D(1))


def permute():
    return _seq(_conv(), _keras().layers.Permute((2, 1, 3)))


def dropout():
    keras = _keras()
    return _seq(keras.layers.Dense(8), keras.layers.Dropout(0.5), shape=(16,))


def average_pooling1d():
    keras = _keras()
    return _seq(keras.layers.Dense(8), keras.layers.AveragePooling1D(2), shape=SEQUENCE)


# -- BatchNormalization (M3) -------------------------------------------------------------------
def conv2d_bn():
    keras = _keras()
    return _seq(_conv(8), keras.layers.BatchNormalization())


def conv2d_bn_relu():
    keras = _keras()
    return _seq(_conv(8), keras.layers.BatchNormalization(), keras.layers.ReLU())


def depthwise_conv2d_bn():
    keras = _keras()
    return _seq(keras.layers.DepthwiseConv2D(3, padding="same"), keras.layers.BatchNormalization())


def dense_bn():
    keras = _keras()
    return _seq(keras.layers.Dense(8), keras.layers.BatchNormalization(), shape=(16,))


def batchnorm_alone():
    return _seq(_keras().layers.BatchNormalization())


def batchnorm_after_add():
    keras = _keras()
    x = keras.Input(IMAGE)
    y = keras.layers.Add()([_conv()(x), _conv()(x)])
    return keras.Model(x, keras.layers.BatchNormalization()(y))


# -- Concatenate (M4) --------------------------------------------------------------------------
def _two_branch_concat(axis: int, scale_b: float = 1.0, branches: int = 2):
    """Conv branches concatenated on ``axis``; ``scale_b`` multiplies the second branch's
    kernel so its activations live on a wider range (a different quantization scale)."""
    keras = _keras()
    x = keras.Input(IMAGE)
    convs = [_conv() for _ in range(branches)]
    outs = [c(x) for c in convs]
    model = keras.Model(x, keras.layers.Concatenate(axis=axis)(outs))
    if scale_b != 1.0:
        kernel, bias = convs[1].get_weights()
        convs[1].set_weights([kernel * scale_b, bias])
    return model


def concat_channels():
    return _two_branch_concat(-1)


def concat_height():
    return _two_branch_concat(1)


def concat_width():
    return _two_branch_concat(2)


def concat_scaled_inputs():
    return _two_branch_concat(-1, scale_b=20.0)


def concat_three_inputs():
    return _two_branch_concat(-1, branches=3)


def concat_of_input_and_conv():
    keras = _keras()
    x = keras.Input(IMAGE)
    return keras.Model(x, keras.layers.Concatenate()([x, _conv()(x)]))


# -- model kinds (M1) --------------------------------------------------------------------------
def sequential_model():
    keras = _keras()
    return _seq(_conv(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4))


def functional_model():
    keras = _keras()
    x = keras.Input(IMAGE)
    y = keras.layers.GlobalAveragePooling2D()(_conv()(x))
    return keras.Model(x, keras.layers.Dense(4)(y))


def subclassed_model():
    keras = _keras()

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = _conv()
            self.pool = keras.layers.GlobalAveragePooling2D()

        def call(self, inputs):
            return self.pool(self.conv(inputs))

    model = Subclassed()
    model.build((None, *IMAGE))
    return model


def nested_model():
    keras = _keras()
    inner = _seq(_conv(), keras.layers.ReLU())
    x = keras.Input(IMAGE)
    return keras.Model(x, keras.layers.GlobalAveragePooling2D()(inner(x)))


# -- outside the allow-list ----------------------------------------------------------------------
def lstm():
    return _seq(_keras().layers.LSTM(8), shape=SEQUENCE)


def gru():
    return _seq(_keras().layers.GRU(8), shape=SEQUENCE)


def simple_rnn():
    return _seq(_keras().layers.SimpleRNN(8), shape=SEQUENCE)


def conv1d():
    return _seq(_keras().layers.Conv1D(8, 3, padding="same"), shape=SEQUENCE)


def layer_normalization():
    keras = _keras()
    return _seq(keras.layers.Dense(8), keras.layers.LayerNormalization(), shape=SEQUENCE)


def multi_head_attention():
    keras = _keras()
    x = keras.Input(SEQUENCE)
    return keras.Model(x, keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x))


def prelu():
    return _seq(_conv(), _keras().layers.PReLU())


def elu():
    return _seq(_conv(), _keras().layers.ELU())


def embedding():
    keras = _keras()
    return keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(VOCAB, 4),
                             keras.layers.Flatten(), keras.layers.Dense(4)])


def lambda_layer():
    keras = _keras()
    return _seq(_conv(), keras.layers.Lambda(lambda t: t * 0.5 + 1.0))


def _p(build, layer, group, description, claims=(), **kw) -> Probe:
    return Probe(build.__name__, layer, build, group, description, tuple(claims), **kw)


_A, _B, _C, _K, _O = "allow-listed", "batchnorm", "concat", "model-kind", "outside"

PROBES: dict[str, Probe] = {p.name: p for p in [
    _p(conv2d, "Conv2D", _A, "Conv2D 3x3, 8 filters, fused ReLU", ["M2"]),
    _p(depthwise_conv2d, "DepthwiseConv2D", _A, "DepthwiseConv2D 3x3", ["M2"]),
    _p(separable_conv2d, "SeparableConv2D", _A, "SeparableConv2D 3x3, 8 filters", ["M2"]),
    _p(conv2d_transpose, "Conv2DTranspose", _A, "Conv2DTranspose 3x3, stride 2", ["M2"]),
    _p(dense, "Dense", _A, "Dense 16->8, fused ReLU", ["M2"]),
    _p(relu, "ReLU", _A, "Conv2D then a ReLU layer", ["M2"]),
    _p(relu6, "ReLU(max_value=6)", _A, "Conv2D then ReLU6", ["M2"]),
    _p(leaky_relu, "LeakyReLU", _A, "Conv2D then LeakyReLU(0.1)", ["M2"]),
    _p(softmax, "Softmax", _A, "Dense then Softmax", ["M2"]),
    _p(activation_sigmoid, "Activation(sigmoid)", _A, "Conv2D then Activation('sigmoid')", ["M2"]),
    _p(activation_tanh, "Activation(tanh)", _A, "Conv2D then Activation('tanh')", ["M2"]),
    _p(add, "Add", _A, "two Conv2D branches added", ["M2"]),
    _p(average_pooling2d, "AveragePooling2D", _A, "Conv2D then 2x2 average pooling, as the model output",
       ["M2"]),
    _p(average_pooling2d_mid, "AveragePooling2D (mid-graph)", _A,
       "Conv2D, 2x2 average pooling, Conv2D: the pooling inside the graph", ["M2"]),
    _p(max_pooling2d, "MaxPooling2D", _A, "Conv2D then 2x2 max pooling", ["M2"]),
    _p(global_average_pooling2d, "GlobalAveragePooling2D", _A, "Conv2D then global average pooling", ["M2"]),
    _p(global_max_pooling2d, "GlobalMaxPooling2D", _A, "Conv2D then global max pooling", ["M2"]),
    _p(upsampling2d_nearest, "UpSampling2D(nearest)", _A, "Conv2D then 2x nearest upsampling", ["M2"]),
    _p(upsampling2d_bilinear, "UpSampling2D(bilinear)", _A, "Conv2D then 2x bilinear upsampling", ["M2"]),
    _p(reshape, "Reshape", _A, "Conv2D then Reshape to (16, 16)", ["M2"]),
    _p(flatten, "Flatten", _A, "Conv2D, Flatten, Dense", ["M2"]),
    _p(zero_padding2d, "ZeroPadding2D", _A, "Conv2D then 1-pixel zero padding", ["M2"]),
    _p(cropping2d, "Cropping2D", _A, "Conv2D then 1-pixel cropping", ["M2"]),
    _p(permute, "Permute", _A, "Conv2D then Permute((2, 1, 3))", ["M2"]),
    _p(dropout, "Dropout", _A, "Dense then Dropout (identity at inference)", ["M2"]),
    _p(average_pooling1d, "AveragePooling1D", _A, "Dense on a sequence then 1-D average pooling", ["M2"]),
    _p(conv2d_bn, "Conv2D+BatchNormalization", _B, "Conv2D then BatchNormalization", ["M3", "M2"], bn_fold=True),
    _p(conv2d_bn_relu, "Conv2D+BatchNormalization+ReLU", _B, "Conv2D, BatchNormalization, ReLU",
       ["M3", "M2"], bn_fold=True),
    _p(depthwise_conv2d_bn, "DepthwiseConv2D+BatchNormalization", _B, "DepthwiseConv2D then BatchNormalization",
       ["M3", "M2"], bn_fold=True),
    _p(dense_bn, "Dense+BatchNormalization", _B, "Dense then BatchNormalization (not in the M3 claim)", ["M3"]),
    _p(batchnorm_alone, "BatchNormalization", _B, "BatchNormalization on the input, after no layer", ["M3"]),
    _p(batchnorm_after_add, "Add+BatchNormalization", _B, "BatchNormalization after an Add", ["M3"]),
    _p(concat_channels, "Concatenate(axis=-1)", _C, "two Conv2D branches concatenated on channels", ["M4", "M2"]),
    _p(concat_height, "Concatenate(axis=1)", _C, "two Conv2D branches concatenated on height", ["M4"]),
    _p(concat_width, "Concatenate(axis=2)", _C, "two Conv2D branches concatenated on width", ["M4"]),
    _p(concat_scaled_inputs, "Concatenate(scaled inputs)", _C,
       "channel concat of two branches whose ranges differ ~20x", ["M4"]),
    _p(concat_three_inputs, "Concatenate(3 inputs)", _C, "three Conv2D branches concatenated", ["M4"]),
    _p(concat_of_input_and_conv, "Concatenate(input, Conv2D)", _C,
       "the model input concatenated with a Conv2D of it", ["M4"]),
    _p(sequential_model, "Sequential model", _K, "Sequential: Conv2D, pooling, Dense", ["M1"]),
    _p(functional_model, "Functional model", _K, "Functional: Conv2D, pooling, Dense", ["M1"]),
    _p(subclassed_model, "subclassed Model", _K, "a keras.Model subclass with a call()", ["M1"]),
    _p(nested_model, "nested Model", _K, "a Sequential model used as a layer of a Functional one", ["M1"]),
    _p(lstm, "LSTM", _O, "LSTM with 8 units on a 6x4 sequence", ["M5"]),
    _p(gru, "GRU", _O, "GRU with 8 units on a 6x4 sequence", ["M5"]),
    _p(simple_rnn, "SimpleRNN", _O, "SimpleRNN with 8 units on a 6x4 sequence", ["M5"]),
    _p(conv1d, "Conv1D", _O, "Conv1D, kernel 3, 8 filters"),
    _p(layer_normalization, "LayerNormalization", _O, "Dense then LayerNormalization"),
    _p(multi_head_attention, "MultiHeadAttention", _O, "self-attention, 2 heads, key_dim 4"),
    _p(prelu, "PReLU", _O, "Conv2D then PReLU"),
    _p(elu, "ELU", _O, "Conv2D then ELU"),
    _p(embedding, "Embedding", _O, "Embedding of 6 token ids, Flatten, Dense", int_high=VOCAB),
    _p(lambda_layer, "Lambda", _O, "Conv2D then a Lambda (x * 0.5 + 1)"),
]}


def names() -> list[str]:
    return list(PROBES)
