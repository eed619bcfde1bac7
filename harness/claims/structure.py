"""The claims read from the .tflite flatbuffer (C1 size, C4 full integer, C5 per-axis, M3
BatchNorm folding), judged once it is known whether any device could load the file: a file
that parses but that no device loads is not a deployable model, so it never keeps a PASS.
A float file (its scheme read from the file says so) has nothing 8-bit to judge: all four SKIP."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from qat_harness.claims.base import ANY_DEVICE, NO_FLOAT_REFERENCE, Claim, Scope
from qat_harness.measure.scheme import QuantScheme
from qat_harness.results import ClaimResult, Verdict
from qat_harness.variants import Variant

if TYPE_CHECKING:
    from qat_harness.claims.layer_matrix import LayerMatrix
    from qat_harness.inspection import BnFoldCheck, FullIntegerCheck, PerAxisCheck

#: The DeviceError kind of a runtime that refused the file (see core.errors.DeviceError).
_REFUSED = "failed"


@dataclasses.dataclass(frozen=True)
class Loadability:
    """How the devices fared with the int8 file under test: for each device that tried to run
    it, its run error ('' when it ran). No device yet: nothing says the file does not load."""
    run_errors: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def refusal(self) -> str | None:
        """The first device's refusal when every device that tried refused to load the file."""
        errors = list(self.run_errors.values())
        if errors and all(e.startswith(_REFUSED) for e in errors):
            return errors[0]
        return None

    @property
    def settled(self) -> bool:
        """Will no later device change the verdict? Yes once one device did not refuse it."""
        return any(not e.startswith(_REFUSED) for e in self.run_errors.values())


@dataclasses.dataclass(frozen=True)
class FileSizes:
    float_bytes: int
    int8_bytes: int
    ptq_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class StructureFacts:
    """What inspection read from a model's files, for C1, C4, C5 and M3."""
    variant: str                                 # the int8 variant under test
    sizes: FileSizes | None                      # None: the float or the int8 file is missing
    float_given: bool                            # is there a float reference at all
    full_integer: FullIntegerCheck | None = None  # None (the three): no int8 file, or a compiled one
    per_axis: PerAxisCheck | None = None
    bn_fold: BnFoldCheck | None = None
    custom_ops: tuple[str, ...] = ()             # 'CUSTOM:name' ops: a compiled model
    has_batchnorm: bool | None = None            # None: the source model is unknown
    scheme: QuantScheme | None = None            # read from the file under test; None: not read

    @property
    def label(self) -> str:
        return file_label(self.variant, self.scheme)


def file_label(variant: str, scheme: QuantScheme | None) -> str:
    """The file under test as a reason names it: its variant ('QAT int8', 'int8') when it is the
    int8 file the variant promises, else the scheme read from it ('uint8', 'dynamic-range')."""
    if scheme is not None and scheme is not QuantScheme.INT8:
        return scheme.label
    return Variant(variant).label


class _FileClaim(Claim):
    scopes: ClassVar[tuple[Scope, ...]] = (Scope.FILE,)

    @classmethod
    def deployable(cls, result: ClaimResult, loadability: Loadability) -> ClaimResult:
        refusal = loadability.refusal
        if result.verdict is not Verdict.PASS or refusal is None:
            return result
        return dataclasses.replace(result, verdict=Verdict.ERROR,
                                   reason=f"{result.reason}; but no device could load the file ({refusal})")


class Size(_FileClaim):
    id = "C1-size"
    text = "With the API defaults, model size shrinks by 4x (8-bit instead of 32-bit float)."
    EXPECTED_RATIO = 4.0
    PASS_MIN = 3.5   # metadata and int32 biases keep small models a little under 4x
    WARN_MIN = 3.0
    expected = f"~{EXPECTED_RATIO:g}x (PASS >= {PASS_MIN}x, WARN >= {WARN_MIN}x)"

    @classmethod
    def judge(cls, model: str, sizes: FileSizes, int8_label: str = "QAT int8",
              loadability: Loadability = Loadability()) -> ClaimResult:
        ratio = sizes.float_bytes / sizes.int8_bytes
        if ratio >= cls.PASS_MIN:
            verdict, why = Verdict.PASS, "within tolerance of 4x"
        elif ratio >= cls.WARN_MIN:
            verdict, why = Verdict.WARN, "under 4x: fixed flatbuffer overhead and int32 biases weigh on this model"
        else:
            verdict, why = Verdict.FAIL, "far under 4x"
        reason = (f"float {sizes.float_bytes / 1024:.1f} KiB / {int8_label} "
                  f"{sizes.int8_bytes / 1024:.1f} KiB = {ratio:.2f}x: {why}")
        details: dict[str, Any] = {"float_bytes": sizes.float_bytes, "qat_int8_bytes": sizes.int8_bytes}
        if sizes.ptq_bytes:
            details.update(ptq_int8_bytes=sizes.ptq_bytes, ptq_ratio=round(sizes.float_bytes / sizes.ptq_bytes, 3))
        return cls.deployable(cls.result(model, ANY_DEVICE, verdict, round(ratio, 3), reason, details=details),
                              loadability)


class FullInteger(_FileClaim):
    id = "C4-full-int"
    text = "The converter can produce full-integer models."
    expected = "all ops and tensors integer (int8 or uint8, int32 biases), int8 or uint8 input and output"

    @classmethod
    def judge(cls, model: str, check: FullIntegerCheck, variant: str = "qat_int8",
              loadability: Loadability = Loadability(), scheme: QuantScheme | None = None) -> ClaimResult:
        """The measured cell shows the first float ops; ``details['check']`` keeps them all."""
        verdict = Verdict.PASS if check.ok else Verdict.FAIL
        measured = {"io": check.io_dtypes, "float_ops": check.float_ops_shown()}
        return cls.deployable(cls.result(model, ANY_DEVICE, verdict, measured,
                                         f"{file_label(variant, scheme)}: {check.reason}",
                                         details={"check": check, "variant": variant, "scheme": scheme}),
                              loadability)


class PerAxis(_FileClaim):
    id = "C5-per-axis"
    text = "Per-axis quantization for convolutional layers, not per-tensor."
    expected = "conv/depthwise weights: one scale per output channel"
    UINT8_PER_TENSOR = ("uint8 weights have no per-axis form (TFLite quantizes per axis in int8 only): "
                        "the legacy uint8 scheme is per-tensor by its own spec")

    @classmethod
    def judge(cls, model: str, check: PerAxisCheck, variant: str = "qat_int8",
              loadability: Loadability = Loadability(), scheme: QuantScheme | None = None) -> ClaimResult:
        """A per-tensor conv FAILs the claim, but WARNs when every per-tensor weight is uint8:
        such a file follows the older spec, which has no per-axis form to ask of it."""
        reason = f"{file_label(variant, scheme)}: {check.reason}"
        if check.ok:
            verdict = Verdict.PASS if check.conv_per_channel else Verdict.SKIP
        elif check.conv_other == 0 and check.conv_per_tensor == check.per_tensor_uint8:
            verdict, reason = Verdict.WARN, f"{reason}; {cls.UINT8_PER_TENSOR}"
        else:
            verdict = Verdict.FAIL
        measured = {"conv_per_channel": check.conv_per_channel, "conv_per_tensor": check.conv_per_tensor,
                    "dense": check.dense}
        return cls.deployable(cls.result(model, ANY_DEVICE, verdict, measured, reason,
                                         details={"variant": variant, "scheme": scheme}), loadability)


class BatchNormFolding(_FileClaim):
    id = "M3-bn-fold"
    text = "BatchNormalization is supported when it follows Conv2D or DepthwiseConv2D (folded)."
    scopes = (Scope.FILE, Scope.LAYER_MATRIX)
    expected = "no separate BatchNorm / MUL / ADD after conv"
    EXPECTED_IN_MATRIX = "BatchNorm after Conv2D / DepthwiseConv2D folded: no separate BN/MUL/ADD op"

    @classmethod
    def judge(cls, model: str, check: BnFoldCheck, has_batchnorm: bool | None,
              loadability: Loadability = Loadability()) -> ClaimResult:
        """``has_batchnorm`` None: the source model is unknown (a .tflite given as it is), so the
        check judges what the file shows and says that it cannot know more."""
        if has_batchnorm is False:
            return cls.skip(model, ANY_DEVICE, "the model has no BatchNormalization")
        if check.conv_ops == 0 and check.ok:  # nothing a BatchNorm could have folded into
            return cls.skip(model, ANY_DEVICE, "the file has no Conv2D / DepthwiseConv2D: nothing to fold into")
        verdict = Verdict.PASS if check.ok else Verdict.FAIL
        reason = check.reason
        if has_batchnorm is None:
            reason += " (whether the source model had BatchNormalization is not known from the .tflite)"
        return cls.deployable(cls.result(model, ANY_DEVICE, verdict, {"unfolded_after": check.unfolded_after},
                                         reason), loadability)

    @classmethod
    def judge_matrix(cls, matrix: LayerMatrix) -> ClaimResult:
        """Every Conv2D/DepthwiseConv2D + BN probe must fold; BN elsewhere is reported as it behaves."""
        probes = matrix.bearing_on(cls.tag())
        folded = [p for p in probes if p.bn_after_conv]
        if not folded:
            return cls.matrix_result(ANY_DEVICE, Verdict.SKIP, None,
                                     "no Conv2D/DepthwiseConv2D + BN probes in this run",
                                     expected=cls.EXPECTED_IN_MATRIX)
        measured, parts, verdicts = {}, [], []
        for p in folded:
            cell = p.stages.get("bn_fold")
            verdict, reason = (cell.verdict, cell.reason) if cell else (Verdict.SKIP, "no bn_fold stage")
            # BN after conv that never reached a .tflite: the claim is not met
            verdicts.append(Verdict.FAIL if verdict is Verdict.SKIP else verdict)
            measured[p.name] = verdict.value
            parts.append(f"{p.name}: {reason}")
        others = []
        for p in (p for p in probes if not p.bn_after_conv):
            fold, qat = p.stages.get("bn_fold"), p.stages.get("qat")
            if fold and fold.verdict is not Verdict.SKIP:
                measured[p.name] = fold.verdict.value
                others.append(f"{p.name} bn_fold {fold.verdict.value}")
            else:
                qat_verdict = qat.verdict.value if qat else None
                measured[p.name] = f"qat {qat_verdict}"
                others.append(f"{p.name} qat {qat_verdict} ({(qat.reason if qat else '')[:90]})")
        if others:
            parts.append("BN elsewhere: " + "; ".join(others))
        return cls.matrix_result(ANY_DEVICE, Verdict.worst(verdicts), measured, "; ".join(parts),
                                 expected=cls.EXPECTED_IN_MATRIX)


STRUCTURE = (Size, FullInteger, PerAxis, BatchNormFolding)


def judge_structure(model: str, facts: StructureFacts, loadability: Loadability) -> list[ClaimResult]:
    """C1, C4, C5 and M3 of one model, from what inspection read and how the devices fared."""
    if facts.scheme is not None and facts.scheme.is_float:
        return _float_file(model, facts.scheme)
    label = facts.label
    if facts.sizes is not None:
        results = [Size.judge(model, facts.sizes, label, loadability)]
    elif not facts.float_given:
        results = [Size.skip(model, ANY_DEVICE, NO_FLOAT_REFERENCE)]
    else:
        results = [Size.error(model, ANY_DEVICE, f"float or {label} model missing")]
    if facts.custom_ops:
        return results + [c.skip(model, ANY_DEVICE, _custom_ops_reason(facts.custom_ops)) for c in STRUCTURE[1:]]
    if facts.full_integer is None or facts.per_axis is None or facts.bn_fold is None:
        return results + [c.error(model, ANY_DEVICE, f"no {label} model to inspect") for c in STRUCTURE[1:]]
    return results + [FullInteger.judge(model, facts.full_integer, facts.variant, loadability, facts.scheme),
                      PerAxis.judge(model, facts.per_axis, facts.variant, loadability, facts.scheme),
                      BatchNormFolding.judge(model, facts.bn_fold, facts.has_batchnorm, loadability)]


def _custom_ops_reason(custom_ops: tuple[str, ...]) -> str:
    """Only edgetpu_compiler's op holds a compiled model; any other custom op is the model's own."""
    names = ", ".join(c.removeprefix("CUSTOM:") for c in custom_ops)
    if "CUSTOM:edgetpu-custom-op" in custom_ops:
        return (f"the model's work is inside custom op(s) {names} (a model compiled by edgetpu_compiler): "
                "its structure cannot be judged from the host; give the uncompiled .tflite to judge it")
    return (f"the model uses custom op(s) {names}, which the structure checks cannot read into: "
            "C4, C5 and M3 are not judged on a graph with ops whose arithmetic they cannot see")


def _float_file(model: str, scheme: QuantScheme) -> list[ClaimResult]:
    """The structure claims of a file that computes in float: each SKIPs, saying so."""
    file = scheme.file_phrase
    return [Size.skip(model, ANY_DEVICE, f"{file}: no 8-bit weights, so no 8-bit size to compare with float"),
            FullInteger.skip(model, ANY_DEVICE, f"{file}: no integer ops to check"),
            PerAxis.skip(model, ANY_DEVICE, f"{file}: no integer weights to check"),
            BatchNormFolding.skip(model, ANY_DEVICE, f"{file}: BatchNorm folding is judged on a quantized file")]
