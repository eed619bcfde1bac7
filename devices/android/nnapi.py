"""The ``nnapi`` device: an Android phone's NNAPI, through benchmark_model's NNAPI delegate
(``--use_nnapi=true``, NNAPI's own CPU implementation disabled so that what is measured is
the phone's accelerators; the ``accelerator`` option pins one by name)."""
from __future__ import annotations

import numpy as np

from qat_harness.devices.android import benchmark_output as bmo
from qat_harness.devices.android.delegation import NNAPI
from qat_harness.devices.android.model_info import ModelInfo
from qat_harness.devices.android.phone import BENCHMARK_MODEL_ENV
from qat_harness.devices.android.runner import ANDROID_OPTIONS, BenchmarkModelDevice
from qat_harness.devices.base import Delegation, DeviceOption, Role


def api_warnings(api_level: int | None) -> list[str]:
    """What the phone's Android version means for int8 models on NNAPI."""
    if api_level is None:
        return ["Android API level unknown (ro.build.version.sdk unreadable)"]
    warnings = []
    if api_level < 27:
        warnings.append(f"API {api_level}: NNAPI appeared in Android 8.1 (API 27); nothing will be delegated")
    if api_level < 29:
        warnings.append(f"API {api_level} < 29 (NNAPI 1.2): per-channel quantized int8 convolutions "
                        "cannot run on NNAPI; such layers stay on the CPU")
    if api_level < 30:
        warnings.append(f"API {api_level} < 30 (NNAPI 1.3): no signed int8 (TENSOR_QUANT8_ASYMM_SIGNED) "
                        "quantize/dequantize; int8 models are only partly delegated or converted to uint8")
    if api_level >= 35:
        warnings.append(f"API {api_level}: NNAPI is deprecated from Android 15 (API 35); vendors may ship "
                        "no or stale NNAPI drivers")
    return warnings


class NnapiDevice(BenchmarkModelDevice):
    name = "nnapi"
    description = ("Android phone's NNAPI over adb, with TFLite's benchmark_model "
                   f"(${BENCHMARK_MODEL_ENV}; device from ANDROID_SERIAL / ADB_SERVER_SOCKET)")
    role = Role.ACCELERATOR
    options = ANDROID_OPTIONS + (
        DeviceOption("accelerator", "NNAPI accelerator name to pin", flag="--nnapi-accelerator"),)
    delegate_kind = NNAPI

    def __init__(self, serial: str | None = None, benchmark_model: str | None = None,
                 accelerator: str | None = None, num_threads: int = 2, bench_invocations: int = 10,
                 run_batch: int = 32, env: dict | None = None):
        super().__init__(serial=serial, benchmark_model=benchmark_model, num_threads=num_threads,
                         bench_invocations=bench_invocations, run_batch=run_batch, env=env)
        self.accelerator = accelerator or None
        self._accelerators_seen: list[str] = []

    def delegate_flags(self) -> list[str]:
        flags = ["--use_nnapi=true", "--disable_nnapi_cpu=true"]
        if self.accelerator:
            flags.append(f"--nnapi_accelerator_name={self.accelerator}")
        return flags

    def required_flags(self) -> list[str]:
        return ["--use_nnapi", "--output_filepath"]

    def warnings(self) -> list[str]:
        return api_warnings(self.phone.api_level())

    def describe(self) -> dict:
        d = super().describe()
        d["accelerator"] = self.accelerator or "auto"
        if d.get("available"):
            # benchmark_model's own list once a model ran; before, the registered HAL services
            d["nnapi_accelerators"] = self._accelerators_seen or self.phone.nnapi_hal_services()
        return d

    def nothing_taken_reason(self, info: ModelInfo) -> str:
        why = "NNAPI took no node of the graph"
        api = self.phone.api_level()
        if api is not None and api < 30 and any(t.dtype == np.int8 for t in info.inputs + info.outputs):
            why += f" (API {api}: see the device's warnings about int8 on NNAPI)"
        return why

    def delegation(self, parsed: bmo.BenchmarkOutput, info: ModelInfo) -> Delegation:
        if parsed.accelerators:
            self._accelerators_seen = parsed.accelerators
        deleg = super().delegation(parsed, info)
        deleg.details.update(accelerator=self.accelerator or "auto (NNAPI CPU disabled)",
                             accelerators_available=parsed.accelerators)
        return deleg

    def benchmark(self, models, sample, settings):
        result = super().benchmark(models, sample, settings)
        result.details["accelerator"] = self.accelerator or "auto (NNAPI CPU implementation disabled)"
        return result
