"""One model on one device: measure its outputs and latency, judge the claims on them, record
both. The model's stage (``flow.model.ModelRun``) gives the files, inputs and the oracle."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qat_harness import claims, judge
from qat_harness.compare import load
from qat_harness.core.errors import DeviceError
from qat_harness.core.tflite import ModelInfo
from qat_harness.devices.base import Device, ModelInputs, Role
from qat_harness.measure import agreement, latency, machine_state, outputs
from qat_harness.measure.output_kinds import OutputKind, OutputRole
from qat_harness.options import RunOptions
from qat_harness.preparation import PreparedModel, take
from qat_harness.record import sections
from qat_harness.record.folder import safe_name
from qat_harness.record.report import Report
from qat_harness.record.tree import DeviceSection, ModelSection
from qat_harness.results import Verdict
from qat_harness.variants import Variant

#: timed side by side: the reference first, then the files under test (never the control arm)
TIMED = (Variant.FLOAT, Variant.QAT_INT8, Variant.INT8, Variant.PTQ_INT8)


class ModelStage(Protocol):
    """What a device's stage takes from its model's (``flow.model.ModelRun``)."""
    name: str
    ut: str
    opts: RunOptions
    report: Report
    section: ModelSection
    model: PreparedModel
    progress: Callable[[str], Any]
    #: the file under test's outputs on each emulated device, for the levels' agreement with each other
    emulated_outputs: dict[str, list[np.ndarray]]

    def files_to_run(self) -> dict[str, Path]: ...
    def info(self, variant: str) -> ModelInfo: ...
    def eval_x(self) -> Any: ...
    def eval_y(self) -> np.ndarray | None: ...
    def inputs(self, variant: str, x: Any) -> ModelInputs: ...
    def oracle_outputs(self) -> list[np.ndarray] | None: ...
    def output_roles(self) -> list[OutputRole]: ...
    def judge_structure(self, final: bool) -> None: ...


class DeviceRun:
    def __init__(self, model: ModelStage, dev_name: str, dev: Device):
        self.model, self.dev_name, self.dev = model, dev_name, dev
        self.name, self.ut, self.report = model.name, model.ut, model.report
        self.section = model.section.devices.setdefault(dev_name, DeviceSection(simulated=dev.simulated))
        scheme = (model.section.schemes or {}).get(self.ut)
        self.subject = judge.Subject(self.name, dev_name, dev.role, dev.simulated, self.ut,
                                     scheme.label if scheme else self.ut, bool(scheme and scheme.is_float))
        self.workdir = model.opts.out / "work" / safe_name(self.name) / dev_name

    def execute(self) -> None:
        m, section = self.model, self.section
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = outputs.prepare_files(self.dev, m.files_to_run(), self.workdir)
        section.delegation.update(files.delegation)
        section.errors.update(files.errors)
        m.progress(f"{self.name}: evaluating on {self.dev_name}")
        measured = outputs.run_files(self.dev, files.paths, lambda v: m.inputs(v, m.eval_x()),
                                     {v: len(m.info(v).outputs) for v in files.paths}, m.opts.run_timeout_s)
        section.errors.update(measured.errors)
        for v, delegation in measured.delegation.items():
            section.delegation.setdefault(v, delegation)
        m.judge_structure(final=False)
        self.judge_outputs(measured.outputs)
        self.report.save()
        m.progress(f"{self.name}: timing on {self.dev_name}")
        self.time({v: p for v, p in files.paths.items() if v in TIMED})
        if m.opts.trace:
            self.trace_if_it_disagrees()

    def judge_outputs(self, out: agreement.Outputs) -> None:
        m, s, section = self.model, self.subject, self.section
        differences: tuple = ()
        if self.ut in out and self.dev.role is Role.EMULATED:
            m.emulated_outputs[self.dev_name] = out[self.ut]
        if self.ut in out and self.dev.role is not Role.ORACLE:
            oracle = m.oracle_outputs()
            if oracle is not None:
                differences = agreement.versus_reference(out[self.ut], oracle, m.info(self.ut))
                section.vs_reference_kernels = differences[0]
                section.vs_reference_kernels_outputs = list(differences) if len(differences) > 1 else None
        not_run = None if self.ut in out else f"the {self._label(self.ut)} file did not run: {self._why_not(self.ut)}"
        self.report.add_claim(judge.reference_agreement(s, differences, not_run, m.section.oracle_error))
        if f"run:{Variant.FLOAT_FT}" in section.errors:
            self.report.note(self.name, f"the control arm did not run on {self.dev_name}")
        missing = next((v for v in (Variant.FLOAT, self.ut) if v in m.model.variants and v not in out), None)
        top, fidelity = None, None
        if missing is None and not m.model.accuracy_skip:
            roles, has_float = m.output_roles(), Variant.FLOAT in out
            if any(r.kind is OutputKind.CLASS_IDS for r in roles) and has_float:
                top = agreement.class_id_agreement(out, self.ut, roles)
            else:
                top = agreement.top_one(out, self.ut, roles, m.eval_y())
            if has_float:
                fidelity = agreement.fidelity(out, self.ut, roles, m.info(self.ut), m.info(Variant.FLOAT))
                section.vs_float = [f.difference for f in fidelity] or None
            if top is not None and top.accuracy is not None:
                section.accuracy = top.accuracy
                section.top1 = {v: p.rate for v, p in top.accuracy.items() if p.rate is not None}
        why = f"the {self._label(missing)} file did not run: {self._why_not(missing)}" if missing else None
        for result in judge.outputs_against_float(s, top, fidelity, why, m.model.accuracy_skip, m.section.keras):
            self.report.add_claim(result)

    def _label(self, variant: str) -> str:
        """A variant as its file reads (a user's float file is never called int8)."""
        schemes = self.model.section.schemes or {}
        return schemes[variant].label if variant in schemes else variant

    def _why_not(self, variant: str) -> str:
        return self.section.errors.get(f"run:{variant}", "not run")

    def time(self, paths: dict[str, Path]) -> None:
        m, section, dev = self.model, self.section, self.dev
        measured, unavailable = None, None
        has_float = Variant.FLOAT in paths or Variant.FLOAT not in m.model.variants
        if self.ut not in paths or not has_float:
            unavailable = f"float or {self.ut} model unavailable on this device"
        elif claims.latency_claim(dev.role) is not None:
            samples = {v: m.inputs(v, take(m.eval_x(), 1)) for v in paths}
            settings = dataclasses.replace(m.opts.bench, num_threads=m.opts.num_threads)
            try:
                with machine_state.watch() as window:
                    measured = latency.time_variants(dev, paths, samples, settings, self.ut)
            except DeviceError as exc:
                unavailable = f"{exc.kind}: {exc.reason}"
        if measured is not None:
            # the host's load moves what the host times; a phone or a TPU times on its own
            busy = load.keep_state(measured.details, window.state if dev.runs_on_host else None)
            if busy:
                self.report.note(self.name, f"timing on {self.dev_name}: {busy}")
            sections.record_latency(section, measured)
            if m.opts.cross_check:
                m.progress(f"{self.name}: cross-checking on {self.dev_name}")
                check = latency.cross_check(self.dev_name, dev, paths, measured, m.opts.num_threads, self.ut)
                measured.details.cross_check = check
                if check.status is not Verdict.PASS:
                    self.report.note(self.name, f"cross-check on {self.dev_name}: {check.status.value}: {check.reason}")
        result, ceiling = judge.latency(self.subject, measured, unavailable, section.delegation,
                                        self.report.run.environment.cpu.flags, dev.runs_on_host)
        if measured is not None:
            measured.details.ceiling = ceiling
        self.report.add_claim(result)

    def trace_if_it_disagrees(self) -> None:
        """Where int8 parts ways with float (A2 WARN/FAIL), say where: a per-layer trace."""
        from qat_harness.trace import service

        if not service.needs_trace(self.report.claims, self.name, self.dev_name):
            return
        self.model.progress(f"{self.name}: tracing on {self.dev_name} (agreement is not a PASS)")
        out = self.model.opts.out / "trace" / safe_name(self.name) / safe_name(self.dev_name)
        try:
            result = service.trace_prepared(self.model.model, {self.dev_name: self.dev}, out)
        except Exception as exc:  # noqa: BLE001 - a trace explains a verdict; it never costs the run
            self.report.note(self.name, f"the trace on {self.dev_name} failed: {type(exc).__name__}: {exc}")
            return
        self.section.trace = result.summary()
