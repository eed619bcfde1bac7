"""Device names → adapter factories. Adapters for other hardware register here too."""
from __future__ import annotations

from typing import Callable

from qat_harness.devices.base import Device

_FACTORIES: dict[str, Callable[..., Device]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, factory: Callable[..., Device], description: str) -> None:
    _FACTORIES[name] = factory
    _DESCRIPTIONS[name] = description


def names() -> list[str]:
    _load_builtin()
    return list(_FACTORIES)


def description(name: str) -> str:
    _load_builtin()
    return _DESCRIPTIONS[name]


def create(name: str, **options) -> Device:
    """Build an adapter. ``options`` are adapter-specific (num_threads, serial, device string);
    unknown options are ignored by adapters that do not use them."""
    _load_builtin()
    if name not in _FACTORIES:
        raise KeyError(name)
    return _FACTORIES[name](**options)


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from qat_harness.devices import cpu
    register("cpu", lambda num_threads=2, **_: cpu.CpuDevice(num_threads),
             "host CPU, LiteRT + XNNPACK")
    register("cpu-ref", lambda **_: cpu.CpuRefDevice(),
             "host CPU, LiteRT reference kernels (numeric oracle)")
    register("null", lambda **_: cpu.NullDevice(), "runs nothing: measures harness overhead")
    # Hardware adapters register themselves in their own modules; import them lazily so a
    # missing optional dependency never breaks the CPU path.
    for module in ("qat_harness.devices.nnapi", "qat_harness.devices.edgetpu"):
        try:
            mod = __import__(module, fromlist=["register_devices"])
        except ImportError:
            continue
        mod.register_devices(register)
