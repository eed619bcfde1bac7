"""Writers for the layer matrix: ``layers.json`` (the matrix as data, rewritten atomically
after every probe so an interrupted run keeps what it measured), ``layers.md`` (layers x
stages with one symbol per verdict, the reasons below; with the recipe axis a second table,
probes x recipes, one compact cell each) and a compact console table."""
from __future__ import annotations

import json
from pathlib import Path

from qat_harness.claims import CrossKernelAgreement
from qat_harness.record.folder import write_atomically
from qat_harness.writers.text import markdown as md_escape

SYMBOLS = {"PASS": "✓", "WARN": "~", "FAIL": "✗", "SKIP": "·", "ERROR": "E"}
LEGEND = "✓ PASS, ~ WARN, ✗ FAIL, E ERROR (crash, timeout, broken probe), · SKIP (not reached or not applicable)"
_SHORT = {"runs": "run", "delegated": "deleg", "numeric": "num"}


def write_json(matrix: dict, path: Path) -> None:
    write_atomically(Path(path), json.dumps(matrix, indent=1, default=str))


def _probes(matrix: dict) -> list[dict]:
    return [p for p in matrix.get("probes", []) if p]


def _keys(matrix: dict) -> list[str]:
    """Stage columns, dropping bn_fold when no probe has it."""
    keys = matrix.get("stage_keys") or []
    used = {k for p in _probes(matrix) for k in p["stages"]}
    return [k for k in keys if k != "bn_fold" or "bn_fold" in used]


def _header(key: str) -> str:
    if ":" in key:
        dev, what = key.split(":", 1)
        return f"{dev}:{_SHORT.get(what, what)}"
    return key


def _symbol(entry: dict, key: str) -> str:
    cell = entry["stages"].get(key)
    return SYMBOLS.get(cell["verdict"], "?") if cell else " "


def _doc_symbol(entry: dict) -> str:
    m = entry.get("matches_documentation") or {}
    return {True: "=", False: "≠", None: "?"}.get(m.get("agrees"), "?")


def _doc_status(entry: dict) -> str:
    return (entry.get("documented") or {}).get("status", "unknown")


def rows(matrix: dict) -> tuple[list[str], list[list[str]]]:
    keys = _keys(matrix)
    header = ["probe", "layer", "documented", *[_header(k) for k in keys], "doc"]
    body = [[p["name"], p["layer"], _doc_status(p), *[_symbol(p, k) for k in keys], _doc_symbol(p)]
            for p in _probes(matrix)]
    return header, body


_DOC_SHORT = {"supported": "yes", "supported with caveat": "yes*", "not in registry": "no",
              "not supported": "no", "unknown": "?"}
_STAGE_SHORT = {"convert": "conv", "bn_fold": "bn"}


def render_table(matrix: dict) -> str:
    """A compact console table (tabulate): one symbol per cell, two-line headers, so a
    two-device matrix stays within ~100 columns; then the legend and the claim verdicts."""
    from tabulate import tabulate

    keys = _keys(matrix)
    headers = ["probe", "doc"] + [k.replace(":", "\n") if ":" in k else _STAGE_SHORT.get(k, k)
                                  for k in keys] + ["="]
    headers = [h.replace("\nruns", "\nrun").replace("\ndelegated", "\ndeleg").replace("\nnumeric", "\nnum")
               for h in headers]
    body = [[p["name"], _DOC_SHORT.get(_doc_status(p), "?"), *[_symbol(p, k) for k in keys], _doc_symbol(p)]
            for p in _probes(matrix)]
    lines = [tabulate(body, headers=headers, tablefmt="simple"), "", LEGEND,
             "doc: in tfmot's registry (yes* = with a caveat); last column: = agrees with it, "
             "≠ differs (see layers.md), ? not comparable"]
    if matrix.get("recipe_axis"):
        header, body = recipe_rows(matrix)
        lines += ["", recipe_title(matrix), tabulate(body, headers=header, tablefmt="simple"),
                  RECIPE_LEGEND]
    claims = matrix.get("claims") or []
    if claims:
        lines.append("")
        lines.append(tabulate([[c["id"], c["device"], c["verdict"], _clip(c["reason"], 64)] for c in claims],
                              headers=["claim", "device", "verdict", "reason"], tablefmt="simple"))
    return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    text = str(text or "")
    return text if len(text) <= n else text[: n - 1] + "…"


def _md_escape(text) -> str:
    # '_' stays: probe names are snake_case
    return md_escape(text, underscores=False)


def write_markdown(matrix: dict, path: Path) -> None:
    write_atomically(Path(path), markdown(matrix))


def markdown(matrix: dict) -> str:
    probes = _probes(matrix)
    env = matrix.get("environment", {})
    libs = env.get("libraries", {})
    out = ["# Layer support matrix", ""]
    out.append(f"Run {matrix.get('started')} → {matrix.get('finished')} ({matrix.get('status')}), "
               f"{len(probes)} probes in {matrix.get('elapsed_s')} s. "
               f"tensorflow {libs.get('tensorflow', '?')}, tfmot {libs.get('tensorflow-model-optimization', '?')}, "
               f"ai-edge-litert {libs.get('ai-edge-litert', '?')}.")
    out.append("")
    devs = matrix.get("devices", {})
    if devs:
        out.append("Devices: " + "; ".join(
            f"{_md_escape(n)} {'available' if d.get('available') else 'NOT available'} ({_md_escape(d.get('reason'))})"
            + (" [simulated]" if d.get("simulated") else "") for n, d in devs.items()))
        out.append("")
    out += [f"Legend: {LEGEND}. Column *doc*: `=` the measurement agrees with what tfmot documents, "
            "`≠` it differs (listed below), `?` not comparable.", ""]
    th = matrix.get("thresholds", {})
    if th:
        out.append(f"Numeric verdicts, in steps of the int8 output scale: against the reference kernels "
                   f"PASS ≤ {th.get('oracle_pass_steps')}, WARN ≤ {th.get('oracle_warn_steps')}; against "
                   f"the QAT Keras model PASS ≤ {th.get('keras_pass_steps')}, WARN ≤ {th.get('keras_warn_steps')}.")
        out.append("")

    claims = matrix.get("claims") or []
    if claims:
        out += ["## Claims", "", "| claim | device | verdict | reason |", "|---|---|---|---|"]
        out += [f"| {c['id']} | {_md_escape(c['device'])} | {c['verdict']} | {_md_escape(c['reason'])} |"
                for c in claims]
        out.append("")

    header, body = rows(matrix)
    out += ["## Matrix", "", "| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    out.append("")

    if matrix.get("recipe_axis"):
        out += recipe_section(matrix)

    differs = [p for p in probes if (p.get("matches_documentation") or {}).get("agrees") is False]
    out += ["## Where the measurement differs from tfmot's documentation", ""]
    if differs:
        out += [f"- **{_md_escape(p['name'])}** ({_md_escape(p['layer'])}): "
                f"{_md_escape(p['matches_documentation']['note'])}"
                for p in differs]
    else:
        out.append("Nowhere: every comparable probe behaves as documented.")
    out.append("")

    out += ["## Reasons", ""]
    keys = _keys(matrix)
    for p in probes:
        doc = p.get("documented") or {}
        out.append(f"### {_md_escape(p['name'])} — {_md_escape(p['layer'])}")
        out.append("")
        out.append(f"{_md_escape(p.get('description'))}. Documented: **{_md_escape(doc.get('status', 'unknown'))}**"
                   f" ({_md_escape(doc.get('source', ''))}): {_md_escape(doc.get('summary', ''))}.")
        match = p.get("matches_documentation") or {}
        if match:
            out.append(f"Documentation check: {_md_escape(match.get('note'))}.")
        out.append("")
        for k in keys:
            cell = p["stages"].get(k)
            if cell:
                out.append(_cell_line(k, cell)
                           + (f" — [trace]({cell['trace']}): {_md_escape(cell.get('trace_culprit'))}"
                              if cell.get("trace") else ""))
        recipe_keys = (matrix.get("recipe_axis") or {}).get("stage_keys", [])
        for k in recipe_keys:
            cell = (p.get("recipe_stages") or {}).get(k)
            if cell:
                out.append(_cell_line(k, cell))
        out.append("")
    return "\n".join(out)


def _cell_line(key: str, cell: dict) -> str:
    return f"- `{key}` {SYMBOLS.get(cell['verdict'], '?')} {cell['verdict']}: {_md_escape(cell['reason'])}"


# -- the recipe axis ----------------------------------------------------------------------------
RECIPE_LEGEND = ("recipe cells: worst verdict, then the layer's weights as stored in the recipe's file "
                 "(no weights: the layer has none), whether every device runs the file, top-1 agreement "
                 "with the float model (per output position) and the largest error against it (share of "
                 "float's largest output)")


def _recipes(matrix: dict) -> list[str]:
    return list((matrix.get("recipe_axis") or {}).get("recipes", {}))


def recipe_title(matrix: dict) -> str:
    axis = matrix.get("recipe_axis") or {}
    version = axis.get("quantizer_version")
    return (f"Recipes, by ai-edge-quantizer {version}" if version else
            "Recipes (ai-edge-quantizer is not installed: pip install 'qat-harness[quantizer]')") + \
        f"; kernels compared: {', '.join(axis.get('kernels', [])) or 'none'}"


def recipe_cell(entry: dict, recipe: str, devices: list[str]) -> str:
    """One probe x recipe in a few words: 'int4 · runs · agree 94% · err 6.4%',
    'FAIL kernels disagree', 'SKIP quantizer missing'."""
    from qat_harness.layers.recipes import FLOAT_KEY, convert_key, device_key, kernels_key, recipe_verdicts, weights_key

    cells = entry.get("recipe_stages") or {}
    convert = cells.get(convert_key(recipe))
    if convert is None:
        return ""
    float_cell = cells.get(FLOAT_KEY) or {}
    symbol = SYMBOLS.get(recipe_verdicts(cells).get(recipe, "SKIP"), "·")
    if convert["verdict"] == "SKIP":
        if "not installed" in convert["reason"]:
            return "· SKIP quantizer missing"
        if float_cell.get("verdict") in ("FAIL", "ERROR"):
            return f"{SYMBOLS[float_cell['verdict']]} no float model"
        return "· SKIP"
    if convert["verdict"] == "ERROR":
        return "E ERROR quantizer crashed"
    if convert["verdict"] != "PASS":
        return f"{symbol} FAIL refused"
    parts = [_weights_word(cells.get(weights_key(recipe)) or {})]
    device_cells = {d: cells.get(device_key(d, recipe)) for d in devices}
    broke = [d for d, c in device_cells.items() if c and c["verdict"] == "ERROR"]
    refused = [d for d, c in device_cells.items() if c and c["verdict"] == "FAIL" and not c["reason"].startswith("ran")]
    kernels = cells.get(kernels_key(recipe)) or {}
    if broke:
        parts.append(f"ERROR {', '.join(broke)} crashed")
    elif refused:
        parts.append(f"FAIL {', '.join(refused)} refused")
    elif kernels.get("verdict") == "FAIL":
        parts.append("FAIL kernels disagree")
    elif any(c and c["reason"].startswith("ran") for c in device_cells.values()):
        parts.append("runs" + (" · kernels WARN" if kernels.get("verdict") == "WARN" else ""))
    head = next((c["details"] for c in device_cells.values()
                 if c and (c.get("details") or {}).get("float_agreement")), None)
    if head:
        parts.append(f"agree {_percent(head['float_agreement']['rate'])}")
        rel = (head.get("float_difference") or {}).get("max_rel")
        if rel is not None:
            parts.append(f"err {rel:.1%}")
    return f"{symbol} " + " · ".join(parts)


def _percent(rate: float) -> str:
    # 99.7% must not read as 100%
    return "100%" if rate >= 1.0 else f"{rate:.1%}" if rate >= 0.99 else f"{rate:.0%}"



def _weights_word(cell: dict) -> str:
    details = cell.get("details") or {}
    expected = details.get("expected_dtype", "?")
    if cell.get("verdict") == "PASS":
        return expected
    if cell.get("verdict") == "SKIP":
        return "no weights" if str(cell.get("reason", "")).startswith("no weights") else "weights ?"
    stored = sorted({t.get("dtype") or "missing" for t in details.get("tensors", [])})
    return f"weights {'/'.join(stored)}" if stored else "weights ?"


def recipe_rows(matrix: dict) -> tuple[list[str], list[list[str]]]:
    recipes = _recipes(matrix)
    devices = list(matrix.get("devices", {}))
    body = [[p["name"], *[recipe_cell(p, r, devices) for r in recipes]] for p in _probes(matrix)]
    return ["probe", *recipes], body


def recipe_section(matrix: dict) -> list[str]:
    """The '## Recipes' part of layers.md: what was asked, the thresholds, the table."""
    axis = matrix.get("recipe_axis") or {}
    th = axis.get("thresholds", {})
    specs = axis.get("recipes", {})
    out = ["## Recipes", "", _md_escape(recipe_title(matrix)) + ".", ""]
    out += [f"- `{name}` ({_md_escape(spec.get('label'))}, {_md_escape(spec.get('kind'))}): "
            f"{_md_escape(spec.get('description'))}" for name, spec in specs.items()]
    out += ["", (f"Each recipe is applied by ai-edge-quantizer to the probe's float .tflite (the Keras model "
                f"before QAT, converted without quantization) and the file is run on every kernel. "
                f"`recipe:R:weights`: PASS when every weight tensor of the layer under test is stored in the "
                f"recipe's width, WARN when some stay float (not quantized by this recipe), SKIP for a layer "
                f"without weights. `DEV:recipe:R` and `recipe:R:kernels` are judged as the run judges "
                f"{CrossKernelAgreement.id}, top-1 taken over the channels of every output position (for a vector "
                f"output: per input, as in the run): two kernels disagree (FAIL) when their top-1 agreement "
                f"on the same file has "
                f"a Wilson interval wholly below {th.get('kernel_agreement_fail', 0):.0%}, WARN below "
                f"{th.get('kernel_agreement_pass', 0):.0%}; top-1 agreement with the float model is a WARN "
                f"when its interval lies wholly below {th.get('float_agreement_warn_below', 0):.0%} "
                f"(what C6 calls accurate). The largest error against float is reported, not judged."), ""]
    header, body = recipe_rows(matrix)
    out += ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    out += ["", f"Legend: {LEGEND}; {RECIPE_LEGEND}.", ""]
    return out
