"""The conformance run. For each model: prepare its files (built and cached, or the user's),
then on each device **measure** (outputs, latency), **judge** the claims on what was measured,
**record** both in the report tree, and **write** the report (saved after every step, so a
failure later never loses what was measured)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness import claims
from qat_harness.build.artifacts import BuildFailed
from qat_harness.build.cache import ArtifactCache
from qat_harness.core.errors import UsageError
from qat_harness.devices.device_set import DeviceSet
from qat_harness.environment import environment
from qat_harness.flow.model import ModelRun
from qat_harness.options import RunOptions
from qat_harness.record.report import Report
from qat_harness.record.tree import RunReport
from qat_harness.shard import run_devices
from qat_harness.sources import ModelSource, judges_the_toolchain, parse_models
from qat_harness.writers.pages import run_pages


def run(opts: RunOptions, progress=lambda msg: None, devices: DeviceSet | None = None,
        resume: RunReport | None = None, model_run: type[ModelRun] | None = None) -> Report:
    """Every model on every device. ``devices``: the set already opened (from ``opts`` if not
    given); the run closes it. ``resume``: the report of an interrupted run of these options in
    ``opts.out``, whose recorded parts are kept. ``model_run``: what measures one model (tests
    give their own). Whatever stops the run finishes the report as ``interrupted`` first."""
    opts = dataclasses.replace(opts, out=Path(opts.out).resolve())
    if opts.shard is not None:  # the piece's pairs and the plan's fingerprint, recorded in its report
        opts = dataclasses.replace(opts, shard=opts.shard.of_plan(opts, _labels(opts)))
    try:
        pages = run_pages(opts.out, opts.junit_xml)
        report = (Report(opts.out, environment(opts.num_threads), opts, pages=pages) if resume is None else
                  Report.resume(opts.out, resume, _pending(opts, resume), environment(opts.num_threads), pages))
        with report.finishing():
            devices = devices or DeviceSet.open(opts.devices, num_threads=opts.num_threads,
                                                per_device_options=opts.device_options)
            for name, dev in devices.items():
                report.device(name, dev.describe())
            cache = ArtifactCache(opts.cache_dir, enabled=opts.use_cache)
            sources = parse_models(opts.models, opts.float_model)
            first_piece = opts.shard is None or opts.shard.index == 1  # the probe is the plan's, not a pair's
            if (opts.check_bit_widths and first_piece and judges_the_toolchain(sources)
                    and not report.has_claim(claims.EightBitOnly.id)):
                from qat_harness.build import bitwidth

                progress("C6: probing other bit widths (4-bit QAT)")
                report.add_claim(claims.EightBitOnly.judge_probe(bitwidth.cached_outcomes(cache)))
                report.save()
            for source in sources:
                if not run_devices(opts.shard, source.label, devices):
                    continue  # another piece of the plan runs this model
                _run_model(model_run or ModelRun, source, opts, devices, cache, report, progress)
                report.save()
    finally:
        if devices is not None:
            devices.close()
    return report


def _labels(opts: RunOptions) -> list[str]:
    return [s.label for s in parse_models(opts.models, opts.float_model)]


def _pending(opts: RunOptions, resume: RunReport) -> dict[str, list[str]]:
    pending = {m: [d for d in run_devices(opts.shard, m, opts.devices) if d not in resume.done.get(m, [])]
               for m in _labels(opts)}
    return {m: d for m, d in pending.items() if d}


def _run_model(model_run: type[ModelRun], source: ModelSource, opts: RunOptions, devices: DeviceSet,
               cache: ArtifactCache, report: Report, progress) -> None:
    name = source.label
    if all(report.is_done(name, d) for d in run_devices(opts.shard, name, devices)):
        progress(f"{name}: already recorded (resumed run), kept as it is")
        return
    try:
        model_run(source, opts, devices, cache, report, progress).execute()
    except UsageError as exc:
        report.model_error(name, str(exc), usage=True)
        for dev_name in run_devices(opts.shard, name, devices):  # the same input would fail the same way
            report.mark_done(name, dev_name)
        progress(f"{name}: {exc}")
    except BuildFailed as exc:
        report.model_error(name, str(exc))
        report.add_claim(claims.Size.error(name, claims.ANY_DEVICE, str(exc)))
        progress(f"{name}: {exc}")
    finally:
        for problem in cache.take_problems():
            report.note(name, problem)
