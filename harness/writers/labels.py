"""How the reports name the file under test (report.md, report.html): its variant when it is the
int8 file the variant promises ('QAT int8'), else the scheme read from the file ('uint8',
'fp16-weights'), with the rule the claims use (``claims.structure.file_label``)."""
from __future__ import annotations

from qat_harness.claims.structure import file_label
from qat_harness.record.tree import ModelSection
from qat_harness.variants import Variant

#: the speed-ups a device section records: float over the file under test, float over PTQ int8
SPEEDUP_KINDS = ("qat_vs_float", "ptq_vs_float")


def under_test(m: ModelSection) -> Variant | None:
    """The quantized file the claims judge: QAT int8 when the harness built it, else the user's."""
    present = set(m.schemes or {}) | set(m.tflite or {}) | set(m.artifacts.files if m.artifacts else {})
    for d in m.devices.values():
        present |= set(d.latency or {})
    return next((v for v in (Variant.QAT_INT8, Variant.INT8) if v.value in present), None)


def under_test_label(m: ModelSection) -> str:
    variant = under_test(m)
    if variant is None:
        return "the file under test"
    return file_label(variant, (m.schemes or {}).get(variant))


def speedup_label(m: ModelSection, kind: str) -> str:
    """'float / QAT int8', 'float / uint8', 'float / PTQ int8': what a recorded speed-up divides."""
    if kind not in SPEEDUP_KINDS:
        raise ValueError(f"no speed-up {kind!r}: expected one of {', '.join(SPEEDUP_KINDS)}")
    return f"float / {under_test_label(m) if kind == 'qat_vs_float' else Variant.PTQ_INT8.label}"
