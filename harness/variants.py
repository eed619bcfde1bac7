"""The variants of one model that a run measures side by side: one name for each, everywhere.

A ``Variant`` is a ``str`` enum, so its value is the key report.json has always used
(``"qat_int8"``), and a variant read back from JSON compares equal to the member."""
from __future__ import annotations

import enum


class Variant(str, enum.Enum):
    FLOAT = "float"            # the float32 .tflite: the reference every int8 file is judged against
    FLOAT_FT = "float_ft"      # A1's control arm: float fine-tuned exactly as QAT was
    QAT_INT8 = "qat_int8"      # QAT (tfmot) then full-integer conversion: the file under test
    PTQ_INT8 = "ptq_int8"      # post-training full-integer conversion of the float model
    INT8 = "int8"              # a user's own quantized .tflite (nothing built here)

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """How people read it in reports."""
        return _LABELS[self]

    @property
    def is_quantized(self) -> bool:
        return self in (Variant.QAT_INT8, Variant.PTQ_INT8, Variant.INT8)


_LABELS = {Variant.FLOAT: "float32", Variant.FLOAT_FT: "float32 + same fine-tune",
           Variant.QAT_INT8: "QAT int8", Variant.PTQ_INT8: "PTQ int8", Variant.INT8: "int8"}

#: The files a build makes from a Keras model, in the order they are converted.
BUILT = (Variant.FLOAT, Variant.PTQ_INT8, Variant.QAT_INT8)
#: The order variants are run, timed and shown in: the reference first, then the file under test.
RUN_ORDER = (Variant.FLOAT, Variant.QAT_INT8, Variant.INT8, Variant.PTQ_INT8)
