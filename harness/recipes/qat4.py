"""QAT below 8 bits (issue 13): does QAT recover the accuracy that 4-bit PTQ loses, as it does
at 8 bits? On digits:

1. train ``digits_cnn`` in float, fold its BatchNorms into the convolutions (a BN-free model
   with the same function), so the weights QAT fake-quantizes are exactly the weights the
   .tflite stores;
2. QAT with a custom tfmot ``QuantizeConfig``: 4-bit weights (per output channel,
   symmetric), no activation quantization (the int4 weight recipes keep float activations),
   under ``quantize_scope``; the control arm is the folded float model fine-tuned with the
   same epochs, learning rate and data;
3. deploy every arm through the same int4 recipe (``ai-edge-quantizer``) and run it on LiteRT:
   PTQ-int4 = the recipe on the float (or control) model, QAT-int4 = the recipe on the weights
   QAT trained with (fake-quantized; symmetric narrow range = the recipe's grid max|w|/7).

The Keras work runs in a child (``__main__``); ``compare`` is the parent side."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from qat_harness.core.child import run_child, serve_once

CHILD = "qat_harness.recipes.qat4"


@dataclasses.dataclass
class Qat4Arm:
    arm: str
    recipe: str | None
    top1: dict[str, float]            # device -> top-1 on the digits test split
    agreement_with_float: dict[str, float]
    size_bytes: int | None = None
    error: str | None = None


def compare(workdir: Path, devices: dict, recipes=("int4-weight",), float_epochs: int = 8,
            qat_epochs: int = 3, timeout_s: float = 900.0) -> dict:
    """Train in a child, then deploy each arm through each recipe on each device."""
    from qat_harness.core import tflite
    from qat_harness.models.datasets import digits
    from qat_harness.recipes.catalog import apply_recipe
    from qat_harness.recipes.stage import as_float, top1_of

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    built = run_child(CHILD, {"out": str(workdir), "float_epochs": float_epochs, "qat_epochs": qat_epochs},
                      timeout_s)
    data = digits()
    x, y = data.x_eval, data.y_eval
    assert y is not None  # the digits are labelled
    arms: list[Qat4Arm] = []
    float_top1: dict[str, np.ndarray] = {}

    def evaluate(label: str, recipe: str | None, path: Path) -> None:
        info = tflite.inspect_model(path)
        top1, agree = {}, {}
        for name, dev in devices.items():
            out = as_float(dev.run(path, tflite.model_inputs(info, x)).outputs, info.tensor(info.outputs[0]))
            t = top1_of(out)
            if label == "float" and recipe is None:
                float_top1[name] = t
            top1[name] = float(np.mean(t == y))
            if name in float_top1:
                agree[name] = float(np.mean(t == float_top1[name]))
        arms.append(Qat4Arm(label if recipe is None else f"{label} -> {recipe}", recipe, top1, agree,
                            info.size_bytes))

    evaluate("float", None, Path(built["float"]))
    evaluate("float + same fine-tune", None, Path(built["float_ft"]))
    evaluate("QAT-4 weights (float)", None, Path(built["qat4"]))
    for recipe in recipes:
        for label, key in (("PTQ (float)", "float"), ("PTQ (float + same fine-tune)", "float_ft"),
                           ("QAT-4", "qat4")):
            art = apply_recipe(Path(built[key]), recipe, workdir / "recipes")
            if not art.converted:
                arms.append(Qat4Arm(f"{label} -> {recipe}", recipe, {}, {}, None, art.error))
                continue
            assert art.path is not None  # converted
            evaluate(label, recipe, art.path)
    return {"keras": built.get("keras", {}), "arms": arms, "n": len(y)}


# -- child side ---------------------------------------------------------------------------------------
def _folded(model):
    """The same function without BatchNorm: each BN folded into the conv before it."""
    import tf_keras as keras
    from tf_keras import layers

    inp = keras.Input(model.input_shape[1:], name="image")
    x = inp
    pending = None  # (new layer, kernel, bias) waiting for a BN to fold
    assignments = []
    for layer in model.layers[1:]:
        if isinstance(layer, layers.BatchNormalization):
            new, kernel, bias = pending
            gamma, beta, mean, var = layer.get_weights()
            s = gamma / np.sqrt(var + layer.epsilon)
            if isinstance(new, layers.DepthwiseConv2D):
                kernel = kernel * s.reshape(1, 1, -1, 1)
            else:
                kernel = kernel * s
            bias = beta + (bias - mean) * s
            assignments[-1] = (new, [kernel, bias])
            pending = (new, kernel, bias)
            continue
        cfg = layer.get_config()
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and not cfg.get("use_bias", True):
            cfg["use_bias"] = True
            new = type(layer).from_config(cfg)
            x = new(x)
            w = layer.get_weights()
            kernel = w[0]
            channels = kernel.shape[2] if isinstance(layer, layers.DepthwiseConv2D) else kernel.shape[-1]
            bias = np.zeros(channels, np.float32)
            assignments.append((new, [kernel, bias]))
            pending = (new, kernel, bias)
        else:
            new = type(layer).from_config(cfg)
            x = new(x)
            if layer.get_weights():
                assignments.append((new, layer.get_weights()))
    out = keras.Model(inp, x, name=model.name + "_folded")
    for new, weights in assignments:
        new.set_weights([np.asarray(w, np.float32) for w in weights])
    return out


def _w4_config_class():
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class Weight4BitConfig(tfmot.quantization.keras.QuantizeConfig):
        """4-bit weights (per output channel, symmetric), activations left in float."""

        def __init__(self, attr: str = "kernel"):
            self.attr = attr

        def get_weights_and_quantizers(self, layer):
            return [(getattr(layer, self.attr), quantizers.LastValueQuantizer(
                num_bits=4, symmetric=True, narrow_range=True, per_axis=True))]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            setattr(layer, self.attr, quantize_weights[0])

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {"attr": self.attr}

    return Weight4BitConfig


def _child(req: dict) -> dict:
    from qat_harness.core import keras2

    keras2.enter()
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tf_keras import layers

    from qat_harness.build.convert import to_tflite
    from qat_harness.models.datasets import digits
    from qat_harness.models.reference import digits_cnn

    out = Path(req["out"])
    data = digits()
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=req["float_epochs"], batch_size=32, verbose=0)
    folded = _folded(model)
    ref = model.predict(data.x_eval, verbose=0)
    fold_diff = float(np.abs(folded.predict(data.x_eval, verbose=0) - ref).max())

    def acc(m):
        return float(np.mean(m.predict(data.x_eval, verbose=0).argmax(-1) == data.y_eval))

    keras_metrics = {"float": acc(model), "folded_max_abs_diff": fold_diff}
    (out / "float.tflite").write_bytes(to_tflite(folded, full_int8=False))

    lr = 1e-4
    control = keras.models.clone_model(folded)
    control.set_weights(folded.get_weights())
    keras.utils.set_random_seed(1)
    control.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    control.fit(data.x_train, data.y_train, epochs=req["qat_epochs"], batch_size=32, verbose=0)
    keras_metrics["float_ft"] = acc(control)
    (out / "float_ft.tflite").write_bytes(to_tflite(control, full_int8=False))

    config = _w4_config_class()

    def annotate(layer):
        if isinstance(layer, layers.DepthwiseConv2D):
            return tfmot.quantization.keras.quantize_annotate_layer(layer, config("depthwise_kernel"))
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            return tfmot.quantization.keras.quantize_annotate_layer(layer, config("kernel"))
        return layer

    annotated = keras.models.clone_model(folded, clone_function=annotate)
    annotated.set_weights(folded.get_weights())
    with tfmot.quantization.keras.quantize_scope({"Weight4BitConfig": config}):
        qat = tfmot.quantization.keras.quantize_apply(annotated)
    keras_metrics["qat4_before_fine_tune"] = acc(qat)
    keras.utils.set_random_seed(1)
    qat.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    qat.fit(data.x_train, data.y_train, epochs=req["qat_epochs"], batch_size=32, verbose=0)
    keras_metrics["qat4_fake_quant"] = acc(qat)
    # the weights QAT trained with (fake-quantized: on the 4-bit grid, which with a symmetric
    # narrow range is the recipe's own grid max|w|/7), into the BN-free float architecture
    latent = keras.models.clone_model(folded)
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    got: dict[str, np.ndarray] | None
    for wrapper in qat.layers:
        weight_vars = getattr(wrapper, "_weight_vars", None)
        if not weight_vars:
            continue
        got = {}
        for weight, quantizer, qvars in weight_vars:
            got[weight.name.split("/")[-1].split(":")[0]] = np.asarray(
                quantizer(weight, training=False, weights=qvars))
        inner = wrapper.layer
        if getattr(inner, "use_bias", False):
            got["bias"] = inner.bias.numpy()
        by_layer[inner.name] = got
    missing = [layer.name for layer in latent.layers
               if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense))
               and layer.name not in by_layer]
    if missing:
        raise RuntimeError(f"no QAT weights found for {missing}")
    for layer in latent.layers:
        got = by_layer.get(layer.name)
        if got:
            kernel = got.get("kernel", got.get("depthwise_kernel"))
            layer.set_weights([kernel, got["bias"]] if "bias" in got else [kernel])
    keras_metrics["qat4_exported_float"] = acc(latent)
    (out / "qat4.tflite").write_bytes(to_tflite(latent, full_int8=False))
    return {"float": str(out / "float.tflite"), "float_ft": str(out / "float_ft.tflite"),
            "qat4": str(out / "qat4.tflite"), "keras": keras_metrics}


if __name__ == "__main__":
    sys.exit(serve_once(_child))
