"""JUnit XML of a run, so any CI system shows the claims as its own test results: one test case
per claim x model x device (classname ``qat_harness.<model>.<device>``, name the claim id).

FAIL is a failure and ERROR an error, each with the claim's reason; SKIP is skipped; WARN passes
with its reason in ``system-out``. A simulated result says so in its name and its properties."""
from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from qat_harness.report import format_measured


# Characters XML 1.0 cannot hold at all (a tool's stderr in a reason can carry them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


@dataclasses.dataclass(frozen=True)
class JUnitCounts:
    tests: int
    failures: int
    errors: int
    skipped: int


def write_junit(data: dict, path: Path) -> JUnitCounts:
    """Write the report's claims (report.json's data) as JUnit XML to ``path``."""
    suites = build_junit(data)
    ET.indent(suites)
    Path(path).write_bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))
    total = suites.attrib
    return JUnitCounts(int(total["tests"]), int(total["failures"]), int(total["errors"]),
                       int(total["skipped"]))


def build_junit(data: dict) -> ET.Element:
    claims = [c for c in data.get("claims", []) if isinstance(c, dict)]
    counts = Counter(str(c.get("verdict")) for c in claims)
    attrs = {"tests": str(len(claims)), "failures": str(counts["FAIL"]), "errors": str(counts["ERROR"]),
             "skipped": str(counts["SKIP"])}
    suites = ET.Element("testsuites", name="qat-harness", **attrs)
    suite = ET.SubElement(suites, "testsuite", name="qat-harness claims", timestamp=str(data.get("started", "")),
                          **attrs)
    properties = ET.SubElement(suite, "properties")
    env = data.get("environment") or {}
    for name, value in (("status", data.get("status")), ("cpu", (env.get("cpu") or {}).get("model")),
                        ("harness_version", env.get("harness_version")),
                        *(((f"library.{k}", v) for k, v in (env.get("libraries") or {}).items()))):
        if value is not None:
            ET.SubElement(properties, "property", name=_text(name), value=_text(value))
    for claim in claims:
        suite.append(_testcase(claim))
    return suites


def _testcase(claim: dict) -> ET.Element:
    simulated = bool(claim.get("simulated"))
    model, device, cid = (_text(claim.get(k)) for k in ("model", "device", "id"))
    verdict, reason = _text(claim.get("verdict")), _text(claim.get("reason", ""))
    case = ET.Element("testcase", classname=f"qat_harness.{model}.{device}",
                      name=cid + (" [simulated]" if simulated else ""), time="0")
    props = ET.SubElement(case, "properties")
    for name, value in (("verdict", verdict), ("measured", format_measured(claim.get("measured"))),
                        ("expected", format_measured(claim.get("expected"))),
                        ("simulated", "true" if simulated else "false")):
        ET.SubElement(props, "property", name=name, value=_text(value))
    message = f"{verdict}: {reason}" + (" (simulated device, not a hardware result)" if simulated else "")
    if verdict == "FAIL":
        ET.SubElement(case, "failure", message=message, type="FAIL").text = message
    elif verdict == "ERROR":
        ET.SubElement(case, "error", message=message, type="ERROR").text = message
    elif verdict == "SKIP":
        ET.SubElement(case, "skipped", message=message)
    elif verdict == "WARN":
        ET.SubElement(case, "system-out").text = message
    return case
