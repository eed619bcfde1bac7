"""The conformance run: for each model, get its artifacts (cached), inspect them, run them on
each device, and evaluate the claims. Every measurement goes into the report as soon as it
exists, and the report is saved after every step, so a failure later never loses it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qat_harness import claims, stats
from qat_harness.claims import ClaimResult
from qat_harness.devices import registry as device_registry
from qat_harness.devices.base import BenchSettings, Device, DeviceError
from qat_harness.errors import UsageError
from qat_harness.report import Report

ACCELERATORS = {"nnapi", "edgetpu"}
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
    device_options: dict = dataclasses.field(default_factory=dict)
    run_timeout_s: float = 600.0
    check_bit_widths: bool = True      # claim C6 (a small QAT probe, cached)


def run(opts: RunOptions, progress=lambda msg: None) -> Report:
    from qat_harness.cache import ArtifactCache
    from qat_harness.environment import environment

    report = Report(opts.out, environment(opts.num_threads), _options_summary(opts))
    devices = _open_devices(opts, report)
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


def _bit_width_claim(cache) -> ClaimResult:
    """Claim C6, computed once per library set and kept in the artifact cache."""
    import json

    from qat_harness import bitwidth
    from qat_harness.cache import cache_key

    key = cache_key({"probe": "bitwidth", "configs": bitwidth.CONFIGS})
    entry = cache.lookup(key)
    if entry is None:
        result = bitwidth.check_bit_widths()
        if result.verdict is claims.Verdict.ERROR:
            return result  # never cache a failed probe
        entry = cache.store(key, lambda folder: (folder / "outcomes.json").write_text(
            json.dumps(result.details["outcomes"])))
    return bitwidth.judge(json.loads((entry / "outcomes.json").read_text()))


def _options_summary(opts: RunOptions) -> dict:
    d = dataclasses.asdict(opts)
    d["out"] = str(opts.out)
    d["cache_dir"] = str(opts.cache_dir) if opts.cache_dir else None
    return d


def _open_devices(opts: RunOptions, report: Report) -> dict[str, Device]:
    devices = {}
    for name in opts.devices:
        dev = device_registry.create(name, num_threads=opts.num_threads, **opts.device_options)
        devices[name] = dev
        report.device(name, dev.describe())
    return devices


def latency_claim_id(dev_name: str) -> str:
    """Accelerators are judged on C3, host CPUs on C2."""
    return "C3-accel" if dev_name in ACCELERATORS else "C2-cpu-latency"


class ModelRun:
    """One model through every stage; each stage records what it measured before the next."""

    def __init__(self, name: str, opts: RunOptions, devices: dict[str, Device], cache, report: Report,
                 progress):
        from qat_harness.models import registry

        self.spec = registry.get(name)
        self.name = name
        self.opts, self.devices, self.cache, self.report = opts, devices, cache, report
        self.progress = progress
        size = opts.input_size or opts.default_input_sizes.get(name)
        self.cfg = self.spec.config(size, opts.weights, opts.dataset, opts.limit_per_class)
        self.entry = report.model(name, {"description": self.spec.description,
                                         "config": dataclasses.asdict(self.cfg)})
        self._oracle: np.ndarray | None = None

    def add(self, result: ClaimResult) -> None:
        self.report.add_claim(result)

    # -- stages -----------------------------------------------------------------------------
    def execute(self) -> None:
        from qat_harness.artifacts import get_artifacts

        self.progress(f"{self.name}: loading data")
        self.data = self.spec.dataset(self.cfg)
        self.entry["dataset"] = {"name": self.data.name, "eval_examples": int(len(self.data.x_eval)),
                                 "labels_meaningful": self.data.labels_meaningful}
        self.artifacts = get_artifacts(self.spec, self.cfg, self.data, self.cache, self.progress)
        self.entry["artifacts"] = {"folder": str(self.artifacts.folder),
                                   "from_cache": self.artifacts.from_cache,
                                   "files": {k: str(v) for k, v in self.artifacts.files.items()}}
        self.entry["keras"] = self.artifacts.metrics
        self.report.save()
        self.inspect()
        self.report.save()
        for dev_name, dev in self.devices.items():
            self.on_device(dev_name, dev)
            self.report.save()

    def inspect(self) -> None:
        from qat_harness import tflite_inspect as ti

        infos = {}
        for variant, path in self.artifacts.files.items():
            try:
                infos[variant] = ti.inspect_model(path)
            except ti.InvalidModel as exc:
                self.report.note(self.name, f"{variant}: {exc}")
        for variant, err in self.artifacts.metrics.get("conversion_errors", {}).items():
            self.report.note(self.name, f"conversion of {variant} failed: {err}")
        self.infos = infos
        self.entry["tflite"] = {v: i.to_dict() for v, i in infos.items()}
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
        full_int = ti.full_integer_check(qat, require_int8_io=True)
        self.add(claims.full_integer_claim(self.name, full_int))
        self.add(claims.per_axis_claim(self.name, ti.per_axis_check(qat)))
        self.add(claims.bn_fold_claim(self.name, ti.batchnorm_fold_check(qat), self.spec.has_batchnorm))
        self.entry["quantization"] = {v: ti.weight_granularity(i) for v, i in infos.items() if v != "float"}
        if "ptq_int8" in infos:
            self.entry["ptq_checks"] = {"full_integer": ti.full_integer_check(infos["ptq_int8"]),
                                        "per_axis": ti.per_axis_check(infos["ptq_int8"])}

    # -- per device -------------------------------------------------------------------------
    def _inputs_for(self, variant: str, x: np.ndarray) -> np.ndarray:
        info = self.infos[variant]
        t = info.tensor(info.inputs[0])
        if t.dtype == "int8" and t.scales:
            from qat_harness.convert import quantize_input
            return quantize_input(x, t.scales[0], t.zero_points[0])
        return x.astype(np.float32)

    def _eval_set(self):
        x, y = self.data.x_eval, self.data.y_eval
        if self.opts.eval_limit:
            x = x[: self.opts.eval_limit]
            y = None if y is None else y[: self.opts.eval_limit]
        return x, y

    def on_device(self, dev_name: str, dev: Device) -> None:
        d = self.entry.setdefault("devices", {}).setdefault(dev_name, {})
        d["simulated"] = dev.simulated
        variants = [v for v in ("float", "qat_int8", "ptq_int8") if v in self.infos]
        workdir = self.opts.out / "work" / self.name / dev_name
        workdir.mkdir(parents=True, exist_ok=True)
        paths, delegation = {}, {}
        for v in variants:
            try:
                paths[v], deleg = dev.prepare(self.artifacts.files[v], workdir)
                if deleg is not None:
                    delegation[v] = deleg.to_dict()
            except DeviceError as exc:
                d.setdefault("errors", {})[f"prepare:{v}"] = exc.reason
                if v == "float":  # a float model rarely compiles for an accelerator: run as is
                    paths[v] = self.artifacts.files[v]
        d["delegation"] = delegation
        self.progress(f"{self.name}: evaluating on {dev_name}")
        outputs = self._evaluate(dev_name, dev, paths, d)
        self._accuracy_claims(dev_name, dev, outputs, d)
        self.report.save()
        self.progress(f"{self.name}: timing on {dev_name}")
        self._latency_claims(dev_name, dev, paths, d, delegation)

    def _evaluate(self, dev_name, dev, paths, d) -> dict:
        x, _ = self._eval_set()
        outputs = {}
        for v, path in paths.items():
            try:
                res = dev.run(path, self._inputs_for(v, x), self.opts.run_timeout_s)
                outputs[v] = res.outputs
                if res.delegation is not None and v not in d["delegation"]:
                    d["delegation"][v] = res.delegation.to_dict()
            except DeviceError as exc:
                d.setdefault("errors", {})[f"run:{v}"] = f"{exc.kind}: {exc.reason}"
        return outputs

    def _oracle_outputs(self) -> np.ndarray | None:
        """QAT int8 outputs from LiteRT's reference kernels: the numeric oracle (cached per model)."""
        if self._oracle is None and "qat_int8" in self.infos:
            x, _ = self._eval_set()
            x = x[: self.opts.oracle_limit]
            ref = device_registry.create("cpu-ref")
            try:
                self._oracle = ref.run(self.artifacts.files["qat_int8"], self._inputs_for("qat_int8", x),
                                       self.opts.run_timeout_s).outputs
            except DeviceError as exc:
                self.entry["oracle_error"] = f"{exc.kind}: {exc.reason}"
                self._oracle = np.empty(0)
        return self._oracle if self._oracle is not None and self._oracle.size else None

    def _accuracy_claims(self, dev_name, dev, outputs, d) -> None:
        _, y = self._eval_set()
        sim = dev.simulated
        for cid in ("A1-accuracy", "A2-agreement"):
            missing = [v for v in ("float", "qat_int8") if v not in outputs]
            if missing:
                why = d.get("errors", {}).get(f"run:{missing[0]}", "not run")
                self.add(claims.error(cid, self.name, dev_name, f"{missing[0]} did not run: {why}"))
        if "float" not in outputs or "qat_int8" not in outputs:
            return
        top1 = {v: np.argmax(o.reshape(len(o), -1), axis=-1) for v, o in outputs.items()}
        if "qat_int8" in outputs and dev_name != "cpu-ref":
            oracle = self._oracle_outputs()
            if oracle is not None:
                n = len(oracle)
                d["vs_reference_kernels"] = stats.int8_step_difference(outputs["qat_int8"][:n], oracle)
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
        d["top1"] = acc
        keras_metrics = self.artifacts.metrics
        extra = {"float_keras_top1": keras_metrics.get("float_keras_accuracy"),
                 "qat_keras_top1": keras_metrics.get("qat_keras_accuracy"),
                 "ptq_int8_top1": acc.get("ptq_int8")}
        self.add(claims.accuracy_claim(self.name, dev_name, acc["float"], acc["qat_int8"], len(y),
                                       extra, sim))

    def _latency_claims(self, dev_name, dev, paths, d, delegation) -> None:
        if dev_name == "cpu-ref":
            self.add(claims.skip("C2-cpu-latency", self.name, dev_name,
                                 "reference kernels are the numeric oracle, not a tested backend"))
            return
        labels = [v for v in BENCH_LABELS if v in paths]
        if "float" not in labels or "qat_int8" not in labels:
            self.add(claims.error(latency_claim_id(dev_name), self.name, dev_name,
                                  "float or QAT int8 model unavailable on this device"))
            return
        x, _ = self._eval_set()
        sample = {v: self._inputs_for(v, x[:1]) for v in labels}
        settings = dataclasses.replace(self.opts.bench, num_threads=self.opts.num_threads)
        try:
            bench = dev.benchmark({v: paths[v] for v in labels}, sample, settings)
        except DeviceError as exc:
            self.add(claims.error(latency_claim_id(dev_name), self.name, dev_name,
                                  f"{exc.kind}: {exc.reason}"))
            return
        d["latency"] = {v: stats.latency_summary(t) for v, t in bench.times_ms.items()}
        d["latency_raw_ms"] = bench.times_ms
        d["first_invoke_ms"] = bench.first_invoke_ms
        d["bench_details"] = bench.details
        for v, deleg in bench.delegation.items():
            if deleg is not None:
                d["delegation"].setdefault(v, deleg.to_dict())
        ratio = stats.ratio_of_medians_ci(bench.times_ms["float"], bench.times_ms["qat_int8"])
        d["speedup_qat_vs_float"] = ratio
        if "ptq_int8" in bench.times_ms:
            d["speedup_ptq_vs_float"] = stats.ratio_of_medians_ci(bench.times_ms["float"],
                                                                  bench.times_ms["ptq_int8"])
        if dev_name in ACCELERATORS:
            self.add(claims.accelerator_claim(self.name, dev_name, ratio,
                                              d["delegation"].get("qat_int8"),
                                              dev.simulated or bench.simulated))
        else:
            flags = self.report.data["environment"]["cpu"]["flags"]
            self.add(claims.cpu_latency_claim(self.name, dev_name, ratio, d["latency"]["float"],
                                              d["latency"]["qat_int8"], flags))
