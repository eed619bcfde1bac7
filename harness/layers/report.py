"""Writers for the layer matrix: ``layers.json`` (the matrix as data, rewritten atomically
after every probe so an interrupted run keeps what it measured), ``layers.md`` (layers x
stages with one symbol per verdict, the reasons below; with the recipe axis a second table,
probes x recipes, one compact cell each) and a compact console table."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qat_harness.claims import CrossKernelAgreement
from qat_harness.layers.cells import (
    FLOAT_KEY,
    RecipeDeviceDetails,
    StageCell,
    WeightsDetails,
    convert_key,
    device_key,
    kernels_key,
    weights_key,
)
from qat_harness.layers.recipes import recipe_verdicts
from qat_harness.layers.tree import MatrixReport, ProbeEntry, as_matrix
from qat_harness.record.folder import write_atomically
from qat_harness.results import Verdict
from qat_harness.writers.text import markdown as md_escape

SYMBOLS = {"PASS": "✓", "WARN": "~", "FAIL": "✗", "SKIP": "·", "ERROR": "E"}
LEGEND = "✓ PASS, ~ WARN, ✗ FAIL, E ERROR (crash, timeout, broken probe), · SKIP (not reached or not applicable)"
_SHORT = {"runs": "run", "delegated": "deleg", "numeric": "num"}
Matrix = MatrixReport | Mapping[str, Any]   # the typed matrix, or a layers.json's content


def write_json(matrix: MatrixReport, path: Path) -> None:
    write_atomically(Path(path), json.dumps(matrix.to_json(), indent=1, default=str))


def _keys(matrix: MatrixReport) -> list[str]:
    """Stage columns, dropping bn_fold when no probe has it."""
    used = {k for p in matrix.probes for k in p.stages}
    return [k for k in matrix.stage_keys if k != "bn_fold" or "bn_fold" in used]


def _header(key: str) -> str:
    if ":" in key:
        dev, what = key.split(":", 1)
        return f"{dev}:{_SHORT.get(what, what)}"
    return key


def _symbol(entry: ProbeEntry, key: str) -> str:
    c = entry.stages.get(key)
    return SYMBOLS.get(c.verdict.value, "?") if c else " "


def _doc_symbol(entry: ProbeEntry) -> str:
    agrees = entry.matches_documentation.agrees if entry.matches_documentation else None
    return {True: "=", False: "≠", None: "?"}[agrees]


def _doc_status(entry: ProbeEntry) -> str:
    return entry.documented.status if entry.documented else "unknown"


def rows(matrix: MatrixReport) -> tuple[list[str], list[list[str]]]:
    keys = _keys(matrix)
    header = ["probe", "layer", "documented", *[_header(k) for k in keys], "doc"]
    body = [[p.name, p.layer, _doc_status(p), *[_symbol(p, k) for k in keys], _doc_symbol(p)]
            for p in matrix.probes]
    return header, body


_DOC_SHORT = {"supported": "yes", "supported with caveat": "yes*", "not in registry": "no",
              "not supported": "no", "unknown": "?"}
_STAGE_SHORT = {"convert": "conv", "bn_fold": "bn"}


def render_table(matrix: Matrix) -> str:
    """A compact console table (tabulate): one symbol per cell, two-line headers, so a
    two-device matrix stays within ~100 columns; then the legend and the claim verdicts."""
    from tabulate import tabulate

    matrix = as_matrix(matrix)
    keys = _keys(matrix)
    headers = ["probe", "doc"] + [k.replace(":", "\n") if ":" in k else _STAGE_SHORT.get(k, k)
                                  for k in keys] + ["="]
    headers = [h.replace("\nruns", "\nrun").replace("\ndelegated", "\ndeleg").replace("\nnumeric", "\nnum")
               for h in headers]
    body = [[p.name, _DOC_SHORT.get(_doc_status(p), "?"), *[_symbol(p, k) for k in keys], _doc_symbol(p)]
            for p in matrix.probes]
    lines = [tabulate(body, headers=headers, tablefmt="simple"), "", LEGEND,
             "doc: in tfmot's registry (yes* = with a caveat); last column: = agrees with it, "
             "≠ differs (see layers.md), ? not comparable"]
    if matrix.recipe_axis is not None:
        header, body = recipe_rows(matrix)
        lines += ["", recipe_title(matrix), tabulate(body, headers=header, tablefmt="simple"),
                  RECIPE_LEGEND]
    if matrix.claims:
        lines.append("")
        lines.append(tabulate([[c.id, c.device, c.verdict.value, _clip(c.reason, 64)] for c in matrix.claims],
                              headers=["claim", "device", "verdict", "reason"], tablefmt="simple"))
    return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    text = str(text or "")
    return text if len(text) <= n else text[: n - 1] + "…"


def _md_escape(text: object) -> str:
    # '_' stays: probe names are snake_case
    return md_escape(text, underscores=False)


def write_markdown(matrix: MatrixReport, path: Path) -> None:
    write_atomically(Path(path), markdown(matrix))


def markdown(matrix: Matrix) -> str:
    matrix = as_matrix(matrix)
    probes = matrix.probes
    libs = matrix.environment.libraries if matrix.environment else {}
    out = ["# Layer support matrix", ""]
    out.append(f"Run {matrix.started or None} → {matrix.finished} ({matrix.status}), "
               f"{len(probes)} probes in {matrix.elapsed_s} s. "
               f"tensorflow {libs.get('tensorflow', '?')}, tfmot {libs.get('tensorflow-model-optimization', '?')}, "
               f"ai-edge-litert {libs.get('ai-edge-litert', '?')}.")
    out.append("")
    if matrix.devices:
        out.append("Devices: " + "; ".join(
            f"{_md_escape(n)} {'available' if d.available else 'NOT available'} ({_md_escape(d.reason)})"
            + (" [simulated]" if d.simulated else "") for n, d in matrix.devices.items()))
        out.append("")
    out += [f"Legend: {LEGEND}. Column *doc*: `=` the measurement agrees with what tfmot documents, "
            "`≠` it differs (listed below), `?` not comparable.", ""]
    th = matrix.thresholds
    if th is not None:
        out.append(f"Numeric verdicts, in steps of the int8 output scale: against the reference kernels "
                   f"PASS ≤ {th.oracle_pass_steps}, WARN ≤ {th.oracle_warn_steps}; against "
                   f"the QAT Keras model PASS ≤ {th.keras_pass_steps}, WARN ≤ {th.keras_warn_steps}.")
        out.append("")

    if matrix.claims:
        out += ["## Claims", "", "| claim | device | verdict | reason |", "|---|---|---|---|"]
        out += [f"| {c.id} | {_md_escape(c.device)} | {c.verdict.value} | {_md_escape(c.reason)} |"
                for c in matrix.claims]
        out.append("")

    header, body = rows(matrix)
    out += ["## Matrix", "", "| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    out.append("")

    if matrix.recipe_axis is not None:
        out += recipe_section(matrix)

    differs = [(p, p.matches_documentation) for p in probes
               if p.matches_documentation is not None and p.matches_documentation.agrees is False]
    out += ["## Where the measurement differs from tfmot's documentation", ""]
    if differs:
        out += [f"- **{_md_escape(p.name)}** ({_md_escape(p.layer)}): {_md_escape(m.note)}" for p, m in differs]
    else:
        out.append("Nowhere: every comparable probe behaves as documented.")
    out.append("")

    out += ["## Reasons", ""]
    keys = _keys(matrix)
    recipe_keys = matrix.recipe_axis.stage_keys if matrix.recipe_axis else []
    for p in probes:
        doc = p.documented
        out.append(f"### {_md_escape(p.name)} — {_md_escape(p.layer)}")
        out.append("")
        out.append(f"{_md_escape(p.description)}. Documented: **{_md_escape(doc.status if doc else 'unknown')}**"
                   f" ({_md_escape(doc.source or '' if doc else '')}): {_md_escape(doc.summary or '' if doc else '')}.")
        if p.matches_documentation is not None:
            out.append(f"Documentation check: {_md_escape(p.matches_documentation.note)}.")
        out.append("")
        for k in keys:
            c = p.stages.get(k)
            if c:
                out.append(_cell_line(k, c)
                           + (f" — [trace]({c.trace}): {_md_escape(c.trace_culprit)}" if c.trace else ""))
        for k in recipe_keys:
            c = (p.recipe_stages or {}).get(k)
            if c:
                out.append(_cell_line(k, c))
        out.append("")
    return "\n".join(out)


def _cell_line(key: str, c: StageCell) -> str:
    return f"- `{key}` {SYMBOLS.get(c.verdict.value, '?')} {c.verdict.value}: {_md_escape(c.reason)}"


# -- the recipe axis ----------------------------------------------------------------------------
RECIPE_LEGEND = ("recipe cells: worst verdict, then the layer's weights as stored in the recipe's file "
                 "(no weights: the layer has none), whether every device runs the file, top-1 agreement "
                 "with the float model (per output position) and the largest error against it (share of "
                 "float's largest output)")


def recipe_title(matrix: MatrixReport) -> str:
    axis = matrix.recipe_axis
    version = axis.quantizer_version if axis else None
    kernels = ", ".join(axis.kernels if axis else []) or "none"
    return (f"Recipes, by ai-edge-quantizer {version}" if version else
            "Recipes (ai-edge-quantizer is not installed: pip install 'qat-harness[quantizer]')") + \
        f"; kernels compared: {kernels}"


def recipe_cell(cells: Mapping[str, StageCell], recipe: str, devices: list[str]) -> str:
    """One probe x recipe (``cells``: its recipe cells) in a few words: 'int4 · runs · agree 94%
    · err 6.4%', 'FAIL kernels disagree', 'SKIP quantizer missing'."""
    convert = cells.get(convert_key(recipe))
    if convert is None:
        return ""
    float_cell = cells.get(FLOAT_KEY)
    symbol = SYMBOLS.get(recipe_verdicts(dict(cells)).get(recipe, Verdict.SKIP).value, "·")
    if convert.verdict is Verdict.SKIP:
        if "not installed" in convert.reason:
            return "· SKIP quantizer missing"
        if float_cell is not None and float_cell.verdict in (Verdict.FAIL, Verdict.ERROR):
            return f"{SYMBOLS[float_cell.verdict.value]} no float model"
        return "· SKIP"
    if convert.verdict is Verdict.ERROR:
        return "E ERROR quantizer crashed"
    if convert.verdict is not Verdict.PASS:
        return f"{symbol} FAIL refused"
    parts = [_weights_word(cells.get(weights_key(recipe)))]
    device_cells = {d: c for d in devices if (c := cells.get(device_key(d, recipe))) is not None}
    broke = [d for d, c in device_cells.items() if c.verdict is Verdict.ERROR]
    refused = [d for d, c in device_cells.items() if c.verdict is Verdict.FAIL and not c.reason.startswith("ran")]
    kernels = cells.get(kernels_key(recipe))
    kernels_verdict = kernels.verdict if kernels is not None else None
    if broke:
        parts.append(f"ERROR {', '.join(broke)} crashed")
    elif refused:
        parts.append(f"FAIL {', '.join(refused)} refused")
    elif kernels_verdict is Verdict.FAIL:
        parts.append("FAIL kernels disagree")
    elif any(c.reason.startswith("ran") for c in device_cells.values()):
        parts.append("runs" + (" · kernels WARN" if kernels_verdict is Verdict.WARN else ""))
    head = next((c.details for c in device_cells.values()
                 if isinstance(c.details, RecipeDeviceDetails) and c.details.float_agreement), None)
    if head is not None and head.float_agreement is not None:
        parts.append(f"agree {_percent(head.float_agreement.rate or 0.0)}")
        rel = head.float_difference.max_rel if head.float_difference else None
        if rel is not None:
            parts.append(f"err {rel:.1%}")
    return f"{symbol} " + " · ".join(parts)


def _percent(rate: float) -> str:
    # 99.7% must not read as 100%
    return "100%" if rate >= 1.0 else f"{rate:.1%}" if rate >= 0.99 else f"{rate:.0%}"


def _weights_word(c: StageCell | None) -> str:
    details = c.details if c is not None and isinstance(c.details, WeightsDetails) else None
    expected = details.expected_dtype if details else "?"
    if c is not None and c.verdict is Verdict.PASS:
        return expected
    if c is not None and c.verdict is Verdict.SKIP:
        return "no weights" if c.reason.startswith("no weights") else "weights ?"
    stored = sorted({t.dtype or "missing" for t in details.tensors}) if details else []
    return f"weights {'/'.join(stored)}" if stored else "weights ?"


def recipe_rows(matrix: MatrixReport) -> tuple[list[str], list[list[str]]]:
    recipes = list(matrix.recipe_axis.recipes) if matrix.recipe_axis else []
    devices = list(matrix.devices)
    body = [[p.name, *[recipe_cell(p.recipe_stages or {}, r, devices) for r in recipes]] for p in matrix.probes]
    return ["probe", *recipes], body


def recipe_section(matrix: MatrixReport) -> list[str]:
    """The '## Recipes' part of layers.md: what was asked, the thresholds, the table."""
    axis = matrix.recipe_axis
    if axis is None:
        return []
    th = axis.thresholds
    out = ["## Recipes", "", _md_escape(recipe_title(matrix)) + ".", ""]
    out += [f"- `{name}` ({_md_escape(spec.label)}, {_md_escape(spec.kind)}): {_md_escape(spec.description)}"
            for name, spec in axis.recipes.items()]
    out += ["", (f"Each recipe is applied by ai-edge-quantizer to the probe's float .tflite (the Keras model "
                f"before QAT, converted without quantization) and the file is run on every kernel. "
                f"`recipe:R:weights`: PASS when every weight tensor of the layer under test is stored in the "
                f"recipe's width, WARN when some stay float (not quantized by this recipe), SKIP for a layer "
                f"without weights. `DEV:recipe:R` and `recipe:R:kernels` are judged as the run judges "
                f"{CrossKernelAgreement.id}, top-1 taken over the channels of every output position (for a vector "
                f"output: per input, as in the run): two kernels disagree (FAIL) when their top-1 agreement "
                f"on the same file has "
                f"a Wilson interval wholly below {th.kernel_agreement_fail:.0%}, WARN below "
                f"{th.kernel_agreement_pass:.0%}; top-1 agreement with the float model is a WARN "
                f"when its interval lies wholly below {th.float_agreement_warn_below:.0%} "
                f"(what C6 calls accurate). The largest error against float is reported, not judged."), ""]
    header, body = recipe_rows(matrix)
    out += ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    out += ["", f"Legend: {LEGEND}; {RECIPE_LEGEND}.", ""]
    return out
