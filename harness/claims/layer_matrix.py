"""The layer matrix (``qat-harness layers``) as the typed measurements the claims M1-M5 judge,
read from the matrix (the layers.json content) in one place."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from qat_harness.results import Verdict


@dataclasses.dataclass(frozen=True)
class Cell:
    """One stage of one probe: its verdict and why."""
    verdict: Verdict
    reason: str


@dataclasses.dataclass(frozen=True)
class ProbeOutcome:
    name: str
    tags: tuple[str, ...]              # the claims it bears on, by short id ('M2')
    stages: Mapping[str, Cell]         # stage key ('qat', 'cpu:numeric', ...) -> cell
    first_failure: str | None = None   # the first stage that is FAIL or ERROR
    bn_after_conv: bool = False        # a Conv2D / DepthwiseConv2D + BatchNorm probe (folds, M3)

    def bears_on(self, tag: str) -> bool:
        return tag in self.tags


@dataclasses.dataclass(frozen=True)
class MatrixDevice:
    name: str
    available: bool = True
    reason: str = ""
    simulated: bool = False

    @property
    def unavailable(self) -> str:
        """'' for a device that ran, else why it did not."""
        return "" if self.available else f"device not available: {self.reason}"


@dataclasses.dataclass(frozen=True)
class LayerMatrix:
    probes: tuple[ProbeOutcome, ...]
    devices: tuple[MatrixDevice, ...]

    def bearing_on(self, tag: str) -> list[ProbeOutcome]:
        return [p for p in self.probes if p.bears_on(tag)]

    @classmethod
    def from_json(cls, matrix: dict) -> "LayerMatrix":
        from qat_harness.models.probes import PROBES

        folding = {n for n, p in PROBES.items() if p.bn_fold}
        probes = tuple(
            ProbeOutcome(p["name"], tuple(p.get("claims", ())),
                         {k: Cell(Verdict(c["verdict"]), c.get("reason", "")) for k, c in p.get("stages", {}).items()},
                         p.get("first_failure"), p["name"] in folding)
            for p in matrix.get("probes", []) if p)
        devices = tuple(MatrixDevice(name, d.get("available", True), d.get("reason", ""),
                                     bool(d.get("simulated")))
                        for name, d in matrix.get("devices", {}).items())
        return cls(probes, devices)
