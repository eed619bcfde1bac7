"""Content-addressed cache of converted artifacts.

The key is a digest of everything that determines the artifacts: the model name and its
configuration (with the weights file's content digest; for a user's model, the digest of the
model the builder child loaded or the factory returned, ``build.fingerprint``), the training
settings, the digest of the data's arrays, the versions of the libraries that train and
convert, and the source of the harness modules that do it.
A second identical run finds the key and skips training and conversion.

An entry is a folder ``<key[:24]>/`` holding the artifacts and ``manifest.json`` (the sha256
of every file). It is built in a private ``.building-<host>-<pid>-*`` folder and renamed into
place in one step, so a reader never sees half an entry, and an entry that another process
already put in place is never removed. An entry whose files do not match their digests
(truncated, edited) is set aside and rebuilt, and the problem is kept in ``problems`` for the
report. Build folders of processes that died (SIGKILL, power loss) are removed on the next
store."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from qat_harness.core.errors import UsageError
from qat_harness.core.files import file_digest

#: Bump when the layout of a cache entry changes (2: manifest.json with a digest per file).
CACHE_FORMAT = 2
MANIFEST = "manifest.json"
BUILDING_PREFIX = ".building-"
TRASH_PREFIX = ".trash-"
#: A build folder whose process cannot be checked (another host) is stale after this long.
STALE_BUILD_S = 3 * 24 * 3600
_KEY_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "scikit-learn")
#: The modules whose code determines an artifact, by import name: found wherever the package
#: is installed (editable or wheel), so a change to any of them changes every key.
KEY_MODULES = ("qat_harness.models.reference", "qat_harness.models.registry",
               "qat_harness.models.datasets",
               "qat_harness.build.training", "qat_harness.build.convert",
               "qat_harness.build.artifacts", "qat_harness.build.builder",
               "qat_harness.build.bitwidth", "qat_harness.build.fingerprint")


def default_dir() -> Path:
    env = os.environ.get("QAT_HARNESS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qat-harness"


def library_versions(names=_KEY_LIBRARIES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def source_digest(modules=KEY_MODULES) -> str:
    """sha256 over the source of ``modules``. A module that cannot be located is an error, not
    a silent empty string: a key that stops noticing code changes serves stale artifacts."""
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            raise RuntimeError(f"cache key: cannot locate the source of {name}")
        h.update(name.encode())
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


def cache_key(parts: dict) -> str:
    payload = {"format": CACHE_FORMAT, "libraries": library_versions(),
               "sources": source_digest(), **parts}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(folder)): {"sha256": file_digest(p), "bytes": p.stat().st_size}
                for p in files}
    (folder / MANIFEST).write_text(json.dumps({"format": CACHE_FORMAT, "files": manifest}, indent=1))


def entry_problem(entry: Path) -> str | None:
    """None for an intact entry, else what is wrong with it, naming the file."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"{entry / MANIFEST} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{entry / MANIFEST} is unreadable ({type(exc).__name__})"
    for name, expected in manifest.items():
        path = entry / name
        try:
            if path.stat().st_size != expected["bytes"] or file_digest(path) != expected["sha256"]:
                return f"{path} does not match its recorded digest (truncated or modified)"
        except OSError as exc:
            return f"{path} cannot be read ({exc.strerror or exc})"
    return None


def _build_folder_prefix() -> str:
    return f"{BUILDING_PREFIX}{socket.gethostname()}-{os.getpid()}-"


def _owner_is_gone(folder: Path) -> bool:
    """Is ``folder`` (a build folder) left behind by a process that no longer runs?"""
    try:
        host, pid = folder.name[len(BUILDING_PREFIX):].rsplit("-", 2)[:2]
        age = time.time() - folder.stat().st_mtime
    except (ValueError, OSError):
        return False
    if host != socket.gethostname() or not pid.isdigit():
        return age > STALE_BUILD_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


class ArtifactCache:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = (Path(root) if root else default_dir()).expanduser().resolve()
        self.enabled = enabled
        self.problems: list[str] = []   # corrupt entries found (and rebuilt), for the report

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems

    def _entry(self, key: str) -> Path:
        return self.root / key[:24]

    def lookup(self, key: str) -> Path | None:
        """The intact entry for ``key``, or None (absent, disabled, or corrupt: then the
        problem is recorded and a store replaces the entry)."""
        entry = self._entry(key)
        if not self.enabled or not entry.is_dir():
            return None
        problem = entry_problem(entry)
        if problem is not None:
            self.problems.append(f"cache entry {entry.name} is corrupt: {problem}; it was rebuilt "
                                 f"(to clear the cache, delete {self.root})")
            return None
        return entry

    def store(self, key: str, build) -> Path:
        """Call ``build(tmpdir)`` to fill a fresh folder, record its digests, then rename it
        into place in one step. If another process put an intact entry there first, that one
        is kept (and returned) and ours is dropped; a corrupt one is set aside first."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_abandoned_builds()
            tmp = Path(tempfile.mkdtemp(prefix=_build_folder_prefix(), dir=self.root))
        except OSError as exc:
            raise UsageError(f"cache folder {self.root} is not writable: {exc.strerror}") from None
        try:
            build(tmp)
            (tmp / "complete").write_text(key)
            write_manifest(tmp)
            return self._publish(tmp, self._entry(key))
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path, entry: Path) -> Path:
        for _attempt in range(3):
            try:
                tmp.rename(entry)  # atomic; fails if entry exists and is not empty
                return entry
            except OSError:
                if not entry.exists():
                    continue  # it was set aside between our attempts: try again
            if entry_problem(entry) is None:
                return entry  # another process stored it first: theirs is as good as ours
            self._set_aside(entry)
        raise RuntimeError(f"cache entry {entry} keeps changing under this process")

    def _set_aside(self, entry: Path) -> None:
        """Move a corrupt entry out of the way in one step (a reader never sees it half
        deleted), then delete it."""
        trash = Path(tempfile.mkdtemp(prefix=TRASH_PREFIX, dir=self.root)) / entry.name
        try:
            entry.rename(trash)
        except FileNotFoundError:
            pass  # someone else set it aside
        shutil.rmtree(trash.parent, ignore_errors=True)

    def _remove_abandoned_builds(self) -> None:
        for folder in self.root.glob(BUILDING_PREFIX + "*"):
            if folder.is_dir() and _owner_is_gone(folder):
                shutil.rmtree(folder, ignore_errors=True)
        for folder in self.root.glob(TRASH_PREFIX + "*"):
            if folder.is_dir() and time.time() - folder.stat().st_mtime > 3600:
                shutil.rmtree(folder, ignore_errors=True)
