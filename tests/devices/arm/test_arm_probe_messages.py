"""What the arm-cpu devices' probe says when something is missing: each cause in one line,
with what to do (fakes for the machine's state; the namespace's system call refused in-process)."""
import errno
import json

import pytest

from qat_harness.devices.arm import device as arm_device
from qat_harness.devices.arm import namespace
from qat_harness.devices.arm import root as arm_root
from qat_harness.devices.arm.device import ArmDotprodDevice


@pytest.fixture
def empty_root(tmp_path, monkeypatch):
    monkeypatch.setenv(arm_root.ROOT_ENV, str(tmp_path / "arm-root"))
    return tmp_path / "arm-root"


@pytest.fixture
def complete_root(empty_root):
    empty_root.mkdir()
    arm_root.Manifest(arm_root.wheel_versions(), ["libc6_2.36_arm64.deb"], 1.0, 1).write(
        empty_root / arm_root.MANIFEST)
    return empty_root


def _which(present):
    return lambda tool: f"/usr/bin/{tool}" if tool in present else None


def test_no_qemu_names_the_package(empty_root, monkeypatch):
    monkeypatch.setattr(arm_device.shutil, "which", _which({"apt-get", "dpkg-deb"}))
    reason = ArmDotprodDevice().probe().reason
    assert not ArmDotprodDevice().probe().available
    assert reason == ("no QEMU user-mode emulator for aarch64 (qemu-aarch64-static or qemu-aarch64): "
                      "apt-get install qemu-user-static")


def test_root_not_set_up_says_which_command(empty_root, monkeypatch):
    monkeypatch.setattr(arm_device.shutil, "which", _which({"qemu-aarch64-static", "apt-get", "dpkg-deb"}))
    availability = ArmDotprodDevice().probe()
    assert not availability.available
    assert availability.reason == (f"the aarch64 root is not set up ({empty_root}): run `qat-harness setup arm-cpu`")


def test_not_debian_is_said_when_the_root_cannot_be_built(empty_root, monkeypatch):
    monkeypatch.setattr(arm_device.shutil, "which", _which({"qemu-aarch64-static"}))
    monkeypatch.setattr(arm_root.shutil, "which", _which({"qemu-aarch64-static"}))
    reason = ArmDotprodDevice().probe().reason
    assert "not set up" in reason
    assert reason.endswith("but not a Debian system: the aarch64 root is built with Debian's apt-get and "
                           "dpkg-deb, which this machine lacks")


def test_a_root_for_other_versions_asks_for_setup_again(complete_root, monkeypatch):
    monkeypatch.setattr(arm_device.shutil, "which", _which({"qemu-aarch64-static", "apt-get", "dpkg-deb"}))
    manifest = json.loads((complete_root / arm_root.MANIFEST).read_text())
    manifest["wheels"]["numpy"] = "1.0.0"
    (complete_root / arm_root.MANIFEST).write_text(json.dumps(manifest))
    reason = ArmDotprodDevice().probe().reason
    assert "numpy 1.0.0" in reason and reason.endswith("run `qat-harness setup arm-cpu`")


def test_no_permission_for_a_mount_namespace(tmp_path, monkeypatch):
    """The kernel refusing the namespace (a container's seccomp, a sysctl) is said with the fix."""
    monkeypatch.setattr(namespace, "_unshare", lambda libc, flags: errno.EPERM)
    monkeypatch.setattr(namespace, "_read", lambda path: {"/proc/sys/kernel/unprivileged_userns_clone": "0"}
                        .get(path, "1000"))
    with pytest.raises(namespace.NamespaceDenied) as caught:
        namespace.enter(tmp_path / "cpuinfo")
    assert str(caught.value).startswith("no permission for a mount namespace (Operation not permitted): "
                                        "unprivileged user namespaces are disabled "
                                        "(sysctl kernel.unprivileged_userns_clone=1 enables them); or run as root")


def test_the_probe_relays_the_namespace_check(complete_root, monkeypatch):
    """With QEMU and the root in place, what remains is the namespace: the probe runs the real
    check in a child (the launcher's ``--check``) and says its line."""
    monkeypatch.setattr(arm_device.shutil, "which", _which({"qemu-aarch64-static", "apt-get", "dpkg-deb"}))
    monkeypatch.setattr(arm_device, "qemu_version", lambda qemu: "7.2")
    availability = ArmDotprodDevice().probe()
    problem = ArmDotprodDevice()._namespace_problem()
    if problem is not None:
        assert availability.reason == problem and problem.startswith("no permission for a mount namespace")
    else:
        assert availability.available
        assert availability.reason.startswith("LiteRT aarch64 under QEMU 7.2 as a Cortex-A76 (QEMU_CPU=cortex-a76)")
        assert "numerics only, no latency" in availability.reason


def test_not_linux(monkeypatch):
    monkeypatch.setattr(arm_device.platform, "system", lambda: "Darwin")
    assert ArmDotprodDevice().probe().reason == "QEMU user-mode emulation runs on Linux; this is Darwin"
