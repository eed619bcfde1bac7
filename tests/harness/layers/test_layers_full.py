"""The whole built-in layer matrix on the CPU (about a minute on 2 cores)."""
from __future__ import annotations

import json

import pytest

from qat_harness.layers import matrix as layers
from qat_harness.layers.tasks import available_probes

# heavy: every probe on every device (about 2 minutes); test_layers covers the engine in CI
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

REFUSED_BY_TFMOT = ("lstm", "gru", "simple_rnn", "conv1d", "layer_normalization", "multi_head_attention",
                    "prelu", "elu", "batchnorm_alone", "subclassed_model", "nested_model")
END_TO_END = ("conv2d", "depthwise_conv2d", "separable_conv2d", "dense", "add", "concat_channels",
              "conv2d_bn", "depthwise_conv2d_bn", "global_average_pooling2d", "max_pooling2d")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    out = tmp_path_factory.mktemp("layers-full")
    return layers.run_layers(None, ["cpu"], out).to_json(), out


def test_every_probe_reaches_a_verdict_in_every_cell(matrix):
    m, _ = matrix
    names = [p["name"] for p in m["probes"]]
    assert names == available_probes() and len(names) >= 30
    for p in m["probes"]:
        for key in ("qat", "convert", "int8", "cpu:runs", "cpu:delegated", "cpu:numeric"):
            assert p["stages"][key]["verdict"] in {"PASS", "WARN", "FAIL", "SKIP", "ERROR"}, (p["name"], key)
        assert p["documented"]["status"] in {"supported", "supported with caveat", "not in registry",
                                             "not supported"}
    assert not [p["name"] for p in m["probes"] if p["stages"]["qat"]["verdict"] == "ERROR"]


def test_layers_outside_the_registry_are_refused_as_documented(matrix):
    by = {p["name"]: p for p in matrix[0]["probes"]}
    for name in REFUSED_BY_TFMOT:
        assert by[name]["stages"]["qat"]["verdict"] == "FAIL", by[name]["stages"]["qat"]
        assert by[name]["matches_documentation"]["agrees"] is True


def test_core_layers_work_end_to_end(matrix):
    by = {p["name"]: p for p in matrix[0]["probes"]}
    for name in END_TO_END:
        stages = by[name]["stages"]
        for key in ("qat", "convert", "int8", "cpu:runs"):
            assert stages[key]["verdict"] == "PASS", (name, key, stages[key])
        assert stages["cpu:numeric"]["verdict"] in ("PASS", "WARN"), (name, stages["cpu:numeric"])


def test_every_difference_from_the_documentation_is_reported(matrix):
    m, out = matrix
    md = (out / "layers.md").read_text()
    differences = md.split("## Where the measurement differs", 1)[1].split("## Reasons", 1)[0]
    for p in m["probes"]:
        if p["matches_documentation"]["agrees"] is False:
            assert f"**{p['name']}**" in differences
            assert p["matches_documentation"]["note"].startswith("DIFFERS")
    claims = {c["id"]: c for c in json.loads((out / "layers.json").read_text())["claims"]}
    assert claims["M3-bn-fold"]["verdict"] == "PASS"
    assert claims["M5-rnn"]["verdict"] == "PASS"
