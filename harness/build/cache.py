"""Content-addressed cache of converted artifacts.

The key is a digest of everything that determines the artifacts: the model name and its
configuration (with the weights file's content digest), the training settings, the versions
of the libraries that train and convert, and the source of the harness modules that do it.
A second identical run finds the key and skips training and conversion."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from qat_harness.core.errors import UsageError

#: Bump when the layout of a cache entry changes.
CACHE_FORMAT = 1
_KEY_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "scikit-learn")
#: The modules whose code determines an artifact, by import name: found wherever the package
#: is installed (editable or wheel), so a change to any of them changes every key.
KEY_MODULES = ("qat_harness.models.reference", "qat_harness.models.registry",
               "qat_harness.models.datasets",
               "qat_harness.build.training", "qat_harness.build.convert",
               "qat_harness.build.artifacts", "qat_harness.build.builder",
               "qat_harness.build.bitwidth")


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


class ArtifactCache:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = (Path(root) if root else default_dir()).expanduser().resolve()
        self.enabled = enabled

    def lookup(self, key: str) -> Path | None:
        entry = self.root / key[:24]
        if self.enabled and (entry / "complete").exists():
            return entry
        return None

    def store(self, key: str, build) -> Path:
        """Call ``build(tmpdir)`` to fill a fresh folder, then move it into place atomically
        (an interrupted build never leaves a half entry that a later run would trust)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=self.root))
        except OSError as exc:
            raise UsageError(f"cache folder {self.root} is not writable: {exc.strerror}") from None
        try:
            build(tmp)
            (tmp / "complete").write_text(key)
            entry = self.root / key[:24]
            if entry.exists():
                shutil.rmtree(entry)
            tmp.rename(entry)
            return entry
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
