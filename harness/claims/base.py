"""What every claim is: an id (as CLAIMS.md spells it), the guide's statement, the expected
value, its scope, the device roles it is judged on, and named thresholds; a subclass adds a pure
``judge`` from typed measurements to a ``ClaimResult``."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar

from qat_harness.devices.base import Role
from qat_harness.results import ClaimResult, Verdict

#: The device of a claim about the file itself (or about the toolchain): no device judged it.
ANY_DEVICE = "any"
#: The model of the layer-matrix claims: they are about the probes, not about one model.
LAYER_PROBES = "layer-probes"
#: Why a claim that compares int8 with float cannot be judged on a .tflite given alone.
NO_FLOAT_REFERENCE = ("no float reference to compare with: give it as --float-model FLOAT.tflite or "
                      "--models int8.tflite=float.tflite")


class Scope(str, enum.Enum):
    """What one verdict of a claim is about."""
    FILE = "file"                    # a model's .tflite, read from the flatbuffer (device 'any')
    DEVICE = "device"                # a model on one device
    TOOLCHAIN = "toolchain"          # the converter and runtimes themselves, once per run
    RECIPE = "recipe"                # a model under other quantization recipes (--recipes)
    LAYER_MATRIX = "layer matrix"    # the probes of `qat-harness layers`


class Claim:
    """A documented claim. Subclasses set the class attributes; nothing is instantiated."""
    id: ClassVar[str]
    text: ClassVar[str]                                  # the guide's statement
    expected: ClassVar[str] = ""                         # what a conforming measurement shows
    scopes: ClassVar[tuple[Scope, ...]] = ()
    #: The device roles whose devices it is judged on (device scope)...
    roles: ClassVar[frozenset[Role]] = frozenset()
    #: ...and the roles whose devices get a SKIP saying why it does not apply to them.
    skipped_roles: ClassVar[Mapping[Role, str]] = {}
    #: A FAIL measures this hardware rather than a defect of the model or the harness.
    measures_hardware: ClassVar[bool] = False

    @classmethod
    def tag(cls) -> str:
        """The short id ('M2') by which a layer probe says which claim it bears on."""
        return cls.id.split("-", 1)[0]

    @classmethod
    def recorded_on(cls, role: Role) -> bool:
        """Does a device of this role get a verdict of this claim (maybe a SKIP)?"""
        return role in cls.roles or role in cls.skipped_roles

    @classmethod
    def result(cls, model: str, device: str, verdict: Verdict, measured: Any, reason: str, *,
               simulated: bool = False, details: dict | None = None,
               expected: str | None = None) -> ClaimResult:
        return ClaimResult(cls.id, model, device, verdict, measured,
                           cls.expected if expected is None else expected, reason, simulated,
                           details=dict(details or {}))

    @classmethod
    def error(cls, model: str, device: str, reason: str, **details: Any) -> ClaimResult:
        """It could not be judged because something broke (a crash, a missing file)."""
        return cls.result(model, device, Verdict.ERROR, None, reason, details=details)

    @classmethod
    def skip(cls, model: str, device: str, reason: str) -> ClaimResult:
        """It does not apply here, or cannot be measured from what was given."""
        return cls.result(model, device, Verdict.SKIP, None, reason)

    @classmethod
    def skip_role(cls, model: str, device: str, role: Role) -> ClaimResult:
        """The SKIP of a device whose role this claim is not judged on."""
        return cls.skip(model, device, cls.skipped_roles[role])

    @classmethod
    def matrix_result(cls, device: str, verdict: Verdict, measured: Any, reason: str,
                      simulated: bool = False, expected: str | None = None) -> ClaimResult:
        """A verdict drawn from the layer matrix (``qat-harness layers``)."""
        if simulated:
            reason += " [SIMULATED device]"
        return cls.result(LAYER_PROBES, device, verdict, measured, reason, simulated=simulated,
                          expected=expected)
