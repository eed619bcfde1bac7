"""JUnit XML: one test case per claim x model x device, one ERROR case per refused model, counts
that match the verdicts; and ``--junit-xml`` checked before the run starts."""
import xml.etree.ElementTree as ET

import pytest
import recorded_reports

from qat_harness import cli
from qat_harness.record.tree import ModelError
from qat_harness.results import Verdict
from qat_harness.writers import junit


def _xml(run) -> ET.Element:
    return ET.fromstring(junit.render(run))


def test_junit_xml_has_one_case_per_claim_and_the_right_counts():
    run = recorded_reports.with_model_copies(recorded_reports.tiny(), ["m<&>"])
    run = recorded_reports.with_simulated_accelerator(run, "nnapi")
    run = recorded_reports.set_verdict(run, "C4-full-int", Verdict.ERROR)
    run = recorded_reports.set_verdict(run, "C2-cpu-latency", Verdict.FAIL)
    run = recorded_reports.set_verdict(run, "A1-accuracy", Verdict.SKIP)
    run.claims[0].reason = "stderr said \x1b[31mno\x00"
    root = _xml(recorded_reports.through_json(run))        # well-formed, control characters included
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    counts = run.verdict_counts()
    assert len(cases) == len(run.claims) == int(root.get("tests")) == 26
    assert int(root.get("failures")) == len(root.findall(".//failure")) == counts[Verdict.FAIL] == 8
    assert int(root.get("errors")) == len(root.findall(".//error")) == counts[Verdict.ERROR] == 2
    assert int(root.get("skipped")) == len(root.findall(".//skipped")) == counts[Verdict.SKIP] == 6
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("qat_harness.int8.tflite.cpu", "C2-cpu-latency") in names
    assert ("qat_harness.int8.tflite.nnapi", "C2-cpu-latency [simulated]") in names
    assert ("qat_harness.m<&>.any", "C1-size") in names
    failure = next(c for c in cases if c.get("name") == "C2-cpu-latency").find("failure")
    assert failure.get("message").startswith("FAIL: float median")
    warn = next(c for c in cases if c.get("name") == "A2-agreement")
    assert warn.find("failure") is None and warn.find("system-out").text.startswith("WARN: ")
    simulated = next(c for c in cases if c.get("name").endswith("[simulated]"))
    props = {p.get("name"): p.get("value") for p in simulated.findall("./properties/property")}
    assert props["simulated"] == "true"
    first = cases[0].find("failure")
    assert "\\x1b[31mno\\x00" in first.get("message")


def test_a_refused_model_is_an_error_case_and_counts():
    """Issue 19 item 9: a model refused as bad input has no claims; it must not vanish from the
    JUnit file (a CI dashboard would show green)."""
    run = recorded_reports.tiny()
    run.errors.append(ModelError("broken.keras", "broken.keras: a Lambda layer runs code; refused", usage=True))
    root = _xml(recorded_reports.through_json(run))
    refused = [c for c in root.findall("./testsuite/testcase") if c.get("name") == "refused"]
    assert len(refused) == 1 and refused[0].get("classname") == "qat_harness.broken.keras.any"
    assert "Lambda layer" in refused[0].find("error").get("message")
    assert int(root.get("tests")) == len(run.claims) + 1
    assert int(root.get("errors")) == len(root.findall(".//error")) == 1


def test_an_empty_run_is_valid_junit():
    run = recorded_reports.tiny()
    run.claims = []
    assert _xml(run).get("tests") == "0"


def test_the_junit_path_is_checked_before_the_run(tmp_path, capsys):
    """A missing folder or the run's own report.json is one line and exit 2, before any work."""
    out = tmp_path / "run"
    out.mkdir()
    for target, says in ((tmp_path / "no" / "such" / "junit.xml", "does not exist"),
                         (out / "report.json", "one of the run's own files"),
                         (tmp_path, "is a folder")):
        code = cli.main(["run", "--models", "digits_cnn", "--out", str(out), "--junit-xml", str(target)])
        err = capsys.readouterr().err
        assert code == cli.EXIT_USAGE and says in err and err.count("\n") == 1, err
        assert not (out / "report.json").exists()


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_maps_to_one_junit_outcome(verdict):
    run = recorded_reports.set_verdict(recorded_reports.tiny(), "C1-size", verdict)
    case = next(c for c in _xml(run).findall("./testsuite/testcase") if c.get("name") == "C1-size")
    outcome = {Verdict.FAIL: "failure", Verdict.ERROR: "error", Verdict.SKIP: "skipped",
               Verdict.WARN: "system-out"}.get(verdict)
    assert [child.tag for child in case if child.tag != "properties"] == ([outcome] if outcome else [])
