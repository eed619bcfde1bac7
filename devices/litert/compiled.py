"""The ``litert`` device: LiteRT's CompiledModel API, the runtime Google recommends and the one
``litert-benchmark`` times, on its CPU accelerator (XNNPACK), beside ``cpu`` (the Interpreter
with the same XNNPACK). Same files, same inputs, same timing schedule: what differs between the
two columns is the runtime, not the method. No vendor plug-in is loaded (``litert-npu`` is the
NPU accelerator)."""
from __future__ import annotations

import importlib.util
import platform
from importlib.metadata import PackageNotFoundError, version

from qat_harness.devices.base import Availability, Role
from qat_harness.devices.litert.cpu import LiteRTDevice

COMPILED_WORKER = "qat_harness.devices.litert.compiled_worker"
RUNTIME = "ai-edge-litert"


def compiled_model_available() -> bool:
    """CompiledModel ships in ai-edge-litert (2.x), never in tflite_runtime."""
    try:
        return importlib.util.find_spec("ai_edge_litert.compiled_model") is not None
    except ModuleNotFoundError:
        return False


def litert_version() -> str | None:
    try:
        return version(RUNTIME)
    except PackageNotFoundError:
        return None


class LiteRTCompiledDevice(LiteRTDevice):
    """CompiledModel on LiteRT's CPU accelerator."""
    name = "litert"
    description = "host CPU, LiteRT CompiledModel API (CPU accelerator, XNNPACK)"
    role = Role.HOST_CPU
    kernel = "xnnpack"
    worker = COMPILED_WORKER
    api = "compiled"

    def probe(self) -> Availability:
        if self.option_error:
            return Availability(False, self.option_error)
        package = self.runtime_package
        # a named folder is looked into; the installed package is found as Python would import it
        if package is None or not ((package.folder / "compiled_model.py").is_file() if self.runtime_root
                                   else compiled_model_available()):
            return Availability(False, f"LiteRT's CompiledModel API is not importable: pip install {RUNTIME}")
        return Availability(True, f"{package.module} {package.version} CompiledModel on {platform.machine()}",
                            {"runtime": package.module, "api": "CompiledModel"})

    def describe(self) -> dict:
        described = {**super().describe(), "api": "CompiledModel", "accelerator": "CPU"}
        described.pop("resolver", None)  # the Interpreter's op resolver: CompiledModel has none
        return described

    def _request(self, **kw) -> dict:
        return {**self._common_request(), **kw}
