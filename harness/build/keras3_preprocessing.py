"""Preprocessing layers at the start of a Keras 3 model (``Rescaling``, ``Normalization``),
kept outside the quantized graph.

tfmot's default 8-bit registry has no QuantizeConfig for them, so ``quantize_model`` stops on
them; and quantizing a scale-and-shift of the raw input buys a deployment nothing. The
harness takes the chain of such layers that starts at the model's one input out of the model:
it becomes float pre-processing (``FloatPreprocessing``) that the parent applies to the data
before every variant, and the rest of the model is translated, quantized and converted (its
.tflite files start where the chain ends). The report says so in the model's notes.

Finding the chain and the config without it is pure Python on the archive's config
(``split_config``): the parent's refusal of unquantizable layers (``build.qat_precheck``)
judges the same rest of the model as the child builds. The numbers are read in the child
from the Keras 3 layers themselves (``float_preprocessing``): an adapted Normalization keeps
its statistics in the weights, not in the config.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any

import numpy as np

PREPROCESSING_LAYERS = frozenset({"Rescaling", "Normalization"})


class StepForm(str, enum.Enum):
    MULTIPLY_ADD = "x * a + b"        # Rescaling (scale, offset); an inverted Normalization (std, mean)
    SUBTRACT_DIVIDE = "(x - a) / b"   # Normalization (mean, std)


@dataclasses.dataclass(frozen=True)
class FloatStep:
    """One preprocessing layer as the arithmetic Keras 3 does (in float32, in the same order)."""
    layer: str
    class_name: str
    form: StepForm
    a: np.ndarray
    b: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.form is StepForm.MULTIPLY_ADD:
            return x * self.a + self.b
        return (x - self.a) / self.b

    @property
    def text(self) -> str:
        a, b = ("scale", "offset") if self.class_name == "Rescaling" else (
            ("std", "mean") if self.form is StepForm.MULTIPLY_ADD else ("mean", "std"))
        form = self.form.value.replace("a", a, 1).replace("b", b, 1)
        return f"{self.class_name} '{self.layer}' ({form}; {a} {_values(self.a)}, {b} {_values(self.b)})"


def _values(array: np.ndarray) -> str:
    flat = np.ravel(array)
    if flat.size <= 4:
        return ", ".join(f"{v:.4g}" for v in flat)
    return f"{flat.size} values {flat.min():.4g}..{flat.max():.4g}"


@dataclasses.dataclass(frozen=True)
class FloatPreprocessing:
    """The preprocessing taken out of a model, applied in order to its one input."""
    steps: tuple[FloatStep, ...] = ()

    def apply(self, x: np.ndarray) -> np.ndarray:
        for step in self.steps:
            x = step.apply(x)
        return x

    def apply_to_inputs(self, inputs):
        """A model's inputs (one array, or a one-element list) with the steps applied."""
        if isinstance(inputs, (list, tuple)):
            return [self.apply(inputs[0]), *inputs[1:]]
        return self.apply(inputs)

    @property
    def text(self) -> str:
        return ", then ".join(step.text for step in self.steps)

    @property
    def note(self) -> str:
        return (f"float pre-processing kept outside the quantized graph: {self.text}; tfmot's default "
                "8-bit scheme has no QuantizeConfig for it, so the data passes through it in float "
                "before every variant and the .tflite files start after it")

    def to_json(self) -> list[dict]:
        return [{"layer": s.layer, "class_name": s.class_name, "form": s.form.value,
                 "a": s.a.tolist(), "b": s.b.tolist()} for s in self.steps]

    @classmethod
    def from_json(cls, steps: list[dict] | None) -> FloatPreprocessing:
        return cls(tuple(FloatStep(s["layer"], s["class_name"], StepForm(s["form"]),
                                   np.asarray(s["a"], dtype=np.float32), np.asarray(s["b"], dtype=np.float32))
                         for s in steps or []))


# --- the config without the chain (pure Python) ------------------------------------------

@dataclasses.dataclass(frozen=True)
class Split:
    model: dict                  # the model entry ({"class_name", "config", ...}) without the chain
    taken: tuple[str, ...] = ()  # names of the preprocessing layers taken out, in call order


def split_config(model: dict) -> Split:
    """The model entry of a ``.keras`` config.json without its leading preprocessing chain:
    the Rescaling/Normalization layers that start at the model's one input, each the only
    consumer of what it reads, called once, and followed by at least one other layer."""
    if model.get("class_name") == "Sequential":
        return _split_sequential(model)
    if model.get("class_name") == "Functional":
        return _split_functional(model)
    return Split(model)


def _is_preprocessing(entry: dict) -> bool:
    return (entry.get("class_name") in PREPROCESSING_LAYERS
            and str(entry.get("module") or "").startswith("keras.")
            and not str(entry.get("module") or "").startswith("keras.src.ops"))


def layer_name(entry: dict) -> str:
    """The name of a layer entry of a config.json."""
    return str(entry.get("name") or (entry.get("config") or {}).get("name") or "?")


def _split_sequential(model: dict) -> Split:
    layers = list((model.get("config") or {}).get("layers") or [])
    start = 1 if layers and layers[0].get("class_name") == "InputLayer" else 0
    end = start
    while end < len(layers) - 1 and _is_preprocessing(layers[end]):
        end += 1
    if end == start:
        return Split(model)
    trimmed = copy.deepcopy(model)
    trimmed["config"]["layers"] = layers[:start] + layers[end:]
    return Split(trimmed, tuple(layer_name(e) for e in layers[start:end]))


def call_references(value: Any):
    """Every keras_history reference [layer, node, index] in a call's arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            yield tuple((value.get("config") or {}).get("keras_history") or ())
            return
        for item in value.values():
            yield from call_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from call_references(item)


def _endpoints(structure: Any) -> list[tuple]:
    if isinstance(structure, list) and len(structure) == 3 and isinstance(structure[0], str):
        return [tuple(structure)]
    if isinstance(structure, dict):
        return [ref for value in structure.values() for ref in _endpoints(value)]
    return [ref for value in structure or [] for ref in _endpoints(value)]


def _split_functional(model: dict) -> Split:
    config = model.get("config") or {}
    inputs = _endpoints(config.get("input_layers"))
    if len(inputs) != 1:
        return Split(model)
    outputs = {ref[0] for ref in _endpoints(config.get("output_layers"))}
    entries = [e for e in config.get("layers") or [] if e.get("class_name") != "InputLayer"]
    consumers: dict[tuple, list[dict]] = {}
    for entry in entries:
        for node in entry.get("inbound_nodes") or []:
            for ref in set(call_references(node)):
                consumers.setdefault(ref, []).append(entry)
    current, taken = (inputs[0][0], 0, 0), []
    while len(consumers.get(current, [])) == 1:
        entry = consumers[current][0]
        nodes = entry.get("inbound_nodes") or []
        name = layer_name(entry)
        if not (_is_preprocessing(entry) and len(nodes) == 1 and list(call_references(nodes[0])) == [current]
                and name not in outputs and consumers.get((name, 0, 0))):
            break
        taken.append(name)
        current = (name, 0, 0)
    if not taken:
        return Split(model)
    trimmed = copy.deepcopy(model)
    trimmed["config"]["layers"] = [e for e in trimmed["config"]["layers"] if layer_name(e) not in taken]
    _rewire(trimmed["config"]["layers"], current, [inputs[0][0], 0, 0])
    return Split(trimmed, tuple(taken))


def _rewire(value: Any, old: tuple, new: list) -> None:
    """Every reference to ``old`` in the layers' calls now reads ``new``."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = (value.get("config") or {}).get("keras_history")
            if history is not None and tuple(history) == old:
                value["config"]["keras_history"] = list(new)
            return
        for item in value.values():
            _rewire(item, old, new)
    elif isinstance(value, list):
        for item in value:
            _rewire(item, old, new)


# --- the numbers (harness child: Keras 3 loaded) -----------------------------------------

def float_preprocessing(split: Split, keras3_model) -> FloatPreprocessing:
    """The steps taken out, with the values the Keras 3 layers compute with."""
    from keras import ops

    def array(value) -> np.ndarray:
        return np.asarray(ops.convert_to_numpy(ops.cast(value, "float32")), dtype=np.float32)

    steps = []
    for name in split.taken:
        layer = keras3_model.get_layer(name)
        if type(layer).__name__ == "Rescaling":
            steps.append(FloatStep(name, "Rescaling", StepForm.MULTIPLY_ADD, array(layer.scale), array(layer.offset)))
            continue
        from keras import backend

        std = np.maximum(np.sqrt(array(layer.variance)), np.float32(backend.epsilon()))
        mean = array(layer.mean)
        steps.append(FloatStep(name, "Normalization", StepForm.MULTIPLY_ADD, std, mean) if layer.invert
                     else FloatStep(name, "Normalization", StepForm.SUBTRACT_DIVIDE, mean, std))
    return FloatPreprocessing(tuple(steps))
