"""What the model files are: each variant's flatbuffer read once, and the structure facts the
file claims (C1, C4, C5, M3) are judged on."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from qat_harness import claims, inspection
from qat_harness.core import tflite
from qat_harness.measure.scheme import quantization_scheme
from qat_harness.variants import Variant


@dataclasses.dataclass
class InspectedFiles:
    infos: dict[str, tflite.ModelInfo]          # every variant whose file parses
    unreadable: list[str]                      # one line per file that does not
    facts: claims.StructureFacts | None        # None: no file to judge

    def info(self, variant: str) -> tflite.ModelInfo:
        return self.infos[variant]


def inspect_files(variants: Mapping[str, Path], under_test: str, has_batchnorm: bool | None) -> InspectedFiles:
    infos: dict[str, tflite.ModelInfo] = {}
    unreadable = []
    for variant, path in variants.items():
        try:
            infos[variant] = tflite.inspect_model(path)
        except tflite.InvalidModel as exc:
            unreadable.append(f"{variant}: {exc}")
    return InspectedFiles(infos, unreadable, _structure_facts(infos, under_test, Variant.FLOAT in variants,
                                                              has_batchnorm))


def _structure_facts(infos: dict[str, tflite.ModelInfo], under_test: str, has_float: bool,
                     has_batchnorm: bool | None) -> claims.StructureFacts:
    info = infos.get(under_test)
    float_info, ptq = infos.get(Variant.FLOAT), infos.get(Variant.PTQ_INT8)
    sizes = (claims.FileSizes(float_info.size_bytes, info.size_bytes, ptq.size_bytes if ptq else None)
             if float_info and info else None)
    custom = tuple(sorted({op.opcode for op in info.ops if op.opcode.startswith("CUSTOM:")})) if info else ()
    checked = info is not None and not custom
    return claims.StructureFacts(
        under_test, sizes, has_float,
        inspection.full_integer_check(info) if checked and info else None,
        inspection.per_axis_check(info) if checked and info else None,
        inspection.batchnorm_fold_check(info) if checked and info else None,
        custom, has_batchnorm, scheme=quantization_scheme(info) if info else None)
