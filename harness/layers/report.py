"""Writers for the layer matrix: ``layers.json`` (the matrix as data, rewritten atomically
after every probe so an interrupted run keeps what it measured), ``layers.md`` (layers x
stages with one symbol per verdict, the reasons below) and a compact console table."""
from __future__ import annotations

import json
from pathlib import Path

from qat_harness.report import md_escape, write_atomically

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
                out.append(f"- `{k}` {SYMBOLS.get(cell['verdict'], '?')} {cell['verdict']}: {_md_escape(cell['reason'])}"
                           + (f" — [trace]({cell['trace']}): {_md_escape(cell.get('trace_culprit'))}"
                              if cell.get("trace") else ""))
        out.append("")
    return "\n".join(out)
