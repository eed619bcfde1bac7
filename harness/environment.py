"""The ``environment`` block of a report: what machine and which libraries measured it."""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
from pathlib import Path

from qat_harness.build.cache import library_versions

# CPU features that decide how fast int8 and float kernels can be.
RELEVANT_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                      "avx512_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "sve")
REPORTED_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
                      "tflite-runtime", "openvino", "numpy", "scipy", "scikit-learn", "adbutils")


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    model: str
    machine: str
    logical_cores: int | None
    flags: list[str]


@dataclasses.dataclass(frozen=True)
class Environment:
    harness_version: str
    python: str
    platform: str
    cpu: CpuInfo
    num_threads: int
    libraries: dict[str, str]


def cpu_info() -> CpuInfo:
    flags: set[str]
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
    return CpuInfo(model=model, machine=platform.machine(), logical_cores=os.cpu_count(),
                   flags=sorted(f for f in flags if f in RELEVANT_CPU_FLAGS))


def environment(num_threads: int) -> Environment:
    from qat_harness import __version__

    return Environment(harness_version=__version__, python=sys.version.split()[0],
                       platform=platform.platform(), cpu=cpu_info(), num_threads=num_threads,
                       libraries=library_versions(REPORTED_LIBRARIES))
