"""The same file on the same inputs, on two feature levels of one emulated CPU (``arm-cpu-neon``,
``-dotprod``, ``-i8mm``): the kernels differ, the arithmetic they implement does not, so their
outputs may differ by rounding and nothing more. Levels that disagree beyond what the reference
agreement (K2) calls rounding are reported as "emulator or kernel, unconfirmed": the emulator
may compute an instruction wrong (QEMU 7.2 does SME's), or one level's kernel is wrong, and
without the hardware nothing says which; it is never reported as a phone's fault."""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from qat_harness.claims.kernels import ReferenceAgreement
from qat_harness.measure.difference import OutputDifference, TensorLike, output_difference
from qat_harness.results import Verdict

UNCONFIRMED = "emulator or kernel, unconfirmed"


@dataclasses.dataclass(frozen=True)
class LevelPair:
    a: str
    b: str
    differences: tuple[OutputDifference, ...]
    verdict: Verdict                   # K2's judgement of one against the other

    @property
    def agrees(self) -> bool:
        return self.verdict is Verdict.PASS


@dataclasses.dataclass(frozen=True)
class LevelAgreement:
    """Every pair of levels that ran the file, compared output by output."""
    pairs: tuple[LevelPair, ...]

    @property
    def disagreeing(self) -> list[LevelPair]:
        return [p for p in self.pairs if not p.agrees]

    @property
    def finding(self) -> str | None:
        """One line for the report when levels disagree (None: they agree up to rounding)."""
        bad = self.disagreeing
        if not bad:
            return None
        pairs = "; ".join(f"{p.a} vs {p.b}: " + ", ".join(d.headline for d in p.differences) for p in bad)
        return (f"{UNCONFIRMED}: the same file on the same inputs differs between emulated feature levels "
                f"beyond rounding ({pairs}); the emulator or one level's kernel computes it wrong, "
                "which cannot be told without the hardware: not a phone's result")


def level_agreement(outputs: Mapping[str, Sequence[np.ndarray]], tensors: Sequence[TensorLike]) -> LevelAgreement:
    """``outputs``: each level's (device's) outputs of one file, in the file's output order,
    on the same inputs; ``tensors``: the file's output tensors."""
    pairs = []
    for a, b in itertools.combinations(outputs, 2):
        differences = tuple(output_difference(x, y, t) for x, y, t in zip(outputs[a], outputs[b], tensors))
        verdict = Verdict.worst(ReferenceAgreement.judge_output(d)[0] for d in differences)
        pairs.append(LevelPair(a, b, differences, verdict))
    return LevelAgreement(tuple(pairs))
