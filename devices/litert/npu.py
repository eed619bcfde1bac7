"""The ``litert-npu`` device: LiteRT's CompiledModel on its NPU accelerator, through a vendor's
dispatch library and compiler plug-in (``--litert-npu-vendor``), with LiteRT's CPU allowed for
whatever the vendor does not take — the way apps ship it, and the way silent fallback happens.

ai-edge-litert 2.3.0 ships one dispatch that runs off a phone: Intel OpenVINO's. The harness
runs it with OpenVINO's CPU as the graph backend, the same LiteRT → dispatch → OpenVINO path an
Intel NPU takes, float layers asked in f32 (``INFERENCE_PRECISION_HINT``; the plug-in refuses a
setting OpenVINO does not know, so it is applied). Its libraries link one OpenVINO release by
name (``libopenvino.so.2631``: OpenVINO 2026.3); they are found in the installed ``openvino``
package or in ``--litert-openvino-libs`` and loaded by path in the child.

How much of the graph the vendor took is a fact of every result (claim C3): the op counts of
LiteRT's partitioner, whether the vendor's compiler plug-in was applied, and
``is_fully_accelerated()``; see ``delegation``. The other vendors' plug-ins need an SDK or a
phone that is not here: their probe names it in one line.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from pathlib import Path

from qat_harness.devices.base import Availability, Delegation, Device, DeviceError, DeviceOption, Role
from qat_harness.devices.litert.compiled import LiteRTCompiledDevice, compiled_model_available, litert_version

DEFAULT_VENDOR = "intel_openvino"
OPENVINO_LIBS_ENV = "QAT_HARNESS_LITERT_OPENVINO_LIBS"
#: what OpenVINO's CPU plug-in is asked to compute float layers in: asked, so that the answer
#: never depends on the CPU (its own default is bf16 where avx512_bf16 or AMX is, f32 elsewhere)
REQUESTED_PRECISION = "f32"
_OPENVINO_SONAME = re.compile(rb"libopenvino(?:_[a-z_]+)?\.so\.\d+")


@dataclasses.dataclass(frozen=True)
class Vendor:
    name: str        # its folder under ai_edge_litert/vendors and the option's value
    label: str
    #: what it takes to run it, said when its dispatch is not in the wheel
    needs: str


VENDORS = {v.name: v for v in (
    Vendor("intel_openvino", "Intel OpenVINO", "OpenVINO 2026.3 (pip install 'openvino==2026.3.1')"),
    Vendor("qualcomm", "Qualcomm QNN", "a Snapdragon phone's QNN HTP runtime; compiling ahead of time needs "
                                       "Qualcomm's QAIRT SDK (pip install ai-edge-litert-sdk-qualcomm)"),
    Vendor("mediatek", "MediaTek NeuroPilot", "a MediaTek phone's NeuroPilot runtime; compiling ahead of time needs "
                                              "the NeuroPilot SDK (pip install ai-edge-litert-sdk-mediatek)"),
    Vendor("google_tensor", "Google Tensor", "a Pixel's Tensor TPU runtime; compiling ahead of time needs the "
                                             "Tensor ML SDK (pip install ai-edge-litert-sdk-google-tensor)"),
    Vendor("samsung", "Samsung Exynos", "an Exynos phone's runtime; compiling ahead of time needs Samsung's SDK "
                                        "(pip install ai-edge-litert-sdk-samsung-nightly)"),
)}


def vendors_dir() -> Path | None:
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "vendors"


def vendor_library(vendor: str, kind: str) -> Path | None:
    """The vendor's ``dispatch`` or ``compiler`` library in the installed wheel, if it ships one."""
    base = vendors_dir()
    if base is None:
        return None
    prefix = "libLiteRtDispatch_" if kind == "dispatch" else "libLiteRtCompilerPlugin_"
    return next(iter(sorted((base / vendor / kind).glob(prefix + "*.so"))), None)


def needed_openvino_libraries(*libraries: Path) -> list[str]:
    """The OpenVINO libraries (by versioned name) the given libraries link: read from their
    dynamic string tables, so nothing is loaded to find out."""
    names: set[str] = set()
    for library in libraries:
        names.update(m.decode() for m in _OPENVINO_SONAME.findall(library.read_bytes()))
    return sorted(names)


def installed_openvino_libs() -> Path | None:
    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "libs"


def delegation(vendor: str, acc: dict) -> Delegation:
    """What the vendor ran, from the worker's ``acceleration`` facts.

    Fully accelerated means: the vendor's compiler plug-in was applied, its partitions hold
    every op of the model, and LiteRT says so. A plug-in that was not applied leaves the whole
    model to LiteRT's CPU even when ``is_fully_accelerated()`` reads True (LiteRT's own warning
    in ai_edge_litert/environment.py): that is counted as nothing taken, never as full."""
    label = VENDORS[vendor].label if vendor in VENDORS else vendor
    model_ops = sum(acc["model_ops"].values())
    total = acc["ops_total"] if acc["ops_total"] is not None else model_ops
    applied = bool(acc["plugins_applied"])
    taken: int | None = acc["ops_selected"] if applied and acc["ops_selected"] is not None else 0
    if taken == 0:
        status = "none"
        why = (f"{label}'s compiler plug-in was not applied" if not applied else f"{label} took no op")
        if acc["fully_accelerated"]:
            why += "; is_fully_accelerated() still said True (silent CPU fallback)"
        fallback = [(op, "ran on LiteRT's CPU (XNNPACK)") for op in acc["model_ops"]]
    elif taken < total:
        status = "partial"
        why = f"{total - taken} of {total} ops ran on LiteRT's CPU (silent fallback)"
        fallback = [(f"{total - taken} op(s)", f"not taken by {label}: ran on LiteRT's CPU (XNNPACK)")]
    elif not acc["fully_accelerated"]:  # never seen: the two signals disagree, so how much is unknown
        status, taken = "partial", None
        why = f"{label}'s partitions hold every op, yet LiteRT says the model is not fully accelerated"
        fallback = [("unknown", why)]
    else:
        status, why, fallback = "full", f"every op compiled by {label}", []
    return Delegation(backend=f"LiteRT NPU dispatch ({label})", ops_total=total, ops_delegated=taken,
                      fallback=fallback,
                      details={"status": status, "why": why, "fully_accelerated": acc["fully_accelerated"],
                               "partitions": acc["partitions"], "plugins_applied": acc["plugins_applied"],
                               "model_ops": acc["model_ops"], "compile_messages": acc["refusals"]})


class LiteRTNpuDevice(LiteRTCompiledDevice):
    """CompiledModel on the NPU accelerator through a vendor dispatch, CPU fallback allowed."""
    name = "litert-npu"
    description = ("LiteRT CompiledModel on the NPU accelerator through a vendor dispatch "
                   "(--litert-npu-vendor; here Intel OpenVINO's, run on this CPU)")
    role = Role.ACCELERATOR
    kernel = "openvino"
    runs_on_host = True  # the OpenVINO dispatch's graph backend is this CPU
    #: the vendor's dispatch and compiler plug-in are found in the installed package only
    benchmark_runtimes = Device.benchmark_runtimes
    options = (
        DeviceOption("vendor", f"vendor dispatch of LiteRT's NPU accelerator: {', '.join(VENDORS)}",
                     flag="--litert-npu-vendor", default=DEFAULT_VENDOR),
        DeviceOption("openvino_libs", "folder holding the OpenVINO libraries LiteRT's Intel dispatch links "
                                      "(libopenvino.so.2631, OpenVINO 2026.3); default: the openvino package's",
                     flag="--litert-openvino-libs", env=OPENVINO_LIBS_ENV),
    )

    def __init__(self, num_threads: int = 2, vendor: str = DEFAULT_VENDOR, openvino_libs: str | None = None):
        super().__init__(num_threads)
        self.vendor = str(vendor).strip().lower().replace("-", "_")
        openvino_libs = openvino_libs or os.environ.get(OPENVINO_LIBS_ENV)
        self.openvino_libs = Path(openvino_libs) if openvino_libs else None

    def _runtime(self) -> tuple[dict | None, str]:
        """The worker's ``vendor`` request, or None and exactly what is missing (one line)."""
        if not compiled_model_available():
            return None, "LiteRT's CompiledModel API is not importable: pip install ai-edge-litert"
        vendor = VENDORS.get(self.vendor)
        if vendor is None:
            return None, f"unknown LiteRT NPU vendor '{self.vendor}': use one of {', '.join(VENDORS)}"
        dispatch, compiler = vendor_library(vendor.name, "dispatch"), vendor_library(vendor.name, "compiler")
        if dispatch is None or compiler is None:
            missing = "dispatch library" if dispatch is None else "compiler plug-in"
            return None, (f"ai-edge-litert {litert_version()} ships no {vendor.label} {missing}: "
                          f"it needs {vendor.needs}")
        request: dict = {"name": vendor.name, "dispatch_dir": str(dispatch.parent),
                         "compiler_dir": str(compiler.parent)}
        if vendor.name == DEFAULT_VENDOR:
            needed = needed_openvino_libraries(dispatch, compiler)
            folder = self.openvino_libs or installed_openvino_libs()
            absent = [n for n in needed if folder is None or not (folder / n).is_file()]
            if absent:
                found = sorted(p.name for p in folder.glob("libopenvino.so.*")) if folder and folder.is_dir() else []
                where = f"{folder} has {', '.join(found) or 'none'}" if folder else "no openvino package is installed"
                return None, (f"LiteRT's Intel dispatch links {', '.join(absent)} ({vendor.needs}); {where} "
                              "(or give --litert-openvino-libs DIR)")
            # the core library first: the front end links it
            request.update(graph_backend="CPU", configs={"INFERENCE_PRECISION_HINT": REQUESTED_PRECISION},
                           preload=[str(folder / n) for n in sorted(needed, key=len)])  # type: ignore[operator]
        return request, f"{vendor.label} dispatch ({dispatch.name})"

    def probe(self) -> Availability:
        request, said = self._runtime()
        if request is None:
            return Availability(False, said)
        return Availability(True, f"ai-edge-litert {litert_version()} NPU accelerator: {said}, graph backend CPU",
                            {"vendor": self.vendor})

    def describe(self) -> dict:
        described = {**super().describe(), "accelerator": "NPU (CPU fallback allowed)", "vendor": self.vendor}
        if self.vendor == DEFAULT_VENDOR:
            described.update(graph_backend="CPU", inference_precision={
                "float_layers": REQUESTED_PRECISION,
                "int8_layers": "OpenVINO's low-precision transformations: u8/i8 kernels where it takes them"})
        return described

    def _request(self, **kw) -> dict:
        request, said = self._runtime()
        if request is None:
            raise DeviceError(said, kind="missing-tool")
        return {**super()._request(**kw), "vendor": request}

    def _delegation(self, ops: dict) -> Delegation | None:
        return delegation(self.vendor, ops) if ops else None
