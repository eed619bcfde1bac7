"""JUnit XML of a run, so any CI system shows the claims as its own test results: one test case
per claim x model x device (classname ``qat_harness.<model>.<device>``, name the claim id), and
one ERROR test case per model refused as bad input (it has no claims, and must not vanish).

FAIL is a failure and ERROR an error, each with the claim's reason; SKIP is skipped; WARN passes
with its reason in ``system-out``. A simulated result says so in its name and its properties."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from qat_harness.core.errors import UsageError
from qat_harness.record.tree import ModelError, RunReport
from qat_harness.results import ClaimResult, Verdict
from qat_harness.writers.text import format_measured, visible

# Characters XML 1.0 cannot hold at all, once controls are shown as escapes.
_NOT_XML = re.compile("[\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", visible(value))


def check_target(path: Path, run_folder: Path, run_files: tuple[str, ...]) -> Path:
    """Where ``--junit-xml`` will write, checked before the run: its folder exists (or is the
    run's folder), it is not a folder, and it is none of the run's own files. A one-line
    ``UsageError`` otherwise."""
    path = Path(path).expanduser()
    target = path.resolve()
    if not target.parent.is_dir() and target.parent != Path(run_folder).resolve():  # the run makes its own
        raise UsageError(f"--junit-xml {path}: the folder {path.parent} does not exist")
    if target.is_dir():
        raise UsageError(f"--junit-xml {path} is a folder; give a file name")
    own = {(Path(run_folder).resolve() / name) for name in run_files}
    if target in own:
        raise UsageError(f"--junit-xml {path} is one of the run's own files; give another name")
    return target


def render(run: RunReport) -> bytes:
    suites = build(run)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def build(run: RunReport) -> ET.Element:
    counts = run.verdict_counts()
    attrs = {"tests": str(len(run.claims) + len(run.refused)), "failures": str(counts[Verdict.FAIL]),
             "errors": str(counts[Verdict.ERROR]), "skipped": str(counts[Verdict.SKIP])}
    suites = ET.Element("testsuites", {"name": "qat-harness", **attrs})
    suite = ET.SubElement(suites, "testsuite", {"name": "qat-harness claims", "timestamp": run.started, **attrs})
    properties = ET.SubElement(suite, "properties")
    env = run.environment
    for name, value in (("status", run.status.value), ("cpu", env.cpu.model),
                        ("harness_version", env.harness_version),
                        *((f"library.{k}", v) for k, v in env.libraries.items())):
        ET.SubElement(properties, "property", name=_text(name), value=_text(value))
    for claim in run.claims:
        suite.append(_claim_case(claim))
    for refused in run.refused:
        suite.append(_refused_case(refused))
    return suites


def _claim_case(claim: ClaimResult) -> ET.Element:
    case = ET.Element("testcase", classname=_text(f"qat_harness.{claim.model}.{claim.device}"),
                      name=claim.id + (" [simulated]" if claim.simulated else ""), time="0")
    props = ET.SubElement(case, "properties")
    for name, value in (("verdict", claim.verdict.value), ("measured", format_measured(claim.measured)),
                        ("expected", format_measured(claim.expected)),
                        ("simulated", "true" if claim.simulated else "false")):
        ET.SubElement(props, "property", name=name, value=_text(value))
    message = _text(f"{claim.verdict.value}: {claim.reason}"
                    + (" (simulated device, not a hardware result)" if claim.simulated else ""))
    if claim.verdict is Verdict.FAIL:
        ET.SubElement(case, "failure", message=message, type="FAIL").text = message
    elif claim.verdict is Verdict.ERROR:
        ET.SubElement(case, "error", message=message, type="ERROR").text = message
    elif claim.verdict is Verdict.SKIP:
        ET.SubElement(case, "skipped", message=message)
    elif claim.verdict is Verdict.WARN:
        ET.SubElement(case, "system-out").text = message
    return case


def _refused_case(refused: ModelError) -> ET.Element:
    case = ET.Element("testcase", classname=_text(f"qat_harness.{refused.model}.any"), name="refused", time="0")
    message = _text(f"ERROR: refused: {refused.error}")
    ET.SubElement(case, "error", message=message, type="ERROR").text = message
    return case
