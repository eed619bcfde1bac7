"""Issue 22: a device that ran real kernels under an emulator (role EMULATED, the arm-cpu levels)
is named so in report.md, report.html and on the console, beside its rows, and never mixed with
the simulated ones; a run without one says nothing of emulation."""
from __future__ import annotations

import dataclasses

import recorded_reports

from qat_harness.devices.base import Role
from qat_harness.record.tree import DeviceDescription
from qat_harness.writers import console, html, markdown


def _run_with_an_emulated_device():
    run = recorded_reports.tiny()
    device = run.claims[0].device
    run.devices[device] = DeviceDescription(device, Role.EMULATED)
    run.claims[0] = dataclasses.replace(run.claims[0], simulated=False)
    return recorded_reports.through_json(run), device


def test_every_page_marks_the_emulated_device():
    run, device = _run_with_an_emulated_device()
    assert run.emulated_devices() == [device]
    text = markdown.render(run)
    assert "**Emulated devices:**" in text and f"{device} (emulated)" in text
    page = html.render(run)
    assert 'id="emulated-banner"' in page and "EMULATED</span>" in page
    assert "emulated devices (real kernels under an emulator" in console.summary(run, width=200)


def test_a_run_without_one_says_nothing_of_emulation():
    run = recorded_reports.tiny()
    assert run.emulated_devices() == []
    assert "mulated devices:**" not in markdown.render(run).replace("Simulated devices:**", "")
    assert "emulated" not in console.summary(run, width=200)
