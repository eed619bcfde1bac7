"""report.html: parsed as a person's browser would see its structure (claims table, one plot
per model x device, no external URL, hostile names inert), and rendered in headless Chromium
where Debian's `chromium` is installed. The reports are real ones read through the codec
(``recorded_reports``), varied on the typed tree."""
import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import recorded_reports

from qat_harness.record.tree import ModelSection
from qat_harness.results import Verdict
from qat_harness.writers import html as html_writer

HOSTILE_MODEL = "<script>alert(1)</script>"
HEADING_MODEL = "# heading"
HOSTILE_DATASET = "<img src=x onerror=alert(2)>"


class PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def _parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run = recorded_reports.with_model_copies(recorded_reports.tiny(), [HOSTILE_MODEL, HEADING_MODEL])
    run = recorded_reports.with_simulated_accelerator(run, "nnapi")
    run.models[HOSTILE_MODEL].dataset.name = HOSTILE_DATASET
    run = recorded_reports.set_verdict(run, "C2-cpu-latency", Verdict.FAIL)
    run = recorded_reports.set_verdict(run, "A2-agreement", Verdict.WARN)
    run = recorded_reports.through_json(run)
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(html_writer.render(run), encoding="utf-8")
    return run, path


def test_the_claims_table_lists_every_claim_with_its_verdict_colour(page):
    run, path = page
    parser = _parse(path)
    assert parser.find("table", id="claims-table")
    rows = [a for t, a in parser.tags if t == "tr" and "claim-row" in a.get("class", "")]
    assert len(rows) == len(run.claims)
    classes = {a.get("class") for t, a in parser.tags if t == "td"}
    assert {"v-pass", "v-fail", "v-warn"} <= classes


def test_one_plot_per_model_and_device_embedded_as_png(page):
    run, path = page
    plots = [a for t, a in _parse(path).tags if t == "img" and "device-plot" in a.get("class", "")]
    expected = sum(len(m.devices) for m in run.models.values())
    assert len(plots) == expected == 9
    assert all(a["src"].startswith("data:image/png;base64,") for a in plots)


def test_no_external_url_anywhere(page):
    _, path = page
    parser = _parse(path)
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action", "data", "poster"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), (tag, name, value)
    assert not parser.find("script") and not parser.find("link")
    assert "default-src 'none'" in path.read_text()


def test_hostile_names_are_text_not_markup(page):
    _, path = page
    text = path.read_text(encoding="utf-8")
    assert HOSTILE_MODEL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img src=x" not in text
    parser = _parse(path)
    assert not parser.find("script")
    assert HOSTILE_MODEL in "".join(parser.text)          # shown, as text
    assert "# heading" in "".join(parser.text)


def test_simulated_results_are_marked_and_never_shown_as_hardware(page):
    _, path = page
    text = path.read_text(encoding="utf-8")
    assert 'id="simulated-banner"' in text
    parser = _parse(path)
    simulated_rows = [a for t, a in parser.tags if t == "tr" and "simulated" in a.get("class", "")]
    assert len(simulated_rows) == 3 * 3       # C2, A1, A2 on nnapi for three models


def test_delegation_per_op_and_the_speedup_band_are_shown(page):
    _, path = page
    text = "".join(_parse(path).text)
    assert "SOFTMAX" in text and "not taken by XNNPACK" in text
    assert "documented range 1.5–4.0x" in text


def test_a_real_report_layout_renders(tmp_path):
    """Tolerates what a run leaves out: a device with top-1 only (cpu-ref), a model that failed,
    a report from before library versions were recorded."""
    run = recorded_reports.digits()
    run.models["broken"] = ModelSection(error="weights file does not match")
    path = tmp_path / "report.html"
    path.write_text(html_writer.render(run), encoding="utf-8")
    assert len(_parse(path).find("img", **{"class": "plot device-plot"})) == 2
    assert "weights file does not match" in path.read_text()


def test_a_model_right_on_every_example_renders(tmp_path):
    """Issue 19 item 7: top-1 of 100% on n examples gave a Wilson upper end of
    0.9999999999999999 and the accuracy plot refused the negative error bar (report.html was
    never written, exit 3). The recorded run is right on all 120 inputs."""
    run = recorded_reports.tiny()
    assert run.models[recorded_reports.TINY_MODEL].devices["cpu"].top1 == {"float": 1.0, "int8": 1.0}
    page_text = html_writer.render(run)
    assert page_text.count("data:image/png;base64,") == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out): what the
    page itself logs and requests, apart from the browser's own background traffic."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():   # the pipes may themselves be fds 3 and 4: move them out of the way first
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "--window-size=1300,2000", "about:blank"],
            preexec_fn=child_fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout_s: float = 30.0) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout_s} s"
            self.events.append(self._read())

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 20)
            assert chunk, "chromium closed the DevTools pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed "
                                             "(apt-get install chromium)")
def test_report_html_in_headless_chromium(page, tmp_path):
    """The page loads with no console message, no error and no network request; its
    screenshot is saved beside it (report-screenshot.png)."""
    import base64

    _, path = page
    browser = DevTools(tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session)
        browser.events.clear()
        browser.call("Page.navigate", session, url=path.as_uri())
        browser.wait_for("Page.loadEventFired")
        shot = browser.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
        events = [e for e in browser.events if e.get("sessionId") == session]
    finally:
        browser.close()
    screenshot = path.with_name("report-screenshot.png")
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert screenshot.stat().st_size > 10_000
    console = [e["params"] for e in events if e.get("method") in
               ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")]
    assert not console, console
    requested = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert path.as_uri() in requested
    beyond_the_file = [u for u in requested if not u.startswith(("data:", path.as_uri()))]
    assert not beyond_the_file, beyond_the_file   # data: images are inline, not the network
