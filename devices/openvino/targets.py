"""Which OpenVINO device a run targets (``--openvino-device``) and what that makes it for the
claims: CPU is judged as the host CPU (C2), GPU and NPU as accelerators (C3).

Pure functions on strings, so the parent process never imports OpenVINO to answer them.
"""
from __future__ import annotations

import re

from qat_harness.devices.base import Role

TARGETS = ("CPU", "GPU", "NPU", "AUTO")
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
