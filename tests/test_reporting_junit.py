"""JUnit XML: one test case per claim x model x device, counts that match the verdicts."""
import xml.etree.ElementTree as ET

from qat_harness.reporting import synthetic
from qat_harness.reporting.junit import write_junit


def test_junit_xml_has_one_case_per_claim_and_the_right_counts(tmp_path):
    data = synthetic.report(models=("digits_cnn", "m<&>"), devices=("cpu", "nnapi"), simulated_devices=("nnapi",),
                            verdicts={"C2-cpu-latency": "FAIL", "A2-agreement": "WARN", "A1-accuracy": "SKIP",
                                      "C4-full-int": "ERROR"})
    data["claims"][0]["reason"] = "stderr said \x1b[31mno\x00"
    path = tmp_path / "junit.xml"
    counts = write_junit(data, path)
    root = ET.parse(path).getroot()            # well-formed, control characters included
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(data["claims"]) == counts.tests == int(root.get("tests")) == 16
    assert int(root.get("failures")) == len(root.findall(".//failure")) == 4 == counts.failures
    assert int(root.get("errors")) == len(root.findall(".//error")) == 2
    assert int(root.get("skipped")) == len(root.findall(".//skipped")) == 4
    suite = root.find("testsuite")
    assert suite.get("tests") == "16" and suite.get("failures") == "4"
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("qat_harness.digits_cnn.cpu", "C2-cpu-latency") in names
    assert ("qat_harness.digits_cnn.nnapi", "C2-cpu-latency [simulated]") in names
    assert ("qat_harness.m<&>.any", "C1-size") in names
    failure = next(c for c in cases if c.get("name") == "C2-cpu-latency").find("failure")
    assert failure.get("message").startswith("FAIL: speed-up")
    warn = next(c for c in cases if c.get("name") == "A2-agreement")
    assert warn.find("failure") is None and warn.find("system-out").text.startswith("WARN: ")
    simulated = next(c for c in cases if c.get("name").endswith("[simulated]"))
    props = {p.get("name"): p.get("value") for p in simulated.findall("./properties/property")}
    assert props["simulated"] == "true"
    assert "not a hardware result" in simulated.find("failure").get("message")


def test_an_empty_run_is_valid_junit(tmp_path):
    data = synthetic.report()
    data["claims"] = []
    write_junit(data, tmp_path / "j.xml")
    assert ET.parse(tmp_path / "j.xml").getroot().get("tests") == "0"
