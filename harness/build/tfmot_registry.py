"""What tfmot's default 8-bit QAT scheme documents about a layer, read from tfmot itself.

The sources, all read at run time so the matrix follows the installed tfmot:

- ``Default8BitQuantizeRegistry``: the layer class -> QuantizeConfig map that
  ``quantize_model`` consults (what is quantized: weights, activations, output);
- the layout transforms ``Default8BitQuantizeLayoutTransform.apply`` runs before that
  (BatchNorm after Conv2D / DepthwiseConv2D / Dense, SeparableConv2D, Concatenate), matched
  against the probe's own graph the way tfmot's ``ModelTransformer`` matches them;
- caveats that exist only as comments in the registry's source. Comments are not data, so
  ``SOURCE_CAVEATS`` names them by hand, and each is kept only while the installed source
  still holds its quoted phrase.

Model kinds (Sequential / Functional vs subclassed) are documented by the QAT guide (claim
M1-api), not by the registry; ``document_model`` says which source speaks.

Runs where the model lives (the probe child process); imports TensorFlow.
"""
from __future__ import annotations

import functools
import inspect
import re

from qat_harness.core import keras2

keras2.enter()  # Keras 2 before TensorFlow loads (this module runs in harness children)

SUPPORTED = "supported"
CAVEAT = "supported with caveat"
NOT_IN_REGISTRY = "not in registry"
NOT_SUPPORTED = "not supported"
_RANK = {SUPPORTED: 0, CAVEAT: 1, NOT_IN_REGISTRY: 2, NOT_SUPPORTED: 3}

# (layer class, config key/value or None, phrase that must be in the registry source, caveat)
SOURCE_CAVEATS = [
    ("UpSampling2D", ("interpolation", "bilinear"),
     "Reduce the quantization errors for bilinear",
     "registry source comment: bilinear UpSampling2D has larger quantization errors than "
     "expected (the TFLite op wants equal input and output scales; QAT does not model the "
     "requantize the converter inserts)"),
    ("Lambda", None, "layers.Lambda needs custom handling by the user",
     "registry source comment: Lambda needs custom handling by the user"),
]


def _modules():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_layout_transform as layout,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as transforms,
    )
    return registry, layout, transforms


@functools.lru_cache(maxsize=1)
def registry():
    reg, _, _ = _modules()
    return reg.Default8BitQuantizeRegistry()


def registry_table() -> dict[str, dict]:
    """Layer class name -> what the registry's QuantizeConfig quantizes."""
    reg = registry()
    table = {}
    for cls, info in reg._layer_quantize_map.items():  # noqa: SLF001 - the map is the documentation
        if hasattr(info, "weight_attrs"):  # _QuantizeInfo or a Default8Bit*QuantizeConfig
            entry = {"config": type(info).__name__, "weights": list(info.weight_attrs),
                     "activations": list(info.activation_attrs),
                     "quantize_output": bool(getattr(info, "quantize_output", False))}
        else:  # a QuantizeConfig that decides per layer (Activation)
            entry = {"config": type(info).__name__, "weights": [], "activations": [],
                     "quantize_output": "depends on the activation"}
        entry["passes_through"] = (not entry["weights"] and not entry["activations"]
                                   and entry["quantize_output"] is False)
        table[cls.__name__] = entry
    return dict(sorted(table.items()))


@functools.lru_cache(maxsize=1)
def layout_transforms() -> list[dict]:
    """The transforms the default 8-bit scheme applies before quantizing, with their patterns.
    The list is read from the names ``Default8BitQuantizeLayoutTransform.apply`` calls; if
    that source cannot be read, every Transform in tfmot's transforms module is used."""
    _, layout, tmod = _modules()
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import transforms as base
    try:
        names = re.findall(r"default_8bit_transforms\.(\w+)\(",
                           inspect.getsource(layout.Default8BitQuantizeLayoutTransform.apply))
    except (OSError, TypeError):
        names = []
    if not names:
        names = [n for n, c in inspect.getmembers(tmod, inspect.isclass)
                 if issubclass(c, base.Transform) and c.__module__ == tmod.__name__]
    out = []
    for name in names:
        cls = getattr(tmod, name, None)
        if cls is None:
            continue
        try:
            pattern = cls().pattern()
        except Exception:  # noqa: BLE001 - a transform we cannot instantiate documents nothing
            continue
        doc = (inspect.getdoc(cls) or "").split("\n")[0]
        out.append({"transform": name, "pattern": pattern, "text": pattern_text(pattern), "doc": doc})
    return out


def pattern_text(pattern) -> str:
    conf = "".join(f"[{k}={v}]" for k, v in (pattern.config or {}).items())
    inputs = ", ".join(pattern_text(p) for p in pattern.inputs or [])
    return f"{pattern.class_name}{conf}" + (f" after ({inputs})" if inputs else "")


def _inbound(layer) -> list:
    layers = []
    for node in getattr(layer, "_inbound_nodes", [])[:1]:
        inbound = node.inbound_layers
        layers.extend(inbound if isinstance(inbound, (list, tuple)) else [inbound])
    return layers


def _matches(layer, pattern) -> bool:
    """tfmot's ModelTransformer rule: class name and config values as anchored regexes, then
    the inputs in order."""
    if re.match("^" + pattern.class_name + "$", type(layer).__name__) is None:
        return False
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - a layer without a config matches no config pattern
        config = {}
    for key, value in (pattern.config or {}).items():
        if not (re.match("^" + str(value) + "$", str(config.get(key))) or config.get(key) == value):
            return False
    if pattern.inputs:
        inbound = _inbound(layer)
        if len(inbound) != len(pattern.inputs):
            return False
        return all(_matches(l, p) for l, p in zip(inbound, pattern.inputs))
    return True


def _source_caveats(layer) -> list[str]:
    reg, _, _ = _modules()
    try:
        source = inspect.getsource(reg)
    except (OSError, TypeError):
        return []
    notes = []
    for cls_name, cond, phrase, text in SOURCE_CAVEATS:
        if type(layer).__name__ != cls_name or phrase not in source:
            continue
        if cond and str(layer.get_config().get(cond[0])) != cond[1]:
            continue
        notes.append(text)
    return notes


def document_layer(layer, custom_configs: dict | None = None) -> dict:
    """What tfmot documents for one layer of a model: {'layer', 'class', 'status', 'note'}."""
    name, cls = layer.name, type(layer).__name__
    row = {"layer": name, "class": cls}
    if custom_configs and cls in custom_configs:
        return {**row, "status": SUPPORTED, "note": f"the probe supplies a QuantizeConfig "
                                                     f"({type(custom_configs[cls]).__name__})"}
    reg = registry()
    notes = _source_caveats(layer)
    transforms = [t for t in layout_transforms() if t["transform"] != "InputLayerQuantize"
                  and _matches(layer, t["pattern"])]
    if reg.supports(layer):
        entry = registry_table().get(cls)
        try:
            config = reg.get_quantize_config(layer)
            if hasattr(config, "get_output_quantizers"):
                config.get_output_quantizers(layer)  # Activation: refuses some activations
        except Exception as exc:  # noqa: BLE001
            return {**row, "status": NOT_SUPPORTED,
                    "note": f"in the registry, but its QuantizeConfig refuses it: {exc}"}
        what = _what_is_quantized(entry) if entry else "RNN cells in the registry"
        notes = [what] + [f"rewritten by {t['transform']} ({t['text']})" for t in transforms] + notes
        status = CAVEAT if len(notes) > 1 + len(transforms) else SUPPORTED
        return {**row, "status": status, "note": "; ".join(notes)}
    if transforms:
        t = transforms[0]
        return {**row, "status": CAVEAT,
                "note": "; ".join([f"not in the registry, handled only by the layout transform "
                                   f"{t['transform']} ({t['text']}): {t['doc']}"] + notes)}
    if getattr(reg, "_is_rnn_layer", lambda _l: False)(layer):
        cells = [type(c).__name__ for c in reg._get_rnn_cells(layer)]  # noqa: SLF001
        notes.insert(0, f"RNN layer: its cell(s) {', '.join(cells)} are not in the registry")
    elif hasattr(layer, "layers") and hasattr(layer, "inputs"):
        notes.insert(0, "a model used as a layer (nested model)")
    return {**row, "status": NOT_IN_REGISTRY,
            "note": "; ".join(notes) or "no registry entry and no layout transform matches it"}


def _what_is_quantized(entry: dict) -> str:
    if entry.get("passes_through"):
        return "in the registry; no quantizer of its own (its input scale passes through)"
    parts = []
    if entry["weights"]:
        parts.append("weights " + ", ".join(entry["weights"]))
    if entry["activations"]:
        parts.append("activation")
    if entry["quantize_output"] is True:
        parts.append("output")
    elif entry["quantize_output"] not in (False, True):
        parts.append(f"output ({entry['quantize_output']})")
    return "in the registry; quantizes " + (", ".join(parts) or "nothing")


def _layers(model) -> list:
    import tf_keras as keras
    return [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]


def document_model(model, custom_configs: dict | None = None) -> dict:
    """{'status', 'source', 'summary', 'layers': [...], 'predicts': {'qat': 'PASS'|'FAIL'}}.

    ``status`` is the worst layer status. A subclassed model is 'not supported' by the QAT
    guide (M1-api) whatever its layers are."""
    import tf_keras as keras

    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        return {"status": NOT_SUPPORTED, "source": "QAT guide (M1-api)", "layers": [],
                "summary": f"{type(model).__name__} is a subclassed model: the QAT guide supports "
                           "Sequential and Functional models only",
                "predicts": {"qat": "FAIL"}}
    rows = [document_layer(l, custom_configs) for l in _layers(model)]
    status = max((r["status"] for r in rows), key=_RANK.__getitem__, default=SUPPORTED)
    worst = [r for r in rows if r["status"] == status and status != SUPPORTED]
    if worst:
        summary = "; ".join(f"{r['class']}: {r['note']}" for r in worst)
    else:
        summary = "every layer is in the registry"
    return {"status": status, "source": "tfmot default 8-bit registry and layout transforms",
            "layers": rows, "summary": summary,
            "predicts": {"qat": "FAIL" if _RANK[status] >= _RANK[NOT_IN_REGISTRY] else "PASS"}}
