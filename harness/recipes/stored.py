"""What a recipe's file stores, read from its tensors: the bits a report shows and the claims judge
(C6, K1) come from here, never from the recipe's name.

A recipe can return a file in which it quantized nothing: ai-edge-quantizer quantizes float32
constants only, so on a model whose weights are already float16 (or sparse) the int4 and int8
recipes hand back the float model, 1.00x its size. Such a file is no deployment path of the
recipe's width and no comparison of the recipe's kernels.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

from qat_harness.core import tflite

#: Storage types a recipe narrows tensors to (float16: the float-casting recipe).
NARROW_DTYPES = ("int4", "int8", "int16", "float16")
#: Quantized activation types (non-constant tensors with a scale).
QUANTIZED_ACTIVATIONS = ("int8", "int16", "uint8")
_BITS = {"int2": 2, "int4": 4, "int8": 8, "uint8": 8, "int16": 16, "float16": 16}


@dataclasses.dataclass(frozen=True)
class StoredWidths:
    """Tensors the recipe stored narrower than the float file did: constants by dtype and
    quantized activations by dtype (counts beyond the float file's own)."""
    weights: dict[str, int]
    activations: dict[str, int]
    size_ratio: float

    @property
    def quantized_nothing(self) -> bool:
        return not self.weights and not self.activations

    @property
    def weight_bits(self) -> tuple[int, ...]:
        return tuple(sorted({_BITS[d] for d in self.weights if d in _BITS}))

    @property
    def activation_bits(self) -> int | None:
        """The widest quantized activation type (None: activations stay float)."""
        return max((_BITS[d] for d in self.activations if d in _BITS), default=None)

    @property
    def label(self) -> str:
        """Like a recipe's label, from the file: 'W4Afp32', 'W8A16', 'W16fAfp32', 'W4/8A8'."""
        if self.quantized_nothing:
            return "quantized nothing"
        float_weights = "f" if set(self.weights) == {"float16"} else ""
        weights = "/".join(str(b) for b in self.weight_bits) or "fp32"
        acts = f"A{self.activation_bits}" if self.activation_bits else "Afp32"
        return f"W{weights}{float_weights}{acts}"

    def describe(self) -> str:
        """One line for a reason: what the file holds."""
        if self.quantized_nothing:
            return (f"quantized nothing: its file stores no tensor narrower than the float model does "
                    f"(no int4/int8/int16 tensor, no new float16 one; {self.size_ratio:.2f}x float size)")
        parts = [f"{n} {d} weight tensor(s)" for d, n in sorted(self.weights.items())]
        parts += [f"{n} {d} activation tensor(s)" for d, n in sorted(self.activations.items())]
        return f"{self.label}: " + ", ".join(parts)

    @property
    def is_other_width(self) -> bool:
        """Does the file store something else than 8 bits (weights or activations)?"""
        return not self.quantized_nothing and (self.weight_bits != (8,) or self.activation_bits not in (None, 8))


def stored_widths(recipe_info: tflite.ModelInfo, float_info: tflite.ModelInfo) -> StoredWidths:
    """Read from the two files: the narrow constants and quantized activations the recipe's file
    has beyond the float file's (a float file with float16 weights already holds float16)."""
    def counts(info: tflite.ModelInfo) -> tuple[Counter, Counter]:
        weights = Counter(t.dtype for t in info.tensors if t.is_constant and t.dtype in NARROW_DTYPES)
        acts = Counter(t.dtype for t in info.tensors
                       if not t.is_constant and t.scales and t.dtype in QUANTIZED_ACTIVATIONS)
        return weights, acts

    (w, a), (fw, fa) = counts(recipe_info), counts(float_info)
    weights = w - fw
    if set(weights) - {"float16"}:
        del weights["float16"]  # beside integer weights, float16 constants are their block scales
    return StoredWidths(dict(weights), dict(a - fa), recipe_info.size_bytes / float_info.size_bytes)
