"""Reports for the tests of the writers, the comparison and the history: real report.json files
recorded by real runs, read through the report codec, and variations of them made on the typed
tree (never a hand-written copy of the format).

- ``report_tiny_int8_on_cpu_and_cpu_ref.json``: ``qat-harness run --models int8.tflite=float.tflite
  --dataset data.npz --devices cpu,cpu-ref --skip-bitwidth --min-runs 20 --min-seconds 0`` at
  commit 1fe17ab (schema 1), on a 4-op conv classifier (``tests/conftest.py``'s tiny model) and
  120 inputs labelled with the float model's own answers: right on every example. That run
  wrote report.json as ``complete`` and then crashed drawing report.html (issue 19, item 7).
- ``report_before_architecture_digits_cnn.json``: digits_cnn on cpu and cpu-ref, before the
  results model (schema 1, no library versions, no device roles)."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from qat_harness.devices.base import Role
from qat_harness.environment import CpuInfo, Environment
from qat_harness.options import RunOptions
from qat_harness.record import codec
from qat_harness.record.tree import DeviceDescription, RunReport
from qat_harness.results import Verdict
from qat_harness.stats import latency_summary

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "report_tiny_int8_on_cpu_and_cpu_ref.json"
DIGITS = FIXTURES / "report_before_architecture_digits_cnn.json"
TINY_MODEL = "int8.tflite"

#: A machine for reports recorded by the tests themselves.
ENV = Environment(harness_version="0", python="3.11", platform="test",
                  cpu=CpuInfo("test cpu", "x86_64", 2, ["avx2"]), num_threads=2,
                  libraries={"tensorflow": "2.21.0"})


def options(out: Path, models: tuple[str, ...] = ("m",), devices: tuple[str, ...] = ("cpu",)) -> RunOptions:
    return RunOptions(models=list(models), devices=list(devices), out=Path(out))


def tiny() -> RunReport:
    return codec.load(TINY)


def digits() -> RunReport:
    return codec.load(DIGITS)


def with_model_copies(run: RunReport, names: list[str]) -> RunReport:
    """``run`` with its first model's section and claims copied under each of ``names``."""
    source = next(iter(run.models))
    for name in names:
        run.models[name] = copy.deepcopy(run.models[source])
        run.claims += [dataclasses.replace(c, model=name, details=copy.deepcopy(c.details))
                       for c in run.claims if c.model == source]
    return run


def with_simulated_accelerator(run: RunReport, name: str = "nnapi") -> RunReport:
    """Every model's ``cpu`` section and claims copied to a simulated accelerator ``name``."""
    run.devices[name] = DeviceDescription(name, Role.ACCELERATOR, True, {"serial": "sim-1"})
    for section in run.models.values():
        if "cpu" in section.devices:
            section.devices[name] = dataclasses.replace(copy.deepcopy(section.devices["cpu"]), simulated=True)
    run.claims += [dataclasses.replace(c, device=name, simulated=True, reason="[simulated] " + c.reason)
                   for c in run.claims if c.device == "cpu"]
    return run


def set_verdict(run: RunReport, claim_id: str, verdict: Verdict) -> RunReport:
    run.claims = [dataclasses.replace(c, verdict=verdict) if c.id == claim_id else c for c in run.claims]
    return run


def samples(median_ms: float, n: int = 300, noise: float = 0.05, seed: int = 0) -> list[float]:
    """Latency-like samples: log-normal around ``median_ms`` with a slow tail."""
    rng = np.random.default_rng(seed)
    x = median_ms * np.exp(rng.normal(0.0, noise, n))
    tail = rng.random(n) < 0.05
    x[tail] *= 1 + rng.exponential(0.5, tail.sum())
    return [float(v) for v in x]


def night(started: str, *, int8_ms: float = 0.5, float_ms: float = 1.0, noise: float = 0.05, seed: int = 0,
          tensorflow: str | None = None, cpu: str | None = None, base: RunReport | None = None) -> RunReport:
    """A night of the nightly history: the tiny report with these latencies (raw samples,
    summaries and the float/int8 speed-up), library version and CPU."""
    run = base or tiny()
    run.started = started
    env = run.environment
    run.environment = dataclasses.replace(
        env, libraries={**env.libraries, **({"tensorflow": tensorflow} if tensorflow else {})},
        cpu=dataclasses.replace(env.cpu, model=cpu) if cpu else env.cpu)
    for m_index, section in enumerate(run.models.values()):
        for d_index, d in enumerate(section.devices.values()):
            if not d.latency:
                continue
            s = seed * 1000 + m_index * 100 + d_index * 10
            d.latency_raw_ms = {v: samples(float_ms if v == "float" else int8_ms, noise=noise, seed=s + k)
                                for k, v in enumerate(d.latency)}
            d.latency = {v: latency_summary(x) for v, x in d.latency_raw_ms.items()}
            if d.speedup_qat_vs_float is not None:
                d.speedup_qat_vs_float = dataclasses.replace(d.speedup_qat_vs_float, ratio=float_ms / int8_ms,
                                                             ci_low=0.95 * float_ms / int8_ms,
                                                             ci_high=1.05 * float_ms / int8_ms)
    return run


def through_json(run: RunReport) -> RunReport:
    """``run`` written and read back by the codec, as every consumer sees it."""
    return codec.loads(codec.dump(run))
