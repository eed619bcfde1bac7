"""The ``environment`` block of a report: what machine and which libraries measured it."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from qat_harness.cache import library_versions

# CPU features that decide how fast int8 and float kernels can be.
RELEVANT_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                      "avx512_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return {"model": model, "machine": platform.machine(), "logical_cores": os.cpu_count(),
            "flags": sorted(f for f in flags if f in RELEVANT_CPU_FLAGS)}


def environment(num_threads: int) -> dict:
    from qat_harness import __version__

    libs = library_versions(("tensorflow", "tf-keras", "tensorflow-model-optimization",
                             "ai-edge-litert", "tflite-runtime", "numpy", "scipy", "scikit-learn",
                             "adbutils"))
    return {"harness_version": __version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu": cpu_info(), "num_threads": num_threads,
            "libraries": libs}
