"""``setup``: one-time set-up of a device that needs it. ``qat-harness setup arm-cpu`` builds the
aarch64 root the ``arm-cpu-*`` devices run in (``devices.arm.root``) and then probes them, so
that what is still missing (QEMU, the permission for a mount namespace) is said at once."""
from __future__ import annotations

import argparse

from qat_harness.commands.errors import EXIT_OK
from qat_harness.core.errors import UsageError

TARGETS = ("arm-cpu",)


def add_parser(sub) -> None:
    p = sub.add_parser("setup", help="one-time set-up of a device (arm-cpu: the aarch64 root, from "
                                     "Debian's and PyPI's packages)")
    p.add_argument("target", choices=TARGETS, help="what to set up")
    p.add_argument("--force", action="store_true", help="rebuild even when it is already set up")


def cmd_setup(args: argparse.Namespace) -> int:
    from qat_harness.devices.arm import root as arm_root
    from qat_harness.devices.arm.device import LEVEL_DEVICES
    from qat_harness.devices.arm.levels import DEFAULT_LEVELS, device_name

    root = arm_root.ArmRoot(arm_root.default_root())
    problem = root.problem()
    if problem is None and not args.force:
        print(f"arm-cpu: the aarch64 root is already set up at {root.path}")
    else:
        manifest = arm_root.build(root.path, progress=lambda message: print(f"arm-cpu: {message}", flush=True))
        print(f"arm-cpu: aarch64 root built at {root.path} in {manifest.seconds:.0f} s "
              f"({manifest.bytes / 1e6:.0f} MB: {len(manifest.debian_packages)} Debian packages, "
              + ", ".join(f"{name} {version}" for name, version in manifest.wheels.items()) + ")")
    unusable = {}
    for level in DEFAULT_LEVELS:
        availability = LEVEL_DEVICES[level]().probe()
        print(f"{device_name(level)}: {'ready' if availability.available else 'missing'}: {availability.reason}")
        if not availability.available:
            unusable[device_name(level)] = availability.reason
    if unusable:
        first = next(iter(unusable.values()))
        raise UsageError(f"arm-cpu is not usable yet: {first}")
    return EXIT_OK
