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
from qat_harness.build.artifacts import Artifacts, BuildFailed, get_artifacts
from qat_harness.build.cache import ArtifactCache
from qat_harness.core import tflite
from qat_harness.core.tflite import model_inputs
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.devices import registry as device_registry
from qat_harness.devices.base import BenchSettings, Device, Role
from qat_harness.environment import environment
from qat_harness.report import ArtifactsInfo, DatasetInfo, DeviceSection, ModelSection, Report
from qat_harness.results import ClaimResult, Verdict

BENCH_LABELS = ("float", "qat_int8", "ptq_int8")


@dataclasses.dataclass
class RunOptions:
    models: list[str]
    devices: list[str]
    out: Path
    num_threads: int = 2
    input_size: int | None = None      # overrides every model's default input size
    default_input_sizes: dict = dataclasses.field(default_factory=dict)  # per-model defaults
    weights: str | None = None
    dataset: str | None = None
    limit_per_class: int | None = None
    eval_limit: int | None = None      # cap on evaluation examples (None: the whole split)
    oracle_limit: int = 64             # examples compared with the reference kernels
    bench: BenchSettings = dataclasses.field(default_factory=BenchSettings)
    cache_dir: Path | None = None
    use_cache: bool = True
    #: per device name, the options it declares (see ``devices.registry.split_options``)
    device_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    run_timeout_s: float = 600.0
    build_timeout_s: float = 7200.0
    check_bit_widths: bool = True      # claim C6 (a small QAT probe, cached)


def run(opts: RunOptions, progress=lambda msg: None, devices: dict[str, Device] | None = None) -> Report:
    """Run every model on every device. ``devices``: already opened (and probed) devices, by
    name; opened here from ``opts`` when not given. The run closes them."""
    opts = dataclasses.replace(opts, out=Path(opts.out).resolve())
    try:
        report = Report(opts.out, environment(opts.num_threads), _options_summary(opts))
    except BaseException:
        for dev in (devices or {}).values():
            dev.close()
        raise
    if devices is None:
        devices = open_devices(opts.devices, opts.num_threads, opts.device_options)
    for name, dev in devices.items():
        report.device(name, dev.describe())
    cache = ArtifactCache(opts.cache_dir, enabled=opts.use_cache)
    try:
        if opts.check_bit_widths:
            progress("C6: probing other bit widths (4-bit QAT)")
            report.add_claim(_bit_width_claim(cache))
            report.save()
        for name in opts.models:
            try:
                ModelRun(name, opts, devices, cache, report, progress).execute()
            except UsageError as exc:
                report.model_error(name, str(exc), usage=True)
                progress(f"{name}: {exc}")
            except BuildFailed as exc:
                report.model_error(name, str(exc))
                report.add_claim(claims.error("C1-size", name, "any", str(exc)))
                progress(f"{name}: {exc}")
            report.save()
    except BaseException:
        # an internal error or Ctrl-C: keep everything measured, and say the run stopped early
        report.finish(status="interrupted")
        raise
    else:
        report.finish()
    finally:
        for dev in devices.values():
            dev.close()
    return report


def open_devices(names: list[str], num_threads: int,
                 device_options: dict[str, dict[str, Any]]) -> dict[str, Device]:
    """Create each device once, with its own options; the same objects probe and run."""
    return {name: device_registry.create(name, num_threads=num_threads,
                                         **device_options.get(name, {})) for name in names}


def _bit_width_claim(cache: ArtifactCache) -> ClaimResult:
    """Claim C6, computed once per library set and kept in the artifact cache."""
    import json

    from qat_harness.build import bitwidth
    from qat_harness.build.cache import cache_key

    key = cache_key({"probe": "bitwidth", "configs": bitwidth.CONFIGS})
    entry = cache.lookup(key)
    if entry is None:
        result = bitwidth.check_bit_widths()
        if result.verdict is Verdict.ERROR:
            return result  # never cache a failed probe
        entry = cache.store(key, lambda folder: (folder / "outcomes.json").write_text(
            json.dumps(result.details["outcomes"])))
    return bitwidth.judge(json.loads((entry / "outcomes.json").read_text()))


def _options_summary(opts: RunOptions) -> dict:
    d = dataclasses.asdict(opts)
    d["out"] = str(opts.out)
    d["cache_dir"] = str(opts.cache_dir) if opts.cache_dir else None
    return d


class ModelRun:
    """One model through every stage; each stage records what it measured before the next."""

    def __init__(self, name: str, opts: RunOptions, devices: dict[str, Device],
                 cache: ArtifactCache, report: Report, progress):
        from qat_harness.models import registry

        self.spec = registry.get(name)
        self.name = name
        self.opts, self.devices, self.cache, self.report = opts, devices, cache, report
        self.progress = progress
        size = opts.input_size or opts.default_input_sizes.get(name)
        self.cfg = self.spec.config(size, opts.weights, opts.dataset, opts.limit_per_class)
        self.section = report.model(name, ModelSection(description=self.spec.description,
                                                       config=dataclasses.asdict(self.cfg)))
        self.infos: dict[str, tflite.ModelInfo] = {}
        self._oracle: np.ndarray | None = None

    def add(self, result: ClaimResult) -> None:
        self.report.add_claim(result)

    # -- stages -----------------------------------------------------------------------------
    def execute(self) -> None:
        self.progress(f"{self.name}: loading data")
        self.data = self.spec.dataset(self.cfg)
        self.section.dataset = DatasetInfo(self.data.name, int(len(self.data.x_eval)),
                                           self.data.labels_meaningful)
        self.artifacts: Artifacts = get_artifacts(self.spec, self.cfg, self.data, self.cache,
                                                  self.progress, self.opts.build_timeout_s)
        self.section.artifacts = ArtifactsInfo(self.artifacts.folder, self.artifacts.from_cache,
                                               dict(self.artifacts.files))
        self.section.keras = self.artifacts.metrics
        self.report.save()
        self.inspect()
        self.report.save()
        for dev_name, dev in self.devices.items():
            self.on_device(dev_name, dev)
            self.report.save()

    def inspect(self) -> None:
        infos = {}
        for variant, path in self.artifacts.files.items():
            try:
                infos[variant] = tflite.inspect_model(path)
            except tflite.InvalidModel as exc:
                self.report.note(self.name, f"{variant}: {exc}")
        for variant, err in self.artifacts.metrics.get("conversion_errors", {}).items():
            self.report.note(self.name, f"conversion of {variant} failed: {err}")
        self.infos = infos
        self.section.tflite = dict(infos)
        if "float" in infos and "qat_int8" in infos:
            self.add(claims.size_claim(self.name, infos["float"].size_bytes, infos["qat_int8"].size_bytes,
                                       infos["ptq_int8"].size_bytes if "ptq_int8" in infos else None))
        else:
            self.add(claims.error("C1-size", self.name, "any", "float or QAT int8 model missing"))
        if "qat_int8" not in infos:
            for cid in ("C4-full-int", "C5-per-axis", "M3-bn-fold"):
                self.add(claims.error(cid, self.name, "any", "no QAT int8 model to inspect"))
            return
        qat = infos["qat_int8"]
        self.add(claims.full_integer_claim(self.name, inspection.full_integer_check(qat, require_int8_io=True)))
        self.add(claims.per_axis_claim(self.name, inspection.per_axis_check(qat)))
        self.add(claims.bn_fold_claim(self.name, inspection.batchnorm_fold_check(qat),
                                      self.spec.has_batchnorm))
        self.section.quantization = {v: inspection.weight_granularity(i) for v, i in infos.items()
                                     if v != "float"}
        if "ptq_int8" in infos:
            self.section.ptq_checks = {"full_integer": inspection.full_integer_check(infos["ptq_int8"]),
                                       "per_axis": inspection.per_axis_check(infos["ptq_int8"])}

    # -- per device -------------------------------------------------------------------------
    def _eval_set(self):
        x, y = self.data.x_eval, self.data.y_eval
        if self.opts.eval_limit:
            x = x[: self.opts.eval_limit]
            y = None if y is None else y[: self.opts.eval_limit]
        return x, y

    def on_device(self, dev_name: str, dev: Device) -> None:
        section = self.section.devices.setdefault(dev_name, DeviceSection(simulated=dev.simulated))
        variants = [v for v in ("float", "qat_int8", "ptq_int8") if v in self.infos]
        workdir = self.opts.out / "work" / self.name / dev_name
        workdir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for v in variants:
            try:
                paths[v], deleg = dev.prepare(self.artifacts.files[v], workdir)
                if deleg is not None:
                    section.delegation[v] = deleg
            except DeviceError as exc:
                section.errors[f"prepare:{v}"] = exc.reason
                if v == "float":  # a float model rarely compiles for an accelerator: run as is
                    paths[v] = self.artifacts.files[v]
        self.progress(f"{self.name}: evaluating on {dev_name}")
        outputs = self._evaluate(dev, paths, section)
        self._accuracy_claims(dev_name, dev, outputs, section)
        self.report.save()
        self.progress(f"{self.name}: timing on {dev_name}")
        self._latency_claims(dev_name, dev, paths, section)

    def _evaluate(self, dev: Device, paths: dict[str, Path], section: DeviceSection) -> dict:
        x, _ = self._eval_set()
        outputs = {}
        for v, path in paths.items():
            try:
                res = dev.run(path, model_inputs(self.infos[v], x), self.opts.run_timeout_s)
                outputs[v] = res.outputs
                if res.delegation is not None:
                    section.delegation.setdefault(v, res.delegation)
            except DeviceError as exc:
                section.errors[f"run:{v}"] = f"{exc.kind}: {exc.reason}"
        return outputs

    def _oracle_outputs(self) -> np.ndarray | None:
        """QAT int8 outputs from LiteRT's reference kernels: the numeric oracle (cached per model)."""
        if self._oracle is None and "qat_int8" in self.infos:
            x, _ = self._eval_set()
            x = x[: self.opts.oracle_limit]
            try:
                self._oracle = device_registry.oracle().run(
                    self.artifacts.files["qat_int8"], model_inputs(self.infos["qat_int8"], x),
                    self.opts.run_timeout_s).outputs
            except DeviceError as exc:
                self.section.oracle_error = f"{exc.kind}: {exc.reason}"
                self._oracle = np.empty(0)
        return self._oracle if self._oracle is not None and self._oracle.size else None

    def _accuracy_claims(self, dev_name: str, dev: Device, outputs: dict, section: DeviceSection) -> None:
        _, y = self._eval_set()
        sim = dev.simulated
        for cid in ("A1-accuracy", "A2-agreement"):
            missing = [v for v in ("float", "qat_int8") if v not in outputs]
            if missing:
                why = section.errors.get(f"run:{missing[0]}", "not run")
                self.add(claims.error(cid, self.name, dev_name, f"{missing[0]} did not run: {why}"))
        if "float" not in outputs or "qat_int8" not in outputs:
            return
        top1 = {v: np.argmax(o.reshape(len(o), -1), axis=-1) for v, o in outputs.items()}
        if dev.role is not Role.ORACLE:
            oracle = self._oracle_outputs()
            if oracle is not None:
                n = len(oracle)
                section.vs_reference_kernels = stats.int8_step_difference(outputs["qat_int8"][:n], oracle)
        meaningful = self.data.labels_meaningful and (self.spec.trained_here or self.cfg.weights)
        if not meaningful:
            why = ("untrained model (weights=None): int8 outputs are degenerate, agreement and "
                   "accuracy mean nothing; give --weights and --dataset for real numbers")
            self.add(claims.skip("A1-accuracy", self.name, dev_name, why))
            self.add(claims.skip("A2-agreement", self.name, dev_name, why))
            return
        agree = int(np.sum(top1["qat_int8"] == top1["float"]))
        extra = {}
        if "ptq_int8" in top1:
            extra["ptq_agreement"] = stats.wilson_interval(int(np.sum(top1["ptq_int8"] == top1["float"])),
                                                          len(top1["float"]))
        self.add(claims.agreement_claim(self.name, dev_name,
                                        stats.wilson_interval(agree, len(top1["float"])), sim, extra))
        if y is None:
            self.add(claims.skip("A1-accuracy", self.name, dev_name, "the dataset has no labels"))
            return
        acc = {v: float(np.mean(t == y)) for v, t in top1.items()}
        section.top1 = acc
        keras_metrics = self.artifacts.metrics
        extra = {"float_keras_top1": keras_metrics.get("float_keras_accuracy"),
                 "qat_keras_top1": keras_metrics.get("qat_keras_accuracy"),
                 "ptq_int8_top1": acc.get("ptq_int8")}
        self.add(claims.accuracy_claim(self.name, dev_name, acc["float"], acc["qat_int8"], len(y),
                                       extra, sim))

    def _latency_claims(self, dev_name: str, dev: Device, paths: dict[str, Path],
                        section: DeviceSection) -> None:
        claim_id = dev.role.latency_claim
        if claim_id is None:
            why = {Role.ORACLE: "reference kernels are the numeric oracle, not a tested backend",
                   Role.OVERHEAD: "the null device measures the harness's own overhead"}[dev.role]
            self.add(claims.skip("C2-cpu-latency", self.name, dev_name, why))
            return
        labels = [v for v in BENCH_LABELS if v in paths]
        if "float" not in labels or "qat_int8" not in labels:
            self.add(claims.error(claim_id, self.name, dev_name,
                                  "float or QAT int8 model unavailable on this device"))
            return
        x, _ = self._eval_set()
        sample = {v: model_inputs(self.infos[v], x[:1]) for v in labels}
        settings = dataclasses.replace(self.opts.bench, num_threads=self.opts.num_threads)
        try:
            bench = dev.benchmark({v: paths[v] for v in labels}, sample, settings)
        except DeviceError as exc:
            self.add(claims.error(claim_id, self.name, dev_name, f"{exc.kind}: {exc.reason}"))
            return
        section.latency = {v: stats.latency_summary(t) for v, t in bench.times_ms.items()}
        section.latency_raw_ms = bench.times_ms
        section.first_invoke_ms = bench.first_invoke_ms
        section.bench_details = bench.details
        for v, deleg in bench.delegation.items():
            if deleg is not None:
                section.delegation.setdefault(v, deleg)
        ratio = stats.ratio_of_medians_ci(bench.times_ms["float"], bench.times_ms["qat_int8"])
        section.speedup_qat_vs_float = ratio
        if "ptq_int8" in bench.times_ms:
            section.speedup_ptq_vs_float = stats.ratio_of_medians_ci(bench.times_ms["float"],
                                                                     bench.times_ms["ptq_int8"])
        if dev.role is Role.ACCELERATOR:
            self.add(claims.accelerator_claim(self.name, dev_name, ratio, section.delegation.get("qat_int8"),
                                              dev.simulated or bench.simulated))
        else:
            self.add(claims.cpu_latency_claim(self.name, dev_name, ratio, section.latency["float"],
                                              section.latency["qat_int8"],
                                              self.report.run.environment.cpu.flags))
