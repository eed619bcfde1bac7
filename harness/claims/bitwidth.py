"""C6: TFLite supports 8-bit quantization only. Judged twice: on the 4-bit QAT probe
(``build.bitwidth``, every run) and against today's LiteRT on the recipes of ``--recipes``."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from qat_harness.claims.base import ANY_DEVICE, Claim, Scope
from qat_harness.results import ClaimResult, Verdict

if TYPE_CHECKING:
    from qat_harness.build.bitwidth import BitWidthOutcome

#: The model of the probe's verdict.
PROBE_MODEL = "bitwidth-probe"


@dataclasses.dataclass(frozen=True)
class OtherWidthRecipe:
    """A recipe of another bit width applied to a model: did it deploy (convert, load and
    run without NaN on a LiteRT kernel), and how well on the kernel the report headlines.
    ``bits`` is what its file stores (read from its tensors), or what it asked for when it was
    refused; a recipe that ``quantized_nothing`` returned the float model and proves nothing."""
    model: str
    recipe: str
    bits: str                                   # e.g. 'W4Afp32' (from the file), 'W8A16 (asked)'
    converts: bool
    runs_on: list[str]                          # the kernels that ran it without NaN
    size_ratio: float | None
    agreement: float | None                     # top-1 agreement with float
    latency_ratio: float | None                 # median(recipe) / median(float)
    latency_ci: list[float | None] | None
    error: str | None                           # refused, or why no kernel loads its file
    quantized_nothing: bool = False


class EightBitOnly(Claim):
    id = "C6-8bit-only"
    text = "TFLite supports 8-bit quantization only; other bit widths have no deployment path."
    scopes = (Scope.TOOLCHAIN, Scope.RECIPE)
    expected = "no sub-8-bit deployment path, reported as such"
    EXPECTED_AGAINST_RECIPES = "no sub-8-bit (or other-width) deployment path"
    #: A recipe whose top-1 agrees with float on at least this share of inputs is "accurate".
    ACCURATE_AGREEMENT = 0.95

    @staticmethod
    def is_other_width(weight_bits: int, activation_bits: int | None) -> bool:
        return weight_bits != 8 or activation_bits not in (None, 8)

    @classmethod
    def judge_probe(cls, outcomes: Mapping[str, BitWidthOutcome]) -> ClaimResult:
        """PASS when no configuration yields a real sub-8-bit model: each either fails to convert
        or converts to int8 storage. FAIL if a tensor narrower than 8 bits reaches the .tflite."""
        parts, verdict = [], Verdict.PASS
        for label, o in outcomes.items():
            if o.trained is False:
                parts.append(f"{label}: QAT did not train ({o.failure})")
                verdict = Verdict.WARN if verdict is Verdict.PASS else verdict
            elif o.trained is None:
                parts.append(f"{label}: the probe itself failed ({o.failure})")
                verdict = Verdict.ERROR
            elif not o.converted:
                parts.append(f"{label}: trains, conversion refused ({o.failure})")
            elif o.narrow_tensor_types:
                parts.append(f"{label}: converted with sub-8-bit tensors {o.narrow_tensor_types}")
                verdict = Verdict.FAIL
            else:
                parts.append(f"{label}: trains, converts to ordinary int8 storage (weights use at most "
                             f"{o.max_weight_levels} levels): 8-bit size and kernels, no 4-bit path")
        measured = {k: ("refused" if not o.converted else "int8 storage") for k, o in outcomes.items()}
        return cls.result(PROBE_MODEL, ANY_DEVICE, verdict, measured, "; ".join(parts),
                          details={"outcomes": dict(outcomes)})

    @classmethod
    def judge_recipes(cls, model: str, recipes: Mapping[str, OtherWidthRecipe]) -> ClaimResult:
        """C6 against today's stack: FAIL (the claim is dated) when a recipe of another width
        deploys and stays accurate; WARN when one deploys but is not accurate; PASS when none
        deploys; SKIP when none was tried or every one tried quantized nothing (its file is the
        float model: no deployment path of any width). ``recipes``: by the name the reason uses."""
        expected = cls.EXPECTED_AGAINST_RECIPES
        nothing = [f"{k} quantized nothing ({r.size_ratio:.2f}x float size)" if r.size_ratio is not None
                   else f"{k} quantized nothing" for k, r in recipes.items() if r.quantized_nothing]
        all_recipes = {"recipes": dict(recipes)}
        recipes = {k: r for k, r in recipes.items() if not r.quantized_nothing}
        if not recipes:
            reason = ("no recipe of another bit width quantized anything: " + "; ".join(nothing) if nothing
                      else "no recipe of another bit width was run (--recipes)")
            return cls.result(model, ANY_DEVICE, Verdict.SKIP, None, reason, details=all_recipes, expected=expected)
        not_counted = f"; not counted, the file is the float model: {', '.join(nothing)}" if nothing else ""
        deployed_accurate: list[str] = []
        deployed: list[str] = []
        refused: list[str] = []
        for key, r in recipes.items():
            if not r.converts:
                refused.append(f"{key} ({r.bits}) refused: {r.error}")
            elif r.runs_on:
                (deployed_accurate if (r.agreement or 0) >= cls.ACCURATE_AGREEMENT else deployed).append(key)
            elif r.error:
                refused.append(f"{key} ({r.bits}) converts, but {r.error}")
        measured = {k: ("refused" if not r.converts else "deploys" if r.runs_on else "converts, does not run")
                    for k, r in recipes.items()}
        measured.update({k: "quantized nothing" for k, r in all_recipes["recipes"].items() if r.quantized_nothing})

        def describe(key: str) -> str:
            r = recipes[key]
            lat = f", {r.latency_ratio:.2f}x float latency" if r.latency_ratio is not None else ""
            agree = f", {r.agreement:.1%} top-1 agreement with float" if r.agreement is not None else ""
            return (f"{key} ({r.bits}) converts, loads and runs on {', '.join(r.runs_on)}: "
                    f"{r.size_ratio:.2f}x float size{agree}{lat}")

        faster = [k for k, r in recipes.items() if r.latency_ci and r.latency_ci[1] is not None
                  and r.latency_ci[1] < 1.0]
        slower = [k for k, r in recipes.items() if r.latency_ci and r.latency_ci[0] is not None
                  and r.latency_ci[0] > 1.0]
        speed = (f"faster than float: {', '.join(faster)}" if faster else
                 "none of them is faster than float" + (f" ({', '.join(slower)} significantly slower)"
                                                        if slower else ""))
        if deployed_accurate:
            verdict = Verdict.FAIL
            reason = ("dated: other bit widths have a deployment path on today's LiteRT — "
                      + "; ".join(describe(k) for k in deployed_accurate) + f"; {speed}")
            if deployed:
                reason += "; deploys but less accurate: " + ", ".join(deployed)
        elif deployed:
            verdict = Verdict.WARN
            reason = ("partly dated: other bit widths load and run but lose accuracy — "
                      + "; ".join(describe(k) for k in deployed) + f"; {speed}")
        else:
            verdict = Verdict.PASS
            reason = "no other bit width deploys: " + ("; ".join(refused) or "converted files do not run")
        return cls.result(model, ANY_DEVICE, verdict, measured, reason + not_counted, expected=expected,
                          details={**all_recipes, "faster": faster, "slower": slower,
                                   "accurate_agreement": cls.ACCURATE_AGREEMENT})
