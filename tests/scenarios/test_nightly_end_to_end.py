"""Two nights of `qat-harness nightly`: each writes report.html, the JUnit file and the
history page, and the second compares itself with the first through the noise-aware gate."""
import json
import xml.etree.ElementTree as ET

import pytest

from qat_harness import cli
from qat_harness.compare import night_facts

pytestmark = pytest.mark.slow
FAST = ["--models", "digits_cnn", "--devices", "cpu", "--skip-bitwidth", "--min-runs", "5",
        "--min-seconds", "0.05", "--warmup", "1", "--no-trace"]


def test_two_nights_write_their_pages_and_compare(tmp_path, capsys):
    folder = tmp_path / "nightly"
    codes = []
    for night in (1, 2):
        junit = tmp_path / f"night{night}.xml"
        codes.append(cli.main(["nightly", "--out", str(folder), "--junit-xml", str(junit), *FAST]))
        suite = ET.parse(junit).getroot()
        cases = suite.iter("testcase")
        assert sum(1 for _ in cases) >= 6  # one per claim x model x device
    out = capsys.readouterr().out
    assert codes[0] == 0 and codes[1] in (0, 1)
    kept = (night_facts.FILES_FOLDER, night_facts.RUNTIMES_FOLDER)
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in kept)
    assert len(runs) == 2 and all((r / "report.html").is_file() for r in runs)
    assert (folder / "history.html").is_file() and "2 night(s)" in out
    compare_txt = (runs[1] / "compare.txt").read_text()
    assert "baseline" in compare_txt
    # the machine and the int8/float ratio judged, last night's files kept (once: they did not change)
    assert "nightly gate:" in compare_txt and "qat_vs_float" in compare_txt
    assert len(list((folder / night_facts.FILES_FOLDER).glob("*.tflite"))) == 3
    # the LiteRT package the cpu device loaded, kept once by the digest of its files
    runtime = json.loads((runs[1] / "report.json").read_text())["devices"]["cpu"]
    assert [p.name for p in (folder / night_facts.RUNTIMES_FOLDER).iterdir()] == [runtime["runtime_digest"]]
    html = (runs[1] / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    report = json.loads((runs[1] / "report.json").read_text())
    assert report["status"] == "complete"
