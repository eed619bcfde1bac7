"""A private mount namespace in which ``/proc/cpuinfo`` reads like an ARM CPU's.

The cpuinfo library inside LiteRT's aarch64 build parses ``/proc/cpuinfo``; under QEMU user
mode it would read the host's x86 file and LiteRT crashes creating an interpreter. The process
that will become the emulator enters a mount namespace of its own (as root: a mount namespace;
otherwise an unprivileged user namespace mapping only its own user and group, where the kernel
allows one), makes its mounts private (nothing propagates back to the host) and bind-mounts an
ARM cpuinfo file over ``/proc/cpuinfo``. Only this process and what it executes see it.

Two system calls, ``unshare`` and ``mount``, made through ctypes: Python 3.11 has neither,
and util-linux's ``unshare`` would need a shell to run ``mount`` before the emulator.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
CPUINFO = "/proc/cpuinfo"


class NamespaceDenied(Exception):
    """The kernel refused the namespace or the mount: what is missing, in one line."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(libc, flags: int) -> int:
    return 0 if libc.unshare(flags) == 0 else ctypes.get_errno()


def enter(cpuinfo: Path) -> str:
    """Enter a private mount namespace with ``cpuinfo`` over ``/proc/cpuinfo``; returns how
    ('mount namespace' or 'user namespace'). Must be called while the process has one thread.
    Raises NamespaceDenied."""
    libc = _libc()
    how, error = "mount namespace", errno.EPERM
    if os.geteuid() == 0:
        error = _unshare(libc, CLONE_NEWNS)
    if os.geteuid() != 0 or error:
        how = "user namespace"
        uid, gid = os.getuid(), os.getgid()
        error = _unshare(libc, CLONE_NEWUSER | CLONE_NEWNS)
        if error:
            raise NamespaceDenied(_denied_reason(error))
        # map only ourselves: files the emulated process writes stay ours
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise NamespaceDenied(f"making the private namespace's mounts private failed: "
                              f"{os.strerror(ctypes.get_errno())}")
    if libc.mount(str(cpuinfo).encode(), CPUINFO.encode(), None, MS_BIND, None) != 0:
        raise NamespaceDenied(f"bind-mounting an ARM cpuinfo over {CPUINFO} failed in a {how}: "
                              f"{os.strerror(ctypes.get_errno())}")
    return how


def _denied_reason(error: int) -> str:
    """Why no namespace could be made, with what to change."""
    text = os.strerror(error)
    limits = {path: _read(path) for path in ("/proc/sys/user/max_user_namespaces",
                                             "/proc/sys/kernel/unprivileged_userns_clone",
                                             "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")}
    if limits["/proc/sys/user/max_user_namespaces"] == "0":
        fix = "user namespaces are disabled (sysctl user.max_user_namespaces=0)"
    elif limits["/proc/sys/kernel/unprivileged_userns_clone"] == "0":
        fix = "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=1 enables them)"
    elif limits["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] == "1":
        fix = ("AppArmor restricts unprivileged user namespaces "
               "(sysctl kernel.apparmor_restrict_unprivileged_userns=0 lifts it)")
    else:
        fix = "the kernel or a container's seccomp policy forbids it (in Docker: --privileged or a seccomp profile "\
              "allowing unshare)"
    return (f"no permission for a mount namespace ({text}): {fix}; or run as root. It is needed to show "
            f"LiteRT an ARM {CPUINFO}")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None
