"""The conformance run: for each model, get its artifacts (cached), inspect them, run them on
each device, and judge the claims. Each stage returns typed values that go into the report
tree as soon as they exist, and the report is saved after every step, so a failure later
never loses them."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from qat_harness import claims, inspection, stats
from qat_harness.build.artifacts import BuildFailed
from qat_harness.build.cache import ArtifactCache
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.core.tflite import InputMismatch, model_inputs
from qat_harness.devices.base import Device, Role
from qat_harness.devices.device_set import DeviceSet
from qat_harness.environment import environment
from qat_harness.options import RunOptions
from qat_harness.preparation import DataOptions, PreparedModel, n_examples, prepare, take
from qat_harness.record import codec
from qat_harness.record.folder import safe_name
from qat_harness.record.report import Report
from qat_harness.record.tree import (
    ArtifactsInfo,
    BenchDetails,
    BlockTiming,
    BuildRecord,
    DatasetInfo,
    DeviceSection,
    JsonObject,
    ModelSection,
    PtqChecks,
    RunReport,
    TfliteSummary,
    TraceCulprit,
    TraceSummary,
    WeightQuantization,
)
from qat_harness.results import ClaimResult, Verdict
from qat_harness.sources import ModelSource, parse_models
from qat_harness.writers.pages import run_pages

BENCH_LABELS = ("float", "qat_int8", "int8", "ptq_int8")
VARIANT_ORDER = ("float", "qat_int8", "int8", "ptq_int8")


def run(opts: RunOptions, progress=lambda msg: None, devices: DeviceSet | None = None,
        resume: RunReport | None = None) -> Report:
    """Run every model on every device. ``devices``: the already opened (and probed) set;
    opened here from ``opts`` when not given. The run closes it (the oracle it made included). ``resume``: the
    report of an interrupted run of these options in ``opts.out``: what it recorded is kept
    and only what is missing is done.

    Whatever stops the run (an internal error, Ctrl-C, SIGTERM, a full disk) finishes the
    report as ``interrupted``, with the reason, before it goes on up."""
    opts = dataclasses.replace(opts, out=Path(opts.out).resolve())
    try:
        report = _open_report(opts, resume)
    except BaseException:
        if devices is not None:
            devices.close()
        raise
    try:
        with report.finishing():
            if devices is None:
                devices = DeviceSet.open(opts.devices, num_threads=opts.num_threads,
                                         per_device_options=opts.device_options)
            for name, dev in devices.items():
                report.device(name, dev.describe())
            cache = ArtifactCache(opts.cache_dir, enabled=opts.use_cache)
            if opts.check_bit_widths and not report.has_claim(claims.EightBitOnly.id):
                progress("C6: probing other bit widths (4-bit QAT)")
                report.add_claim(_bit_width_claim(cache))
                report.save()
            for source in parse_models(opts.models, opts.float_model):
                _run_model(source, opts, devices, cache, report, progress)
                report.save()
    finally:
        if devices is not None:
            devices.close()
    return report


def _open_report(opts: RunOptions, resume: RunReport | None) -> Report:
    pages = run_pages(opts.out, opts.junit_xml)
    if resume is None:
        return Report(opts.out, environment(opts.num_threads), opts, pages=pages)
    labels = [s.label for s in parse_models(opts.models, opts.float_model)]
    pending = {m: [d for d in opts.devices if d not in resume.done.get(m, [])] for m in labels}
    return Report.resume(opts.out, resume, {m: d for m, d in pending.items() if d},
                         environment(opts.num_threads), pages)


def _run_model(source: ModelSource, opts: RunOptions, devices: DeviceSet,
               cache: ArtifactCache, report: Report, progress) -> None:
    name = source.label
    if all(report.is_done(name, d) for d in devices):
        progress(f"{name}: already recorded (resumed run), kept as it is")
        return
    try:
        ModelRun(source, opts, devices, cache, report, progress).execute()
    except UsageError as exc:
        report.model_error(name, str(exc), usage=True)
        for dev_name in devices:  # the same input would fail the same way: nothing to redo
            report.mark_done(name, dev_name)
        progress(f"{name}: {exc}")
    except BuildFailed as exc:
        report.model_error(name, str(exc))
        report.add_claim(claims.Size.error(name, claims.ANY_DEVICE, str(exc)))
        progress(f"{name}: {exc}")
    finally:
        for problem in cache.take_problems():
            report.note(name, problem)


def _bit_width_claim(cache: ArtifactCache) -> ClaimResult:
    """Claim C6 on the 4-bit QAT probe, measured once per library set (the artifact cache)."""
    from qat_harness.build import bitwidth

    return claims.EightBitOnly.judge_probe(bitwidth.cached_outcomes(cache))


class ModelRun:
    """One model through every stage; each stage records what it measured before the next."""

    def __init__(self, source: ModelSource, opts: RunOptions, devices: DeviceSet,
                 cache: ArtifactCache, report: Report, progress):
        self.source = source
        self.name = source.label
        self.opts, self.devices, self.cache, self.report = opts, devices, cache, report
        self.progress = progress
        self.section = report.model(self.name, ModelSection())
        self.infos: dict[str, tflite.ModelInfo] = {}
        self._oracle: list[np.ndarray] | None = None
        self.structure: claims.StructureFacts | None = None   # what inspect read, judged once
        self._structure_judged = False

    def add(self, result: ClaimResult) -> None:
        self.report.add_claim(result)

    # -- stages -----------------------------------------------------------------------------
    def execute(self) -> None:
        self.progress(f"{self.name}: preparing data and artifacts")
        size = self.opts.input_size or self.opts.default_input_sizes.get(self.name)
        data_opts = DataOptions(self.opts.dataset, self.opts.labels, self.opts.preprocess,
                                self.opts.limit_per_class)
        self.model: PreparedModel = prepare(self.source, data_opts, self.cache,
                                            self.opts.out / "work" / safe_name(self.name), self.progress,
                                            size, self.opts.weights, self.opts.build_timeout_s)
        m = self.model
        self.ut = m.under_test
        self.section.description, self.section.config = m.description, codec.structure(JsonObject, m.config)
        self.section.dataset = DatasetInfo(m.data.name, n_examples(m.data.x_eval),
                                           m.data.labels_meaningful, m.data_note)
        if m.folder is not None:
            self.section.artifacts = ArtifactsInfo(m.folder, bool(m.from_cache), dict(m.variants))
            self.section.keras = codec.structure(BuildRecord, m.metrics)
        else:
            self.section.artifacts = ArtifactsInfo(None, None, dict(m.variants))
        for note in m.notes:
            self.report.note(self.name, note)
        self.report.save()
        self.inspect()
        self.report.save()
        for dev_name, dev in self.devices.items():
            if self.report.is_done(self.name, dev_name):
                continue  # recorded by the run this one resumes
            self.on_device(dev_name, dev)
            self.report.mark_done(self.name, dev_name)
            self.report.save()
        self._judge_structure(final=True)
        if self.opts.recipes:
            self.recipes()
            self.report.save()

    def _judge_structure(self, final: bool) -> None:
        """The structure claims (C1, C4, C5, M3), judged once: as soon as a device did not
        refuse the file, or when every device has (``final``), since a file that parses but
        that no device loads never keeps a structure PASS."""
        if self._structure_judged or self.structure is None:
            return
        loadability = claims.Loadability({d: self.section.devices[d].errors.get(f"run:{self.ut}") or ""
                                          for d in self.devices if d in self.section.devices})
        if final or loadability.settled:
            self._structure_judged = True
            for result in claims.judge_structure(self.name, self.structure, loadability):
                self.add(result)

    def recipes(self) -> None:
        """The recipe axis (``--recipes``): other quantization recipes applied to the float
        model, on every kernel, with the cross-kernel claim (K1) and C6 judged against them."""
        from qat_harness.recipes.stage import judge_recipes

        if "float" not in self.model.variants:
            self.report.note(self.name, "--recipes needs the float model: none was given")
            return
        data = self.model.data
        calibration = take(data.x_train, 32) if data.x_train is not None else None
        result = judge_recipes(self.name, Path(self.model.variants["float"]), self.opts.recipes,
                               self.devices, self._eval_x(), self.cache.root, self.opts.num_threads,
                               labels=self._eval_y() if data.labels_meaningful else None,
                               calibration=calibration, use_cache=self.cache.enabled,
                               progress=self.progress)
        for claim in result.claims:
            self.add(claim)
        self.section.recipes = result

    def inspect(self) -> None:
        infos = {}
        for variant, path in self.model.variants.items():
            try:
                infos[variant] = tflite.inspect_model(path)
            except tflite.InvalidModel as exc:
                self.report.note(self.name, f"{variant}: {exc}")
        for variant, err in self.model.metrics.get("conversion_errors", {}).items():
            self.report.note(self.name, f"conversion of {variant} failed: {err}")
        self.infos = infos
        self.section.tflite = {v: codec.structure(TfliteSummary, i.to_dict()) for v, i in infos.items()}
        ut, info = self.ut, infos.get(self.ut)
        sizes = (claims.FileSizes(infos["float"].size_bytes, info.size_bytes,
                                  infos["ptq_int8"].size_bytes if "ptq_int8" in infos else None)
                 if "float" in infos and info else None)
        custom = tuple(sorted({op.opcode for op in info.ops if op.opcode.startswith("CUSTOM:")})) if info else ()
        full_integer, per_axis, bn_fold = ((inspection.full_integer_check(info), inspection.per_axis_check(info),
                                            inspection.batchnorm_fold_check(info))
                                           if info and not custom else (None, None, None))
        self.structure = claims.StructureFacts(ut, sizes, "float" in self.model.variants, full_integer, per_axis,
                                               bn_fold, custom, self.model.has_batchnorm)
        if info is None:
            return
        self.section.quantization = {v: codec.structure(list[WeightQuantization], inspection.weight_granularity(i))
                                     for v, i in infos.items() if v != "float"}
        if "ptq_int8" in infos:
            self.section.ptq_checks = PtqChecks(inspection.full_integer_check(infos["ptq_int8"]),
                                                inspection.per_axis_check(infos["ptq_int8"]))

    # -- per device -------------------------------------------------------------------------
    def _eval_x(self):
        return take(self.model.data.x_eval, self.opts.eval_limit)

    def _eval_y(self):
        y = self.model.data.y_eval
        return None if y is None else take(y, self.opts.eval_limit)

    def _inputs(self, variant: str, x):
        try:
            return model_inputs(self.infos[variant], x, self.model.input_names)
        except InputMismatch as exc:
            raise UsageError(f"{self.name} ({variant}): {exc}") from None

    def on_device(self, dev_name: str, dev: Device) -> None:
        section = self.section.devices.setdefault(dev_name, DeviceSection(simulated=dev.simulated))
        variants = [v for v in VARIANT_ORDER if v in self.infos]
        workdir = self.opts.out / "work" / safe_name(self.name) / dev_name
        workdir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for v in variants:
            try:
                paths[v], deleg = dev.prepare(self.model.variants[v], workdir)
                if deleg is not None:
                    section.delegation[v] = deleg
            except DeviceError as exc:
                section.errors[f"prepare:{v}"] = exc.reason
                if v == "float":  # a float model rarely compiles for an accelerator: run as is
                    paths[v] = self.model.variants[v]
        self.progress(f"{self.name}: evaluating on {dev_name}")
        outputs = self._evaluate(dev, paths, section)
        self._judge_structure(final=False)
        self._accuracy_claims(dev_name, dev, outputs, section)
        self.report.save()
        self.progress(f"{self.name}: timing on {dev_name}")
        self._latency_claims(dev_name, dev, paths, section)
        if self.opts.trace:
            self._trace_if_it_disagrees(dev_name, dev, section)

    def _trace_if_it_disagrees(self, dev_name: str, dev: Device, section: DeviceSection) -> None:
        """Where int8 parts ways with float (A2 WARN/FAIL), say where: a per-layer trace."""
        from qat_harness.trace import command as trace_command

        if not trace_command.needs_trace(self.report.claims, self.name, dev_name):
            return
        self.progress(f"{self.name}: tracing on {dev_name} (agreement is not a PASS)")
        try:
            result = trace_command.trace_prepared(self.model, {dev_name: dev},
                                                  self.opts.out / "trace" / safe_name(self.name) / safe_name(dev_name))
        except Exception as exc:  # noqa: BLE001 - a trace explains a verdict; it never costs the run
            self.report.note(self.name, f"the trace on {dev_name} failed: {type(exc).__name__}: {exc}")
            return
        section.trace = TraceSummary(result.files.get("markdown"),
                                     codec.structure(TraceCulprit, result.culprit) if result.culprit else None)

    def _evaluate(self, dev: Device, paths: dict[str, Path], section: DeviceSection) -> dict:
        """Every variant on every evaluation example; every output kept (a device that drops
        outputs is an error for that variant, never a partial success)."""
        x = self._eval_x()
        outputs = {}
        for v, path in paths.items():
            try:
                res = dev.run(path, self._inputs(v, x), self.opts.run_timeout_s)
            except DeviceError as exc:
                section.errors[f"run:{v}"] = f"{exc.kind}: {exc.reason}"
                continue
            expected = len(self.infos[v].outputs)
            if len(res.all_outputs) != expected:
                section.errors[f"run:{v}"] = (f"failed: the device returned {len(res.all_outputs)} of "
                                              f"the model's {expected} outputs")
                continue
            outputs[v] = res.all_outputs
            if res.delegation is not None:
                section.delegation.setdefault(v, res.delegation)
        return outputs

    def _oracle_outputs(self) -> list[np.ndarray] | None:
        """Outputs of the int8 model under test on LiteRT's reference kernels: the numeric
        oracle (cached per model)."""
        if self._oracle is None and self.ut in self.infos:
            x = take(self._eval_x(), self.opts.oracle_limit)
            oracle = self.devices.oracle()
            if oracle is None:
                self.section.oracle_error = f"unavailable: {self.devices.oracle_problem}"
                self._oracle = []
                return None
            try:
                self._oracle = oracle.run(
                    self.model.variants[self.ut], self._inputs(self.ut, x), self.opts.run_timeout_s).all_outputs
            except DeviceError as exc:
                self.section.oracle_error = f"{exc.kind}: {exc.reason}"
                self._oracle = []
        return self._oracle or None

    def _accuracy_claims(self, dev_name: str, dev: Device, outputs: dict, section: DeviceSection) -> None:
        ut, sim = self.ut, dev.simulated
        diffs = []
        if ut in outputs and dev.role is not Role.ORACLE:
            oracle = self._oracle_outputs()
            if oracle is not None:
                diffs = [stats.output_difference(o[: len(r)], r, self.infos[ut].tensor(t))
                         for o, r, t in zip(outputs[ut], oracle, self.infos[ut].outputs)]
                section.vs_reference_kernels = diffs[0]
                if len(diffs) > 1:
                    section.vs_reference_kernels_outputs = diffs
        not_run = None if ut in outputs else f"{ut} did not run: {section.errors.get(f'run:{ut}', 'not run')}"
        self.add(claims.ReferenceAgreement.judge(self.name, dev_name, claims.VersusReference(
            dev.role, tuple(diffs), not_run, self.section.oracle_error, sim)))
        needed = [v for v in ("float", ut) if v in self.model.variants]
        missing = [v for v in needed if v not in outputs]
        if missing:
            why = section.errors.get(f"run:{missing[0]}", "not run")
            for claim in (claims.Accuracy, claims.Agreement):
                self.add(claim.error(self.name, dev_name, f"{missing[0]} did not run: {why}"))
            return
        if self.model.accuracy_skip:
            for claim in (claims.Accuracy, claims.Agreement):
                self.add(claim.skip(self.name, dev_name, self.model.accuracy_skip))
            return
        first = {v: o[0] for v, o in outputs.items()}
        ids = self.infos[ut].tensor(self.infos[ut].outputs[0])
        if not ids.scales and ids.dtype.startswith(("int", "uint")):  # class ids (an ArgMax output)
            equal = int(np.sum(first[ut] == first["float"]))
            self.add(claims.Agreement.judge(self.name, dev_name, claims.TopOneAgreement(
                stats.wilson_interval(equal, first[ut].size), unit="output elements (class ids)", simulated=sim)))
            self.add(claims.Accuracy.skip(self.name, dev_name,
                                          "the model outputs class ids per element, not one class per input"))
            return
        top1 = {v: np.argmax(o.reshape(len(o), -1), axis=-1) for v, o in first.items()}
        agree = int(np.sum(top1[ut] == top1["float"]))
        ptq = (stats.wilson_interval(int(np.sum(top1["ptq_int8"] == top1["float"])), len(top1["float"]))
               if "ptq_int8" in top1 else None)
        self.add(claims.Agreement.judge(self.name, dev_name, claims.TopOneAgreement(
            stats.wilson_interval(agree, len(top1["float"])), ptq, simulated=sim)))
        y = self._eval_y()
        if y is None:
            self.add(claims.Accuracy.skip(self.name, dev_name, "the dataset has no labels"))
            return
        metrics = self.model.metrics
        extra: dict[str, Any] = {"float_keras_top1": metrics.get("float_keras_accuracy"),
                 "qat_keras_top1": metrics.get("qat_keras_accuracy"),
                 "float_ft_keras_top1": metrics.get("float_ft_keras_accuracy")}
        # A1's control arm: the float model fine-tuned like QAT, built with the artifacts. It
        # runs here, on this device, on the same examples as every other arm.
        control = metrics.get("control_arm")
        if control and self.model.folder is not None:
            extra["control_arm"] = control["what"]
            try:
                ft_path, _ = dev.prepare(self.model.folder / control["file"],
                                         self.opts.out / "work" / safe_name(self.name) / dev_name)
                ft = dev.run(ft_path, self._inputs("float", self._eval_x()), self.opts.run_timeout_s).outputs
                top1[control["variant"]] = np.argmax(ft.reshape(len(ft), -1), axis=-1)
            except DeviceError as exc:
                extra["control_arm_error"] = f"{exc.kind}: {exc.reason}"
        arms = [v for v in ("float", "float_ft", ut, "ptq_int8") if v in top1]
        correct = {v: top1[v] == y for v in arms}
        section.top1 = acc = {v: float(np.mean(correct[v])) for v in arms}
        baseline = "float_ft" if "float_ft" in correct else "float"
        extra["ptq_int8_top1"] = acc.get("ptq_int8")
        extra["paired_vs_baseline"] = {v: stats.paired_accuracy_difference(correct[baseline], correct[v])
                                       for v in arms if v != baseline}
        self.add(claims.Accuracy.judge(self.name, dev_name, claims.PairedAccuracy(
            acc, baseline, ut, extra["paired_vs_baseline"][ut], extra, sim)))

    def _latency_claims(self, dev_name: str, dev: Device, paths: dict[str, Path],
                        section: DeviceSection) -> None:
        claim, ut = claims.latency_claim(dev.role), self.ut
        labels = [v for v in BENCH_LABELS if v in paths]
        if claim is None:
            self.add(claims.CpuLatency.skip_role(self.name, dev_name, dev.role))
            return
        if ut not in labels or ("float" not in labels and "float" in self.model.variants):
            self.add(claim.error(self.name, dev_name, f"float or {ut} model unavailable on this device"))
            return
        sample = {v: self._inputs(v, take(self._eval_x(), 1)) for v in labels}
        settings = dataclasses.replace(self.opts.bench, num_threads=self.opts.num_threads)
        try:
            bench = dev.benchmark({v: paths[v] for v in labels}, sample, settings)
        except DeviceError as exc:
            self.add(claim.error(self.name, dev_name, f"{exc.kind}: {exc.reason}"))
            return
        section.latency = {v: stats.latency_summary(t) for v, t in bench.times_ms.items()}
        section.latency_raw_ms = bench.times_ms
        section.first_invoke_ms = bench.first_invoke_ms
        blocks = bench.details.get("blocks")
        section.bench_details = BenchDetails(
            protocol=bench.protocol,
            blocks=codec.structure(BlockTiming, blocks) if blocks else None,
            device=codec.structure(JsonObject, {k: v for k, v in bench.details.items() if k != "blocks"}))
        for v, deleg in bench.delegation.items():
            if deleg is not None:
                section.delegation.setdefault(v, deleg)
        blocks = section.bench_details.blocks

        def ratio_ci(numerator: str, denominator: str) -> stats.RatioCI:
            if blocks:  # timed in ABBA blocks: the interval resamples whole rounds
                per_block = blocks.block_runs - 1
                return stats.block_ratio_ci(stats.split_blocks(bench.times_ms[numerator], per_block),
                                            stats.split_blocks(bench.times_ms[denominator], per_block))
            return stats.ratio_of_medians_ci(bench.times_ms[numerator], bench.times_ms[denominator])

        ratio = ratio_ci("float", ut) if "float" in bench.times_ms else None
        if self.opts.cross_check:
            from qat_harness import crosscheck

            if dev.runs_on_host and dev.kernel == crosscheck.KERNEL and not dev.simulated:
                self.progress(f"{self.name}: cross-checking with {crosscheck.TOOL_NAME} on {dev_name}")
                check = crosscheck.run_cross_check({v: paths[v] for v in labels},
                                                   {v: summary.median_ms for v, summary in section.latency.items()},
                                                   self.opts.num_threads, ratio, ("float", ut))
            else:
                check = crosscheck.skipped(f"{crosscheck.TOOL_NAME} times LiteRT + XNNPACK on the host "
                                           f"CPU; {dev_name} is another backend")
            section.bench_details.cross_check = check
            if check.status is not Verdict.PASS:
                self.report.note(self.name, f"cross-check on {dev_name}: {check.status.value}: {check.reason}")
        if ratio is None:
            self.add(claim.skip(self.name, dev_name, f"{claims.NO_FLOAT_REFERENCE} (int8 latency measured: "
                                f"median {section.latency[ut].median_ms:.3f} ms)"))
            return
        section.speedup_qat_vs_float = ratio
        if "ptq_int8" in bench.times_ms:
            section.speedup_ptq_vs_float = ratio_ci("float", "ptq_int8")
        ceiling = claims.ceiling(self.report.run.environment.cpu.flags if dev.runs_on_host else None,
                                 {v: section.delegation.get(v) for v in ("float", ut)},
                                 accelerator=dev.role is Role.ACCELERATOR)
        section.bench_details.ceiling = ceiling
        self.add(claim.judge(self.name, dev_name, claims.SpeedUp(
            ratio, section.latency["float"], section.latency[ut], section.delegation.get(ut),
            self.report.run.environment.cpu.flags, ceiling, dev.simulated or bench.simulated)))



