"""The ``android-gpu`` device: the phone's GPU through TFLite's GPU delegate
(``--use_gpu=true``). The GPU delegate has no int8 arithmetic: it dequantizes an int8 model's
weights and computes in floating point (fp16 when benchmark_model's default
``--gpu_precision_loss_allowed`` holds), so the int8 model's speed on it says nothing about
int8 kernels; the report says so in ``describe()`` and in every Delegation."""
from __future__ import annotations

from qat_harness.devices.android import benchmark_output as bmo
from qat_harness.devices.android.delegation import GPU
from qat_harness.devices.android.model_info import ModelInfo
from qat_harness.devices.android.phone import BENCHMARK_MODEL_ENV
from qat_harness.devices.android.runner import ANDROID_OPTIONS, BenchmarkModelDevice
from qat_harness.devices.base import Delegation, Role

DEQUANTIZED_NOTE = ("int8 models run dequantized on the GPU delegate: it converts int8 weights to float "
                    "when it prepares the graph and computes in fp16 (benchmark_model's default "
                    "--gpu_precision_loss_allowed) or fp32, so the int8 model's latency here is not that of "
                    "int8 arithmetic")


class AndroidGpuDevice(BenchmarkModelDevice):
    name = "android-gpu"
    description = ("Android phone's GPU (TFLite GPU delegate) over adb, with TFLite's benchmark_model "
                   f"(${BENCHMARK_MODEL_ENV}; device from ANDROID_SERIAL / ADB_SERVER_SOCKET)")
    role = Role.ACCELERATOR
    options = ANDROID_OPTIONS
    delegate_kind = GPU

    def delegate_flags(self) -> list[str]:
        return ["--use_gpu=true"]

    def warnings(self) -> list[str]:
        return [DEQUANTIZED_NOTE]

    def delegation(self, parsed: bmo.BenchmarkOutput, info: ModelInfo) -> Delegation:
        deleg = super().delegation(parsed, info)
        deleg.details["int8_execution"] = DEQUANTIZED_NOTE
        return deleg
