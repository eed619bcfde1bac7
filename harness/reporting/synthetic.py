"""Synthetic reports with the layout of report.json (as ``RunReport.to_json`` writes it), for
fast tests of the pages, the gate and the history, and for previewing the pages without a run:

    python3 -c "from qat_harness.reporting import synthetic, html; \\
                html.write_html(synthetic.report(), 'preview.html')"
"""
from __future__ import annotations

import numpy as np

from qat_harness.report import SCHEMA_VERSION

VARIANTS = ("float", "ptq_int8", "qat_int8")
OPS = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 2, "MAX_POOL_2D": 2, "SOFTMAX": 1}


def samples(median_ms: float, n: int = 300, noise: float = 0.05, seed: int = 0) -> list[float]:
    """Latency-like samples: log-normal around ``median_ms`` with a slow tail."""
    rng = np.random.default_rng(seed)
    x = median_ms * np.exp(rng.normal(0.0, noise, n))
    tail = rng.random(n) < 0.05
    x[tail] *= 1 + rng.exponential(0.5, tail.sum())
    return [float(v) for v in x]


def report(models=("digits_cnn",), devices=("cpu",), *, started: str = "2026-01-01T02:00:00+00:00",
           float_ms: float = 1.0, int8_ms: float = 0.5, noise: float = 0.05, n: int = 300, seed: int = 0,
           simulated_devices=(), verdicts: dict | None = None, tensorflow: str = "2.21.0",
           cpu: str = "Test CPU", dataset_name: str = "sklearn-digits") -> dict:
    """A complete run: per model C1, C4 and per device C2, A1, A2 claims; ``verdicts`` maps a
    claim id to the verdict to give it (default PASS)."""
    verdicts = verdicts or {}
    claims, model_blocks = [], {}
    for m_index, model in enumerate(models):
        claims.append(_claim("C1-size", model, "any", verdicts.get("C1-size", "PASS"), 3.6, "float 440 KiB / QAT int8 122 KiB"))
        claims.append(_claim("C4-full-int", model, "any", verdicts.get("C4-full-int", "PASS"), None, "all ops integer"))
        device_blocks = {}
        for d_index, device in enumerate(devices):
            simulated = device in simulated_devices
            s = seed * 1000 + m_index * 100 + d_index * 10
            raw = {"float": samples(float_ms, n, noise, s), "ptq_int8": samples(int8_ms * 1.05, n, noise, s + 1),
                   "qat_int8": samples(int8_ms, n, noise, s + 2)}
            ratio = float_ms / int8_ms
            device_blocks[device] = {
                "simulated": simulated,
                "delegation": {v: {"backend": "xnnpack", "ops_total": 10, "ops_delegated": 10 if v == "float" else 9,
                                   "fallback": [] if v == "float" else [["SOFTMAX", "not taken by XNNPACK: builtin kernel"]],
                                   "details": {"partitions": 1}, "fraction": 1.0 if v == "float" else 0.9}
                               for v in VARIANTS},
                "top1": {"float": 0.99, "qat_int8": 0.992, "ptq_int8": 0.985},
                "latency": {v: _summary(x) for v, x in raw.items()},
                "latency_raw_ms": raw,
                "first_invoke_ms": {v: x[0] for v, x in raw.items()},
                "bench_details": {},
                "speedup_qat_vs_float": {"ratio": ratio, "ci_low": ratio * 0.95, "ci_high": ratio * 1.05,
                                         "n_pairs": n, "confidence": 0.95},
                "speedup_ptq_vs_float": {"ratio": ratio / 1.05, "ci_low": ratio * 0.9, "ci_high": ratio,
                                         "n_pairs": n, "confidence": 0.95},
            }
            for cid, measured, reason in (("C2-cpu-latency", round(ratio, 3), f"speed-up {ratio:.2f}x"),
                                          ("A1-accuracy", -0.2, "float 99.00% -> QAT int8 99.20%"),
                                          ("A2-agreement", 0.99, "agree on 356/360 inputs")):
                claims.append(_claim(cid, model, device, verdicts.get(cid, "PASS"), measured,
                                     ("[simulated] " if simulated else "") + reason, simulated))
        model_blocks[model] = {
            "description": "small CNN",
            "dataset": {"name": dataset_name, "eval_examples": 360, "labels_meaningful": True},
            "tflite": {v: {"size_bytes": size, "op_counts": dict(OPS)}
                       for v, size in (("float", 449336), ("ptq_int8", 127704), ("qat_int8", 125200))},
            "devices": device_blocks,
        }
    return {
        "schema_version": SCHEMA_VERSION, "tool": "qat-harness", "started": started, "finished": started,
        "status": "complete",
        "environment": {"harness_version": "0.2.0", "python": "3.11.7", "platform": "Linux-test",
                        "cpu": {"model": cpu, "machine": "x86_64", "logical_cores": 2, "flags": ["avx2"]},
                        "num_threads": 2,
                        "libraries": {"tensorflow": tensorflow, "ai-edge-litert": "2.3.0", "numpy": "2.4.6"}},
        "options": {"models": list(models), "devices": list(devices)},
        "devices": {d: {"name": d, "simulated": d in simulated_devices,
                        "role": {"cpu-ref": "oracle", "nnapi": "accelerator", "edgetpu": "accelerator"}.get(d, "host-cpu"), "num_threads": 2} for d in devices},
        "models": model_blocks, "claims": claims, "notes": [],
    }


def _summary(x: list[float]) -> dict:
    a = np.asarray(x)
    return {"n": int(a.size), "median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "mean_ms": float(a.mean()), "std_ms": float(a.std(ddof=1))}


def _claim(cid: str, model: str, device: str, verdict: str, measured, reason: str, simulated: bool = False) -> dict:
    return {"id": cid, "model": model, "device": device, "verdict": verdict, "measured": measured,
            "expected": "", "reason": reason, "simulated": simulated, "details": {}}
