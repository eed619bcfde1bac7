"""report.json <-> ``RunReport``: the one reader and the one writer of the run report, for the
run itself, ``--resume``, ``compare``, the nightly history and the pytest plugin.

Versions the way asv's ``util.load_json`` / ``update_json`` do: the file carries
``schema_version``; a file written by an older harness is brought up to date by the ordered
``update_to_N`` migrations (each takes the JSON of version N-1 and returns that of version N), a
file from a newer harness or one that is not a report is refused in one line naming it
(``UsageError``). pydantic checks every field against the typed tree on the way in, so what a
consumer gets is the tree, never a dict to read by key."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from qat_harness.core.errors import UsageError
from qat_harness.record.tree import RunReport
from qat_harness.results import plain

if TYPE_CHECKING:
    from pydantic import TypeAdapter

SCHEMA_VERSION = 2
TOOL = "qat-harness"
REPORT_FILE = "report.json"
#: A report keeps raw latency samples; a file beyond this is not one the harness wrote.
MAX_REPORT_BYTES = 512 << 20

T = TypeVar("T")
Json = dict


@functools.cache
def _adapter(cls: Any) -> TypeAdapter:
    from pydantic import TypeAdapter

    from qat_harness import stats

    adapter: TypeAdapter = TypeAdapter(cls)
    # A measurement type named only under TYPE_CHECKING in the module of a dataclass of the tree
    # is found among the measurement types (``stats``), where every one of them is defined.
    adapter.rebuild(raise_errors=True, _types_namespace=dict(vars(stats)))
    return adapter


def to_json_data(report: RunReport) -> dict:
    """The report as JSON-ready data: each value in its own form (``results.plain``)."""
    return {"schema_version": SCHEMA_VERSION, **plain(report)}


def dump(report: RunReport) -> str:
    return json.dumps(to_json_data(report), indent=2)


def structure(cls: type[T], data: object) -> T:
    """Typed values from JSON-like data handed over by a child process or a device (fields the
    type does not have are left out). Raises ``ValueError`` on a value of the wrong type."""
    return _adapter(cast(type, cls)).validate_python(data)  # a type[T] is hashable, as every class


def load(path: Path) -> RunReport:
    """The report in ``path`` (a report.json, or the folder holding one), migrated to this
    version. Any problem is one ``UsageError`` line naming the file."""
    from qat_harness.core.files import regular_file

    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    regular_file(path, "report", MAX_REPORT_BYTES)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not a report.json: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read report {path}: {exc.strerror or exc}") from None
    return loads(text, str(path))


def loads(text: str, source: str = REPORT_FILE) -> RunReport:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{source} is not a report.json: {exc}") from None
    if not isinstance(data, dict) or data.get("tool") != TOOL or "schema_version" not in data:
        raise UsageError(f"{source} is not a qat-harness report (no tool / schema_version)")
    data = update(data, source)
    from pydantic import ValidationError

    try:
        return structure(RunReport, data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the report"
        raise UsageError(f"{source} is a malformed report: {where}: {first['msg']}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{source} is a malformed report: {exc}") from None


def update(data: Json, source: str = REPORT_FILE) -> Json:
    """``data`` brought from its schema version to ``SCHEMA_VERSION``, one migration at a time."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UsageError(f"{source} is a malformed report: schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise UsageError(f"{source} was written by a newer qat-harness (report schema {version}); "
                         f"this one reads up to schema {SCHEMA_VERSION}: upgrade qat-harness")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        try:
            data = MIGRATIONS[target](data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source} is a malformed report (schema {version}): "
                             f"{type(exc).__name__}: {exc}") from None
        data["schema_version"] = target
    return data


# -- migrations: update_to_N takes version N-1's JSON and returns version N's -----------------

_BENCH_KEYS = ("blocks", "cross_check", "ceiling")


def update_to_2(data: Json) -> Json:
    """Schema 1 (until the typed report tree) to 2: a device's timing details keep their three
    known keys (blocks, cross-check, ceiling) beside ``device``, what the device said; the
    environment of reports from before library versions were recorded gets an empty list of
    them; a comparison with the reference kernels from before it named its output and domain
    names them (int8 steps of the model's first output)."""
    data = dict(data)
    env = data.get("environment")
    if isinstance(env, dict):
        data["environment"] = {"libraries": {}, **env}
    data["models"] = {name: _model_2(m) for name, m in (data.get("models") or {}).items()}
    data["notes"] = data.get("notes") or []
    return data


def _model_2(model: Json) -> Json:
    model = dict(model)
    tflite = model.get("tflite") or {}
    first_output = next((t["outputs"][0]["name"] for t in tflite.values()
                         if isinstance(t, dict) and t.get("outputs") and t["inputs"][0]["dtype"] != "float32"), "")
    devices = {}
    for name, section in (model.get("devices") or {}).items():
        section = dict(section)
        bench = section.get("bench_details")
        if isinstance(bench, dict):
            section["bench_details"] = {**{k: bench[k] for k in _BENCH_KEYS if k in bench},
                                        "device": {k: v for k, v in bench.items() if k not in _BENCH_KEYS}}
        for key in ("vs_reference_kernels",):
            diff = section.get(key)
            if isinstance(diff, dict) and "domain" not in diff:
                section[key] = {"output": first_output, "domain": "int8 steps", **diff}
        devices[name] = section
    model["devices"] = devices
    return model


MIGRATIONS: dict[int, Callable[[Json], Json]] = {2: update_to_2}
