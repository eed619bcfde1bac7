"""The benchmark_model parser on real outputs (tests/fixtures/real/benchmark_model/: verbatim
copies collected from issue threads, vendor logs and documentation, each with a first line
``# source: ...`` naming where it came from) against the readings in manifest.json.

A manifest field that is null is not checked: the collector could not tell it from the text
(a truncated copy, a delegate none of the parser's names covers)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qat_harness.devices.android import benchmark_output as bmo

FOLDER = Path(__file__).resolve().parents[2] / "fixtures" / "real" / "benchmark_model"
MANIFEST = FOLDER / "manifest.json"
TRANSCRIPTS = sorted(FOLDER.glob("*.txt")) if FOLDER.is_dir() else []
_LEVEL = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE): ")


def manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


def tool_output(path: Path) -> str:
    """The transcript without the collector's ``# source`` line, which the tool never printed."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(lines[1:] if lines and lines[0].startswith("# source") else lines)


def reading(out: bmo.BenchmarkOutput) -> dict:
    """The parser's answer in the manifest's field names."""
    return {
        "completed": out.completed,
        "delegate": out.delegate,
        "claims_full_delegation": out.claims_full_delegation,
        "claims_partial_delegation": out.claims_partial_delegation,
        "nodes_replaced": out.nodes_replaced,
        "nodes_total": out.nodes_total,
        "init_us": out.init_us,
        "warmup_avg_us": out.warmup_avg_us,
        "inference_avg_us": out.inference_avg_us,
        "inference_count": out.inference.count if out.inference else None,
        "inference_std_us": out.inference.std if out.inference else None,
        "logcat_format": out.logcat_format,
        "tflite_version": out.tflite_version,
    }


def test_the_fixture_folder_has_a_manifest_entry_per_transcript():
    if not TRANSCRIPTS:
        pytest.skip("no real benchmark_model transcripts collected yet")
    assert sorted(p.name for p in TRANSCRIPTS) == sorted(manifest())


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_parser_reads_the_real_transcript_as_the_manifest_says(path):
    expected = manifest().get(path.name)
    assert expected is not None, f"{path.name} has no entry in manifest.json"
    out = bmo.parse(tool_output(path))
    got = reading(out)
    checked = {k: v for k, v in expected.items() if k in got and v is not None}
    assert checked, f"{path.name}: the manifest gives none of the fields the parser reads"
    for key, want in checked.items():
        if isinstance(want, float):
            assert got[key] == pytest.approx(want, rel=1e-6), key
        else:
            assert got[key] == want, key
    if expected.get("errors") is not None:
        # the manifest quotes each error line (sometimes only its start, with its log prefix)
        want_errors = [_LEVEL.sub("", e) for e in expected["errors"]]
        assert len(out.errors) == len(want_errors), out.errors
        for want, found in zip(want_errors, out.errors):
            assert want in found, (want, found)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_initialization_profile_is_never_taken_for_graph_nodes(path):
    node_types = bmo.parse(tool_output(path)).node_types
    assert not {"ModifyGraphWithDelegate", "AllocateTensors"} & set(node_types)
