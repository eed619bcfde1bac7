"""What a ``--models`` entry names, resolved before anything runs.

Each comma-separated entry is one of:

1. a registry name (``digits_cnn``, ``mobilenet_v2``, ...);
2. a ``.tflite`` file that is already quantized, optionally paired with its float reference as
   ``int8.tflite=float.tflite`` (or ``--float-model`` for a single entry): nothing is trained
   or converted;
3. a Keras 2 (tf_keras) model: an ``.h5`` full model, a SavedModel folder, or a ``.keras``
   archive written by tf_keras; loaded without deserialising code (Lambda layers and custom
   classes are refused: give those as ``module:function``);
4. ``module:function``, a Python factory returning a tf_keras model, or ``(model, dataset)``;
   this imports and runs the user's code, by the user's request;
5. a Keras 3 ``.keras`` archive, translated layer by layer into tf_keras (tfmot quantizes
   nothing else), checked against the original before QAT. A model that cannot be translated
   or quantized is not a wrong entry: it is refused when its turn comes
   (``build.qat_precheck``), as that model's error row, and the run goes on.

Resolution reads files only as data (flatbuffer identifier, HDF5 signature, the JSON inside a
``.keras`` zip); it never imports TensorFlow or runs the user's code. Every problem is a
``UsageError`` of one line.
"""
from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path

from qat_harness.core.errors import UsageError

FACTORY_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FORMS = ("a registry name, a .tflite (int8[=float]), a Keras .h5 / .keras / SavedModel folder, "
         "or module:function")


class SourceKind(str, enum.Enum):
    REGISTRY = "registry"
    TFLITE = "tflite"
    KERAS_FILE = "keras_file"      # tf_keras .h5, .keras or SavedModel: loaded, then QAT
    KERAS3_FILE = "keras3_file"    # Keras 3 .keras: translated to tf_keras, then QAT
    FACTORY = "factory"            # module:function returning a tf_keras model

    @property
    def needs_build(self) -> bool:
        return self is not SourceKind.TFLITE


@dataclasses.dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    label: str                       # the model's name in the report
    entry: str                       # what the user wrote
    path: Path | None = None         # the model file (int8 .tflite for TFLITE)
    float_path: Path | None = None   # TFLITE only: the float reference, if given
    ref: str | None = None           # FACTORY only

    def request(self) -> dict:
        """How the builder child finds the model (``build.builder.build_model``)."""
        return {"kind": self.kind.value, "path": str(self.path) if self.path else None,
                "ref": self.ref, "label": self.label}


def judges_the_toolchain(sources: list[ModelSource]) -> bool:
    """Whether a run of these models judges the guide's toolchain claims (C6's bit-width probe):
    only beside one of the guide's own models, never on a run of a user's files alone."""
    return any(s.kind is SourceKind.REGISTRY for s in sources)


def parse_models(entries: list[str], float_model: str | None = None) -> list[ModelSource]:
    if not entries:
        raise UsageError(f"--models is empty; give {FORMS}")
    if float_model and len(entries) != 1:
        raise UsageError("--float-model pairs with a single --models entry; for several, write "
                         "int8.tflite=float.tflite per entry")
    sources = [parse_entry(e, float_model) for e in entries]
    seen: dict[str, int] = {}
    unique = []
    for s in sources:  # two files of the same name from different folders stay apart
        n = seen.get(s.label, 0)
        seen[s.label] = n + 1
        unique.append(s if n == 0 else dataclasses.replace(s, label=f"{s.label}#{n + 1}"))
    return unique


def parse_entry(entry: str, float_model: str | None = None) -> ModelSource:
    from qat_harness.models import registry

    text = entry.strip()
    if not text:
        raise UsageError(f"an empty --models entry; give {FORMS}")
    if text in registry.REGISTRY:
        if float_model:
            raise UsageError(f"--float-model goes with a .tflite entry, not the registry model {text}")
        return ModelSource(SourceKind.REGISTRY, text, entry)
    if "=" in text:
        int8_text, _, float_text = text.partition("=")
        if float_model:
            raise UsageError(f"{text}: give the float model either after '=' or with --float-model, not both")
        return _tflite(entry, int8_text, float_text)
    if text.lower().endswith(".tflite"):
        return _tflite(entry, text, float_model)
    if float_model:
        raise UsageError(f"--float-model goes with a .tflite entry, not {text}")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise UsageError(f"{text} is a folder but not a SavedModel (no saved_model.pb)")
        return ModelSource(SourceKind.KERAS_FILE, path.name, entry, path=path.resolve())
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".keras"):
        _require_file(path, "Keras model file")
        if suffix == ".keras":
            return _keras_archive(entry, path)
        with path.open("rb") as f:
            signature = f.read(len(_HDF5_SIGNATURE))
        if signature != _HDF5_SIGNATURE:
            raise UsageError(f"{text} is not an HDF5 file (a Keras .h5 model starts with the HDF5 signature)")
        return ModelSource(SourceKind.KERAS_FILE, path.name, entry, path=path.resolve())
    if FACTORY_REF.match(text) and not path.exists():
        return ModelSource(SourceKind.FACTORY, text, entry, ref=text)
    if path.exists() or "/" in text or path.suffix:
        raise UsageError(f"{text}: not a model this harness reads ({FORMS})" if path.exists()
                         else f"model file not found: {text}")
    raise UsageError(f"unknown model '{text}'; known models: {', '.join(registry.REGISTRY)} "
                     f"(or {FORMS})")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")


def _tflite(entry: str, int8_text: str, float_text: str | None) -> ModelSource:
    int8 = Path(int8_text.strip()).expanduser()
    _check_flatbuffer(int8)
    float_path = None
    if float_text:
        float_path = Path(float_text.strip()).expanduser()
        _check_flatbuffer(float_path)
        float_path = float_path.resolve()
    return ModelSource(SourceKind.TFLITE, int8.name, entry, path=int8.resolve(), float_path=float_path)


def _check_flatbuffer(path: Path) -> None:
    """A .tflite file exists and carries the TFL3 identifier; the full read is the inspector's."""
    _require_file(path, "model file")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise UsageError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)")


def _keras_archive(entry: str, path: Path) -> ModelSource:
    from qat_harness.build import config_guard, keras3

    archive = keras3.read_keras_archive(path)
    if archive.is_keras3:  # whether it translates and quantizes is the model's own row of the run
        return ModelSource(SourceKind.KERAS3_FILE, path.name, entry, path=path.resolve())
    code = config_guard.find_code(archive.config)  # the builder child checks again, with tf_keras
    if code is not None:
        raise UsageError(code.message(path.name))
    return ModelSource(SourceKind.KERAS_FILE, path.name, entry, path=path.resolve())
