"""The aarch64 root the ``arm-cpu-*`` devices run in: Debian 12's arm64 CPython 3.11 and the
libraries it needs (``apt-get download`` + ``dpkg-deb -x``), and the aarch64 wheels of the
same ai-edge-litert and numpy versions the harness runs on this machine (``pip download``),
unpacked into a folder of their own. Nothing in it is installed on the system: apt runs with
a private configuration and state (no ``dpkg --add-architecture``, no root needed), and the
packages are only unpacked.

The root is a runtime, not a built artifact: it lives beside the artifact cache
(``$QAT_HARNESS_ARM_ROOT``, else ``~/.cache/qat-harness/arm-root/<versions>``) and is found by
the versions it holds, so a test session's private artifact cache still finds it.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from qat_harness.core.errors import UsageError

ROOT_ENV = "QAT_HARNESS_ARM_ROOT"
#: Debian 12 ships CPython 3.11, the harness's own Python version
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRRORS = ("http://deb.debian.org/debian bookworm main",
                  "http://deb.debian.org/debian-security bookworm-security main")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: CPython 3.11 and the shared libraries it, numpy and LiteRT load (the rest of a Debian
#: system is not needed to run a model)
DEBIAN_PACKAGES = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6",
                   "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0",
                   "liblzma5", "libuuid1", "libcrypt1", "libsqlite3-0")
#: the wheels, at the versions installed beside the harness (the kernels compared are one release's)
WHEELS = ("ai-edge-litert", "numpy")
#: manylinux tags Debian 12's glibc (2.36) runs; pip 23 matches a --platform tag exactly
WHEEL_PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)))
MANIFEST = "manifest.json"
SITE_PACKAGES = Path("opt/qat-harness/site-packages")
PYTHON = Path("usr/bin/python3.11")


def wheel_versions() -> dict[str, str]:
    """The version of each wheel the root must hold: the one installed beside the harness."""
    versions = {}
    for name in WHEELS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(f"{name} is not installed beside the harness: the aarch64 root takes its "
                             "version from it (pip install -e .)") from None
    return versions


def default_root() -> Path:
    given = os.environ.get(ROOT_ENV)
    if given:
        return Path(given)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qat-harness" / "arm-root"
    return base / "-".join(f"{name}-{version}" for name, version in wheel_versions().items())


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a finished root holds (written last: a root without it is incomplete)."""
    wheels: dict[str, str]            # distribution -> version
    debian_packages: list[str]        # the .deb files unpacked (name_version_arch)
    seconds: float
    bytes: int

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        data = json.loads(path.read_text())
        return cls(dict(data["wheels"]), list(data["debian_packages"]), float(data["seconds"]), int(data["bytes"]))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))


@dataclasses.dataclass(frozen=True)
class ArmRoot:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / PYTHON

    @property
    def site_packages(self) -> Path:
        return self.path / SITE_PACKAGES

    def manifest(self) -> Manifest | None:
        try:
            return Manifest.read(self.path / MANIFEST)
        except (OSError, ValueError, KeyError):
            return None

    def problem(self) -> str | None:
        """Why this root cannot run models (None: it can)."""
        manifest = self.manifest()
        if manifest is None:
            return f"the aarch64 root is not set up ({self.path}): run `qat-harness setup arm-cpu`"
        wanted = wheel_versions()
        if manifest.wheels != wanted:
            return (f"the aarch64 root at {self.path} holds {_versions(manifest.wheels)}, the harness runs "
                    f"{_versions(wanted)}: run `qat-harness setup arm-cpu`")
        return None


def _versions(wheels: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in wheels.items())


def debian_tools_problem() -> str | None:
    """What this machine lacks to fetch Debian's arm64 packages (None: nothing)."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        return (f"not a Debian system: the aarch64 root is built with Debian's {' and '.join(missing)}, "
                "which this machine lacks")
    if not DEBIAN_KEYRING.exists():
        return f"Debian's archive keyring is missing ({DEBIAN_KEYRING}): apt-get install debian-archive-keyring"
    return None


def build(root: Path, progress: Callable[[str], None] = lambda message: None) -> Manifest:
    """Fetch and unpack everything into ``root`` (replacing what was there). Raises UsageError
    with one line when a tool is missing or a download fails."""
    problem = debian_tools_problem()
    if problem:
        raise UsageError(problem)
    wanted = wheel_versions()
    start = time.monotonic()
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qat-arm-root-", dir=root.parent) as tmp:
        work, staging = Path(tmp), Path(tmp) / "root"
        progress(f"fetching Debian {DEBIAN_SUITE} arm64 packages")
        debs = _debian_packages(work)
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(staging)], f"unpacking {deb.name}")
        progress(f"fetching the aarch64 wheels of {_versions(wanted)}")
        site = staging / SITE_PACKAGES
        site.mkdir(parents=True)
        for wheel in _wheels(work, wanted):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
        manifest = Manifest(wanted, [deb.name for deb in debs],
                            round(time.monotonic() - start, 1), _size(staging))
        manifest.write(staging / MANIFEST)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    return manifest


def _debian_packages(work: Path) -> list[Path]:
    """Debian's arm64 packages, through apt with a private configuration and state."""
    apt = work / "apt"
    for folder in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / folder).mkdir(parents=True)
    (apt / "status").touch()
    sources = apt / "sources.list"
    sources.write_text("".join(f"deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {line}\n" for line in DEBIAN_MIRRORS))
    options = ["-q", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
               "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/nonexistent",
               "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
               "-o", f"Dir::State::status={apt / 'status'}", "-o", "Debug::NoLocking=1",
               # apt drops to its _apt user to download where it can; the private folders are ours
               "-o", "APT::Sandbox::User=" + _user()]
    _run(["apt-get", *options, "update"], "apt-get update (Debian arm64 package lists)")
    _run(["apt-get", *options, "download", *DEBIAN_PACKAGES], "apt-get download", cwd=apt / "debs")
    return sorted((apt / "debs").glob("*.deb"))


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _wheels(work: Path, wanted: dict[str, str]) -> list[Path]:
    folder = work / "wheels"
    platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
    _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
          "--only-binary=:all:", *platforms, "--python-version", "3.11", "--implementation", "cp",
          "--abi", "cp311", "-d", str(folder), *(f"{name}=={version}" for name, version in wanted.items())],
         "pip download (aarch64 wheels)")
    return sorted(folder.glob("*.whl"))


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()
                 if line.strip() and "is ignored" not in line]
        raise UsageError(f"{what} failed (exit {done.returncode}): {' | '.join(lines[-2:])[:300]}")


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
