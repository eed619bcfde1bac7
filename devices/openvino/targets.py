"""Which OpenVINO device a run targets (``--openvino-device``) and what that makes it for the
claims: CPU is judged as the host CPU (C2), GPU and NPU as accelerators (C3); and in which
precision it is asked to compute float layers (``--openvino-precision``).

Pure functions on strings, so the parent process never imports OpenVINO to answer them.
"""
from __future__ import annotations

import re

from qat_harness.devices.base import Role

TARGETS = ("CPU", "GPU", "NPU", "AUTO")
#: OpenVINO's INFERENCE_PRECISION_HINT values the device takes, in OpenVINO's own spelling.
#: f32 is the default: a plugin's own default (bf16 on CPUs with AMX or avx512_bf16, f16 on
#: GPUs) gives float models errors of 1e-3 to 1 that belong to the precision, not the kernels.
PRECISIONS = ("f32", "bf16", "f16")
#: "GPU" or a numbered instance such as "GPU.1", the way ``Core().available_devices`` spells them
_TARGET_SYNTAX = re.compile(r"^(CPU|GPU|NPU)(\.\d+)?$|^AUTO$")


def normalize_target(target: str | None) -> str:
    """'gpu' -> 'GPU'; raises ValueError (one line) for anything but CPU, GPU[.N], NPU[.N], AUTO."""
    text = (target or "CPU").strip().upper()
    if not _TARGET_SYNTAX.match(text):
        raise ValueError(f"unknown OpenVINO device '{target}': use one of {', '.join(TARGETS)} "
                         "(or a numbered one such as GPU.1)")
    return text


def device_family(target: str) -> str:
    """'GPU.1' -> 'GPU'."""
    return target.split(".", 1)[0]


def role_for(target: str) -> Role:
    """AUTO counts as the host CPU: on a machine without an Intel GPU or NPU (the usual CI
    machine) it runs on the CPU; name GPU or NPU explicitly to be judged as an accelerator."""
    return Role.ACCELERATOR if device_family(target) in ("GPU", "NPU") else Role.HOST_CPU


def is_listed(target: str, available: list[str]) -> bool:
    """Is ``target`` among OpenVINO's ``available_devices``? 'GPU' matches 'GPU.0' (OpenVINO
    numbers its GPUs when there are several); AUTO needs any device at all."""
    if target == "AUTO":
        return bool(available)
    return any(name == target or name.startswith(target + ".") for name in available)


def normalize_precision(precision: str | None) -> str:
    """'BF16' -> 'bf16'; raises ValueError (one line) for anything but f32, bf16, f16."""
    text = (precision or "f32").strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"unknown OpenVINO inference precision '{precision}': use one of {', '.join(PRECISIONS)}")
    return text
