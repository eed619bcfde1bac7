"""The claim registry: the one place where each claim id is spelt, with the guide's statement,
the expected value, the scope, the device roles it is judged on, its thresholds and a pure
``judge`` from typed measurements to a ``ClaimResult`` (CLAIMS.md says what each one means).

Callers name a claim by its class (``claims.Size.id``, ``claims.Agreement.judge(...)``); a
claim id read back from a report is looked up with ``get``. A new claim is one class in a
module of this package, one entry in ``REGISTRY`` and one row in CLAIMS.md."""
from __future__ import annotations

from qat_harness.claims.accuracy import (
    Accuracy,
    Agreement,
    Fidelity,
    OutputFidelity,
    PairedAccuracy,
    TopOneAgreement,
)
from qat_harness.claims.base import ANY_DEVICE, NO_FLOAT_REFERENCE, Claim, Scope
from qat_harness.claims.bitwidth import EightBitOnly, OtherWidthRecipe
from qat_harness.claims.coverage import AllowListedLayers, Concat, KerasApi, Rnn, judge_layer_matrix
from qat_harness.claims.kernels import (
    CrossKernelAgreement,
    KernelComparison,
    KernelPair,
    ReferenceAgreement,
    VersusReference,
)
from qat_harness.claims.latency import (
    AcceleratorLatency,
    Ceiling,
    CpuLatency,
    SpeedUp,
    ceiling,
    latency_claim,
)
from qat_harness.claims.structure import (
    BatchNormFolding,
    FileSizes,
    FullInteger,
    Loadability,
    PerAxis,
    Size,
    StructureFacts,
    judge_structure,
)

#: Every claim by id, in CLAIMS.md order.
REGISTRY: dict[str, type[Claim]] = {c.id: c for c in (
    Size, CpuLatency, AcceleratorLatency, FullInteger, PerAxis, EightBitOnly,
    CrossKernelAgreement, ReferenceAgreement,
    KerasApi, AllowListedLayers, BatchNormFolding, Concat, Rnn,
    Accuracy, Agreement, Fidelity,
)}
#: The guide's statement of every claim, by id (what reports print beside a verdict).
TEXTS: dict[str, str] = {cid: c.text for cid, c in REGISTRY.items()}


def get(claim_id: str) -> type[Claim]:
    """The claim with this id; KeyError naming the known ids for any other."""
    try:
        return REGISTRY[claim_id]
    except KeyError:
        raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(REGISTRY)}") from None


def with_scope(scope: Scope) -> list[type[Claim]]:
    """The claims judged at this scope, in CLAIMS.md order."""
    return [c for c in REGISTRY.values() if scope in c.scopes]


__all__ = [
    "ANY_DEVICE", "NO_FLOAT_REFERENCE", "REGISTRY", "TEXTS",
    "Accuracy", "AcceleratorLatency", "Agreement", "AllowListedLayers", "BatchNormFolding", "Ceiling",
    "Claim", "Concat", "CpuLatency", "CrossKernelAgreement", "EightBitOnly", "FileSizes", "Fidelity", "FullInteger",
    "KerasApi", "KernelComparison", "KernelPair", "Loadability", "OtherWidthRecipe", "OutputFidelity", "PairedAccuracy",
    "PerAxis", "ReferenceAgreement", "Rnn", "Scope", "Size", "SpeedUp", "StructureFacts", "TopOneAgreement",
    "VersusReference", "ceiling", "get", "judge_layer_matrix", "judge_structure",
    "latency_claim", "with_scope",
]
