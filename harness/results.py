"""The results model every stage speaks: verdicts and claim results.

A stage returns these values; the report (``report.py``) is assembled from them and
serialised in one place. Nothing downstream reads a result back out of a dict by key."""
from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any


class Verdict(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"
    ERROR = "ERROR"

    @property
    def severity(self) -> int:
        """How bad a verdict is, for "the worst of" and "did it get worse": one order for the
        run report, the layer matrix and the comparison between runs."""
        return _SEVERITY[self]

    @classmethod
    def worst(cls, verdicts) -> "Verdict":
        verdicts = [cls(v) for v in verdicts]
        return max(verdicts, key=lambda v: v.severity) if verdicts else cls.SKIP


_SEVERITY = {Verdict.PASS: 0, Verdict.SKIP: 1, Verdict.WARN: 2, Verdict.FAIL: 3, Verdict.ERROR: 4}
#: The same order keyed by the verdict's text, for reports read back from JSON.
SEVERITY: dict[str, int] = {v.value: s for v, s in _SEVERITY.items()}


@dataclasses.dataclass
class ClaimResult:
    """One claim judged for one model on one device ('any' for claims about the file)."""
    id: str
    model: str
    device: str
    verdict: Verdict
    measured: Any
    expected: Any
    reason: str
    simulated: bool = False
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ClaimResult":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in fields}, "verdict": Verdict(d["verdict"])})


def plain(obj: Any) -> Any:
    """A typed value as JSON-ready data: the one serialiser of the report. Objects with a
    ``to_dict`` decide their own form; other dataclasses become dicts of their fields."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (int, float)):
        return obj
    import numpy as np  # only numpy values are left that json cannot take as they are

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
