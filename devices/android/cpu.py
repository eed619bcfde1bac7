"""The ``android-cpu`` device: the phone's own CPU cores through XNNPACK (``--use_xnnpack=true``
with ``num_threads`` threads). Its role is HOST_CPU, so claim C2 (int8 faster than float on
the CPU) is judged on the phone, where it is meant: whether int8 wins there depends on the
cores' int8 dot-product (asimddp) and matrix-multiply (i8mm) instructions, reported by
``describe``."""
from __future__ import annotations

from qat_harness.devices.android.delegation import XNNPACK
from qat_harness.devices.android.model_info import ModelInfo
from qat_harness.devices.android.phone import BENCHMARK_MODEL_ENV
from qat_harness.devices.android.runner import ANDROID_OPTIONS, BenchmarkModelDevice
from qat_harness.devices.base import Role


class AndroidCpuDevice(BenchmarkModelDevice):
    name = "android-cpu"
    description = ("Android phone's CPU (XNNPACK) over adb, with TFLite's benchmark_model "
                   f"(${BENCHMARK_MODEL_ENV}; device from ANDROID_SERIAL / ADB_SERVER_SOCKET)")
    role = Role.HOST_CPU
    options = ANDROID_OPTIONS
    delegate_kind = XNNPACK

    def delegate_flags(self) -> list[str]:
        return ["--use_xnnpack=true"]

    def warnings(self) -> list[str]:
        return self.cpu_warnings()

    def nothing_taken_reason(self, info: ModelInfo) -> str:
        return "XNNPACK took no node: it ran on TFLite's built-in CPU kernels"
