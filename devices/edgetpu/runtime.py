"""Where the Edge TPU runtime and devices are: the libedgetpu shared library, Coral devices
on USB / PCIe, and the ``device`` strings libedgetpu accepts.

Also a child-process entry point (``python -m qat_harness.devices.edgetpu.runtime req resp``,
run through ``core.child``) that loads libedgetpu to ask its version and list its devices:
loading a vendor runtime never happens in the harness's own process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

from qat_harness.core.child import serve_once

#: USB ids of the Coral USB Accelerator: before the runtime loads its firmware it enumerates
#: as Global Unichip 1a6e:089a, afterwards as Google 18d1:9302.
USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}
SYSFS_USB = Path("/sys/bus/usb/devices")
DEV_DIR = Path("/dev")
RUNTIME_ENV = "QAT_EDGETPU_LIBRARY"

#: libedgetpu's file name per OS, as Coral's pycoral loads it.
LIBRARY_NAMES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
_KNOWN_DIRS = {
    "Linux": ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
              "/usr/lib/arm-linux-gnueabihf", "/usr/lib", "/usr/local/lib"],
    "Darwin": ["/usr/local/lib", "/opt/homebrew/lib"],
    "Windows": [r"C:\Windows\System32", r"C:\Program Files\EdgeTPU"],
}
RUNTIME_INSTALL = {
    "Linux": ("`sudo apt-get install libedgetpu1-std` from Coral's apt repository "
              "(https://coral.ai/software/#edgetpu-runtime), then unplug and replug the USB Accelerator"),
    "Darwin": ("download the Edge TPU runtime for macOS from https://coral.ai/software/"
               "#edgetpu-runtime and run its install.sh"),
    "Windows": ("download the Edge TPU runtime for Windows from https://coral.ai/software/"
                "#edgetpu-runtime and run its install.bat"),
}
PCIE_INSTALL = ("for a PCIe / M.2 Edge TPU `sudo apt-get install gasket-dkms libedgetpu1-std` "
                "from Coral's apt repository and reboot (https://coral.ai/docs/m2/get-started/)")


def library_name(system: str | None = None) -> str:
    return LIBRARY_NAMES.get(system or platform.system(), "libedgetpu.so.1")


def find_runtime() -> str | None:
    """Path (or loadable name) of libedgetpu, or None. $QAT_EDGETPU_LIBRARY overrides."""
    override = os.environ.get(RUNTIME_ENV)
    if override:
        return override if Path(override).is_file() else None
    system = platform.system()
    name = library_name(system)
    for folder in _KNOWN_DIRS.get(system, []):
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    found = ctypes.util.find_library("edgetpu")
    return found or None


def runtime_install_hint(system: str | None = None) -> str:
    return RUNTIME_INSTALL.get(system or platform.system(), RUNTIME_INSTALL["Linux"])


# --- device strings ----------------------------------------------------------------------

_DEVICE_RE = re.compile(r"^(?P<kind>usb|pci)?(?::(?P<index>\d+))?$")


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """A libedgetpu ``device`` option: kind None = any Edge TPU, index None = any of that kind."""
    kind: str | None
    index: int | None

    @property
    def option(self) -> str | None:
        """The value for ``load_delegate(..., {'device': ...})``, None for 'any'."""
        if self.kind is None and self.index is None:
            return None
        return f"{self.kind or ''}" + (f":{self.index}" if self.index is not None else "")

    def __str__(self) -> str:
        return self.option or "any"


def parse_device(text: str | None) -> DeviceSpec:
    """Validate a device string as libedgetpu / pycoral define them: None or '' (any Edge TPU),
    ':N' (the N-th of any kind), 'usb', 'usb:N', 'pci', 'pci:N'. Raises ValueError."""
    if text is None or text.strip() == "":
        return DeviceSpec(None, None)
    m = _DEVICE_RE.match(text.strip().lower())
    if not m or (m.group("kind") is None and m.group("index") is None):
        raise ValueError(f"invalid Edge TPU device string {text!r}: use usb, usb:N, pci, pci:N "
                         "or :N (N counts from 0)")
    index = int(m.group("index")) if m.group("index") is not None else None
    return DeviceSpec(m.group("kind"), index)


# --- devices present ---------------------------------------------------------------------

@dataclasses.dataclass
class FoundDevice:
    kind: str            # 'usb' or 'pci'
    path: str            # sysfs folder or /dev/apex_N
    ids: str = ""        # 'vendor:product' for USB
    accessible: bool = True
    node: str = ""       # the device node the runtime opens

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def find_usb_devices(sysfs: Path | None = None) -> list[FoundDevice]:
    """Coral USB Accelerators seen in sysfs (Linux), with whether this user can open them."""
    root = sysfs or SYSFS_USB
    found: list[FoundDevice] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            vendor = (entry / "idVendor").read_text().strip().lower()
            product = (entry / "idProduct").read_text().strip().lower()
        except OSError:
            continue
        if (vendor, product) not in USB_IDS:
            continue
        node, accessible = "", True
        try:
            bus = int((entry / "busnum").read_text())
            dev = int((entry / "devnum").read_text())
            node = f"/dev/bus/usb/{bus:03d}/{dev:03d}"
            if Path(node).exists():
                accessible = os.access(node, os.R_OK | os.W_OK)
        except (OSError, ValueError):
            pass
        found.append(FoundDevice("usb", str(entry), f"{vendor}:{product}", accessible, node))
    return found


def find_pci_devices(dev_dir: Path | None = None) -> list[FoundDevice]:
    """PCIe / M.2 Edge TPUs: the gasket/apex driver creates /dev/apex_N."""
    root = dev_dir or DEV_DIR
    try:
        nodes = sorted(root.glob("apex_*"))
    except OSError:
        return []
    return [FoundDevice("pci", str(n), "", os.access(n, os.R_OK | os.W_OK), str(n)) for n in nodes]


def select(devices: list[FoundDevice], spec: DeviceSpec) -> FoundDevice | None:
    """The device ``spec`` names among those found (libedgetpu's numbering: per kind, in
    enumeration order; ':N' counts across kinds)."""
    pool = [d for d in devices if spec.kind is None or d.kind == spec.kind]
    index = spec.index or 0
    return pool[index] if index < len(pool) else None


def has_google_pycoral() -> bool:
    """Google's pycoral (from Coral's own repository) has ``pycoral/utils/edgetpu.py``; the
    unrelated PyPI project of the same name does not. Checked on disk, without importing."""
    try:
        spec = importlib.util.find_spec("pycoral")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(p) / "utils" / "edgetpu.py").is_file() for p in spec.submodule_search_locations)


# --- child side: ask the runtime itself --------------------------------------------------

class _EdgeTpuDevice(ctypes.Structure):  # struct edgetpu_device in libedgetpu's edgetpu_c.h
    _fields_ = [("type", ctypes.c_int), ("path", ctypes.c_char_p)]


def query_runtime(library: str) -> dict:
    """Runtime version and devices, from Google's pycoral when present, else from libedgetpu's
    C API (edgetpu_version, edgetpu_list_devices). Runs in a child process."""
    if has_google_pycoral():
        try:
            from pycoral.utils import edgetpu as pe  # type: ignore
            return {"source": "pycoral", "version": pe.get_runtime_version(),
                    "devices": [dict(d) for d in pe.list_edge_tpus()]}
        except Exception:  # noqa: BLE001 - fall back to the C API below
            pass
    lib = ctypes.CDLL(library)
    lib.edgetpu_version.restype = ctypes.c_char_p
    version = lib.edgetpu_version().decode("utf-8", "replace")
    lib.edgetpu_list_devices.restype = ctypes.POINTER(_EdgeTpuDevice)
    lib.edgetpu_list_devices.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
    lib.edgetpu_free_devices.argtypes = [ctypes.POINTER(_EdgeTpuDevice)]
    n = ctypes.c_size_t(0)
    ptr = lib.edgetpu_list_devices(ctypes.byref(n))
    devices = []
    for i in range(n.value):
        kind = {0: "pci", 1: "usb"}.get(ptr[i].type, str(ptr[i].type))
        devices.append({"type": kind, "path": (ptr[i].path or b"").decode("utf-8", "replace")})
    if n.value:
        lib.edgetpu_free_devices(ptr)
    return {"source": "libedgetpu", "version": version, "devices": devices}


def _query(req: dict) -> dict:
    try:
        return query_runtime(req["library"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a DeviceError
        return {"error": f"{type(exc).__name__}: {exc}"[:400], "kind": "missing-tool"}


if __name__ == "__main__":
    sys.exit(serve_once(_query))
