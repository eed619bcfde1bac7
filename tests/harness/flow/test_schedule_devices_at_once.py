"""Devices at once (issue 23): phones run beside each other and beside the host-CPU devices, the
host-CPU work never overlaps, and the report is the one a run of the devices one after another
writes (same claims, same order)."""
from __future__ import annotations

import threading

import pytest
from simulated_lab import LabHostCpu, LabOracle, LabPhone, Spans, lab, plain_html_pages

from qat_harness import pipeline
from qat_harness.devices.base import BenchSettings
from qat_harness.options import RunOptions
from qat_harness.record import codec

PHONES = ("phone-a", "phone-b", "phone-c")


def _options(out, tiny_models, devices) -> RunOptions:
    return RunOptions(models=[f"{tiny_models['int8']}={tiny_models['float']}"], devices=devices, out=out,
                      check_bit_widths=False, trace=False, eval_limit=16, oracle_limit=8,
                      bench=BenchSettings(warmup_runs=0, min_runs=6, min_seconds=0.0))


def _lab(spans: Spans, apart: bool):
    barrier = threading.Barrier(len(PHONES)) if apart else None  # breaks unless the phones run at once
    phones = [LabPhone(n, spans, seconds=0.05, barrier=barrier, apart=apart) for n in PHONES]
    return [phones[0], LabHostCpu("host", spans, seconds=0.4), *phones[1:], LabOracle("oracle", spans)]


def _notes(run):
    """The notes, but for those on how busy this (shared) machine was while a device timed."""
    return [n.text for n in run.notes if "machine busy" not in n.text]


def _claims(run):
    return [(c.id, c.model, c.device, c.verdict, c.reason) for c in run.claims]


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory, tiny_models):
    """The same lab run with the phones beside each other, and one after another."""
    runs = {}
    with plain_html_pages():
        for apart in (True, False):
            runs[apart] = _run(tmp_path_factory, tiny_models, apart)
    return runs


def _run(tmp_path_factory, tiny_models, apart):
    spans = Spans()
    devices = _lab(spans, apart)
    out = tmp_path_factory.mktemp("apart" if apart else "in-turn")
    report = pipeline.run(_options(out, tiny_models, [d.name for d in devices]), devices=lab(devices))
    return codec.load(report.json_path), spans


def test_phones_at_once_record_what_phones_in_turn_record(both_ways):
    (at_once, _), (in_turn, _) = both_ways[True], both_ways[False]
    assert at_once.status.value == "complete"
    assert _claims(at_once) == _claims(in_turn)
    assert {c.device for c in at_once.claims} >= {*PHONES, "host"}
    model = next(iter(at_once.models))
    assert list(at_once.models[model].devices) == list(in_turn.models[model].devices) == \
        ["phone-a", "host", "phone-b", "phone-c", "oracle"]
    assert at_once.done == in_turn.done
    assert _notes(at_once) == _notes(in_turn)
    for name, section in at_once.models[model].devices.items():
        assert section.reference_differences() == in_turn.models[model].devices[name].reference_differences()


def test_host_cpu_work_never_overlaps(both_ways):
    """The host-CPU device and the reference kernels (asked for by the phones' runs too) hold
    the CPU one at a time, while the phones ran at once (their barrier did not break)."""
    _, spans = both_ways[True]
    host = spans.of({"host", "oracle"})
    assert len(host) >= 3
    for (a, _, end), (b, start, _) in zip(host, host[1:]):
        assert end <= start, f"{a} and {b} used the host CPU at once"


class StoppedOnce(LabHostCpu):
    """A host-CPU device on which Ctrl-C arrives the first time it runs a model."""
    stop = True

    def run(self, model_path, inputs, timeout_s=300.0):
        if StoppedOnce.stop:
            StoppedOnce.stop = False
            raise KeyboardInterrupt
        return super().run(model_path, inputs, timeout_s)


def test_a_run_stopped_while_phones_run_resumes_to_the_same_report(tmp_path, tiny_models, both_ways):
    spans = Spans()
    out = tmp_path / "run"

    def devices():
        barrier = threading.Barrier(len(PHONES))
        phones = [LabPhone(n, spans, seconds=0.05, barrier=barrier) for n in PHONES]
        return [phones[0], StoppedOnce("host", spans), *phones[1:], LabOracle("oracle", spans)]

    opts = _options(out, tiny_models, [d.name for d in devices()])
    with plain_html_pages():
        with pytest.raises(KeyboardInterrupt):
            pipeline.run(opts, devices=lab(devices()))
        for thread in threading.enumerate():  # the phones of the stopped run (a process would be gone)
            if thread.name.startswith("device "):
                thread.join()
        stopped = codec.load(out)
        assert stopped.status.value == "interrupted"
        assert "host" not in stopped.done.get(next(iter(stopped.models)), [])
        pipeline.run(opts, devices=lab(devices()), resume=stopped)
    resumed, (in_turn, _) = codec.load(out), both_ways[False]
    assert resumed.status.value == "complete"
    assert sorted(_claims(resumed)) == sorted(_claims(in_turn))
