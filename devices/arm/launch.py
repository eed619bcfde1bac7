"""Host side of an ``arm-cpu-*`` child (``core.child.run_child`` starts it like any worker):
enter a private mount namespace whose ``/proc/cpuinfo`` describes the emulated core
(``namespace``), then become QEMU running the root's aarch64 CPython on ``guest.py``, which
runs LiteRT's worker (``devices.litert.worker``) on the same request and response files.

``exec``, not a child: the process the harness started is the emulator, so a timeout kills it
and the guest's parent is the harness (``core.child.exit_with_parent`` works unchanged).

``python -m qat_harness.devices.arm.launch --check LEVEL`` only enters the namespace and says
whether that worked (the device's probe).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from qat_harness.devices.arm import namespace
from qat_harness.devices.arm.levels import LEVELS
from qat_harness.devices.arm.root import ArmRoot

ROOT_ENV = "QAT_HARNESS_ARM_ROOT_PATH"
LEVEL_ENV = "QAT_HARNESS_ARM_LEVEL"
QEMU_ENV = "QAT_HARNESS_ARM_QEMU"
GUEST = Path(__file__).with_name("guest.py")
WORKER = "qat_harness.devices.litert.worker"
#: what the aarch64 process must not inherit: the host's loader settings
HOST_ONLY = ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH", "PYTHONHOME")


def package_folders() -> dict[str, str]:
    """Where this installation's packages are (the source tree maps one import name onto
    several folders): the guest imports them from there, never from a current folder."""
    folders = {}
    for name in ("qat_harness", "qat_harness.core", "qat_harness.devices"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{name} is not an installed package")
        folders[name] = list(spec.submodule_search_locations)[0]
    return folders


def guest_command(qemu: str, root: ArmRoot, worker_args: list[str]) -> list[str]:
    # -I: no user site, no PYTHON* variables, no script folder on sys.path; -S: not even the
    # root's site-packages (guest.py puts exactly the root's wheel folder there)
    return [qemu, "-L", str(root.path), str(root.python), "-I", "-S", str(GUEST), json.dumps(package_folders()),
            str(root.site_packages), WORKER, *worker_args]


def write_cpuinfo(level: str, folder: Path) -> Path:
    path = folder / "cpuinfo"
    path.write_text(LEVELS[level].cpuinfo(os.cpu_count() or 1))
    return path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        try:
            how = namespace.enter(write_cpuinfo(argv[1], Path.cwd()))
        except namespace.NamespaceDenied as exc:
            print(exc)
            return 1
        print(f"{how}: {Path(namespace.CPUINFO).read_text().splitlines()[0]}")
        return 0
    level = os.environ[LEVEL_ENV]
    try:
        namespace.enter(write_cpuinfo(level, Path.cwd()))
    except namespace.NamespaceDenied as exc:
        Path(argv[1]).write_text(json.dumps({"error": str(exc), "kind": "missing-tool"}))
        return 0
    env = {k: v for k, v in os.environ.items() if k not in HOST_ONLY}
    env["QEMU_CPU"] = LEVELS[level].qemu_cpu
    command = guest_command(os.environ[QEMU_ENV], ArmRoot(Path(os.environ[ROOT_ENV])), argv)
    os.execve(command[0], command, env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
