"""One model through the run's stages: prepare its files, read them, then every device
(``flow.device``), the structure claims, and the recipe axis. Each stage records what it found
before the next, so a failure later never loses it."""
from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from qat_harness import claims
from qat_harness.build.cache import ArtifactCache
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.devices.base import Device, ModelInputs
from qat_harness.devices.device_set import DeviceSet
from qat_harness.flow import schedule
from qat_harness.flow.device import DeviceRun, ModelStage
from qat_harness.measure.files import InspectedFiles, inspect_files
from qat_harness.measure.level_agreement import level_agreement
from qat_harness.measure.output_kinds import OutputRole, Task, classify_outputs, label_classes
from qat_harness.options import RunOptions
from qat_harness.preparation import DataOptions, PreparedModel, prepare, take
from qat_harness.record import sections
from qat_harness.record.folder import safe_name
from qat_harness.record.report import Report
from qat_harness.record.tree import ModelSection
from qat_harness.shard import run_devices
from qat_harness.sources import ModelSource
from qat_harness.variants import RUN_ORDER, Variant


class ModelRun:
    """One model on every device. Tests give ``pipeline.run`` a subclass to replace a stage."""

    def __init__(self, source: ModelSource, opts: RunOptions, devices: DeviceSet,
                 cache: ArtifactCache, report: Report, progress):
        self.source, self.name = source, source.label
        self.opts, self.devices, self.cache, self.report, self.progress = opts, devices, cache, report, progress
        self.section = report.model(self.name, ModelSection())
        self._oracle: list[np.ndarray] | None = None
        self._structure_judged = False
        self.stages: dict[str, schedule.DeviceStage] = {}   # each device's view of this stage, while it runs
        self.emulated_outputs: dict[str, list[np.ndarray]] = {}

    def add(self, result) -> None:
        self.report.add_claim(result)

    def execute(self) -> None:
        self.progress(f"{self.name}: preparing data and artifacts")
        o = self.opts
        self.model: PreparedModel = prepare(
            self.source, DataOptions(o.dataset, o.labels, o.preprocess, o.limit_per_class), self.cache,
            o.out / "work" / safe_name(self.name), self.progress,
            o.input_size or o.default_input_sizes.get(self.name), o.weights, o.build_timeout_s)
        self.ut = self.model.under_test
        sections.record_preparation(self.section, self.model)
        self.files: InspectedFiles = inspect_files(self.model.variants, self.ut, self.model.has_batchnorm)
        sections.record_files(self.section, self.files)
        if self.ut in self.files.infos:
            self.output_roles()
        conversion_errors = self.section.keras.conversion_errors if self.section.keras else {}
        for note in [*self.model.notes, *self.files.unreadable,
                     *(f"conversion of {v} failed: {e}" for v, e in conversion_errors.items())]:
            self.report.note(self.name, note)
        self.report.save()
        schedule.run_devices(self, [d for d in run_devices(self.opts.shard, self.name, self.devices)
                                    if not self.report.is_done(self.name, d)])  # else recorded by the run resumed
        self.judge_emulated_levels()
        self.judge_structure(final=True)
        if self.opts.recipes and self.runs_recipes():
            self.recipes()
            self.report.save()

    def on_device(self, dev_name: str, dev: Device) -> None:
        """Measure, judge and record ``dev_name`` (which may run beside other devices: it
        records through its ``schedule.DeviceStage``, which adds it to the report in its turn)."""
        stage = self.stages.get(dev_name)
        if stage is None:
            stage = self.stages[dev_name] = schedule.DeviceStage(self, dev_name)
            stage.attach()
        # a stage records as ``Report`` does (``schedule.StagedReport``), which ModelStage does not say yet
        stage.device_run = DeviceRun(cast(ModelStage, stage), dev_name, dev)
        stage.device_run.execute()

    def judge_emulated_levels(self) -> None:
        """Emulated feature levels of one CPU (``arm-cpu-*``) that compute the same file
        differently point at the emulator or a kernel, unconfirmed, never at a phone: a note."""
        if len(self.emulated_outputs) < 2:
            return
        info = self.info(self.ut)
        finding = level_agreement(self.emulated_outputs, [info.tensor(t) for t in info.outputs]).finding
        if finding:
            self.report.note(self.name, finding)

    def runs_recipes(self) -> bool:
        """The recipe axis is the model's, not a device's: of the pieces of a sharded plan, the
        one holding the model on the plan's first device runs it."""
        return self.opts.shard is None or self.opts.shard.holds(self.name, self.opts.devices[0])

    def judge_structure(self, final: bool) -> None:
        """The structure claims (C1, C4, C5, M3), judged once: as soon as a device did not
        refuse the file, or when every device has (``final``), since a file that parses but
        that no device loads never keeps a structure PASS."""
        if self._structure_judged or self.files.facts is None:
            return
        loadability = claims.Loadability({d: self.section.devices[d].errors.get(f"run:{self.ut}") or ""
                                          for d in self.devices if d in self.section.devices})
        if final or loadability.settled:
            self._structure_judged = True
            for result in claims.judge_structure(self.name, self.files.facts, loadability):
                self.add(result)

    def recipes(self) -> None:
        """The recipe axis (``--recipes``): other quantization recipes applied to the float
        model, on every kernel, with the cross-kernel claim (K1) and C6 judged against them."""
        from qat_harness.recipes.stage import judge_recipes

        float_path = self.model.variants.get(Variant.FLOAT)
        given = self.section.schemes.get(self.ut) if self.section.schemes else None
        if float_path is None and given is not None and given.is_float:  # a float file given alone
            float_path = self.model.variants[self.ut]
        if float_path is None:
            self.report.note(self.name, "--recipes needs a float model: give it as --float-model FLOAT.tflite")
            return
        data = self.model.data
        result = judge_recipes(self.name, Path(float_path), self.opts.recipes,
                               self.devices, self.eval_x(), self.cache.root, self.opts.num_threads,
                               labels=self.eval_y() if data.labels_meaningful else None,
                               calibration=take(data.x_train, 32) if data.x_train is not None else None,
                               use_cache=self.cache.enabled, progress=self.progress,
                               task=Task(self.opts.task) if self.opts.task else None)
        for claim in result.claims:
            self.add(claim)
        self.section.recipes = result

    # -- what every device is given ------------------------------------------------------------------
    def files_to_run(self) -> dict[str, Path]:
        """Every variant whose file parses, in the run's order, and A1's control arm if built."""
        files = {str(v): self.model.variants[v] for v in RUN_ORDER if v in self.files.infos}
        control = self.section.keras.control_arm if self.section.keras else None
        if control and self.model.folder is not None:
            files[Variant.FLOAT_FT.value] = self.model.folder / control.file
        return files

    def info(self, variant: str) -> tflite.ModelInfo:
        return self.files.info(Variant.FLOAT if variant == Variant.FLOAT_FT else variant)

    def eval_x(self):
        return take(self.model.data.x_eval, self.opts.eval_limit)

    def eval_y(self) -> np.ndarray | None:
        y = self.model.data.y_eval
        return None if y is None else take(y, self.opts.eval_limit)

    def inputs(self, variant: str, x) -> ModelInputs:
        try:
            return tflite.model_inputs(self.info(variant), x, self.model.input_names)
        except tflite.InputMismatch as exc:
            raise UsageError(f"{self.name} ({variant}): {exc}") from None

    def output_roles(self) -> list[OutputRole]:
        """What each output of the file under test is (class scores, ids, regression, dense)."""
        if self.section.outputs is None:
            y = self.model.data.y_eval if self.model.data.labels_meaningful else None
            self.section.outputs = classify_outputs(self.info(self.ut),
                                                    Task(self.opts.task) if self.opts.task else None, label_classes(y))
        return self.section.outputs

    def oracle_outputs(self) -> list[np.ndarray] | None:
        """The file under test on LiteRT's reference kernels: the numeric oracle, once per model."""
        if self._oracle is None and self.ut in self.files.infos:
            self._oracle = []
            oracle = self.devices.oracle()
            if oracle is None:
                self.section.oracle_error = f"unavailable: {self.devices.oracle_problem}"
                return None
            x = self.inputs(self.ut, take(self.eval_x(), self.opts.oracle_limit))
            try:
                self._oracle = oracle.run(self.model.variants[self.ut], x, self.opts.run_timeout_s).all_outputs
            except DeviceError as exc:
                self.section.oracle_error = f"{exc.kind}: {exc.reason}"
        return self._oracle or None
