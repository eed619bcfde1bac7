"""The run's options, defined once for the command line and the pytest plugin.

As pytest-benchmark does with its ``add_*_options(addoption, prefix)``: ``add_run_options``
adds every option of a run through the ``addoption`` it is given, argparse's ``add_argument``
with no prefix for ``qat-harness run`` / ``nightly`` and pytest's ``group.addoption`` with
``qat-`` for the plugin; ``run_options`` turns the parsed values, whichever of them parsed them,
into the run's ``RunOptions``, refusing a value the run cannot take in one line.

The plugin keeps the names it had before the two shared a table (``--qat-device``, repeatable,
and ``--qat-conformance-models`` / ``-dataset`` / ``-labels``): those rows carry its spelling,
and only those get the plugin's short name (``--device``, ...). Device options are spelt by each
front end (one flag per declared option on the command line, ``--qat-device-option NAME=VALUE``
in pytest) and reach ``run_options`` already split per device. Nothing here imports TensorFlow or
a device: the plugin reads this table in every pytest run."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qat_harness.core.errors import UsageError
from qat_harness.shard import parse_shard

if TYPE_CHECKING:
    from qat_harness.options import DeviceOptionValue, RunOptions
    from qat_harness.sources import ModelSource

DEFAULT_MODELS = ["digits_cnn", "mobilenet_v2"]
DEFAULT_INPUT_SIZES = {"mobilenet_v2": 160}  # the default run must fit in a few minutes on 2 cores
DEFAULT_DEVICES = ["cpu"]
PLUGIN_PREFIX = "qat-"


# -- value types (argparse ``type=``): a bad value is one line naming the flag ----------------------
def csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def at_least(minimum: float, kind: type[int] | type[float] = int) -> Callable[[str], float]:
    """A number of ``kind`` no smaller than ``minimum`` (0 is never taken to mean 'unset')."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value < minimum:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} >= {minimum}"
    return parse


def models_list(value: str) -> list[str]:
    models = csv_list(value)
    if not models:
        raise argparse.ArgumentTypeError("is empty; give at least one model (e.g. digits_cnn)")
    return models


def history_location(value: str) -> Any:
    """``--history``: a SQLite file's path, ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``
    (a ``history_store.HistoryLocation``; a bad URL's error never repeats it: it may hold a password)."""
    from qat_harness.history_store import locate  # SQLAlchemy is imported only when --history is given

    try:
        return locate(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_history_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The one ``--history`` of every command that reads or records the nightly history."""
    parser.add_argument("--history", type=history_location, default=None, metavar="URL",
                        help=f"{what}: a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB (a "
                             f"password is best kept in ~/.pgpass or PGPASSWORD, not the URL)")


# -- the table --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spelling:
    """An option as one front end spells it: the flag after ``--`` and the prefix, and its
    argparse keywords (type, default, help, ...)."""
    flag: str
    keywords: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class RunOption:
    key: str                          # the value's name; a front end keeps it under dest(key, prefix)
    keywords: Mapping[str, Any]
    plugin: Spelling | None = None    # the plugin's own earlier spelling, kept with its short name

    def spelling(self, prefix: str) -> Spelling:
        """The plugin's spelling under a prefix (only the plugin adds one), else the command line's."""
        if prefix and self.plugin is not None:
            return self.plugin
        return Spelling(self.key.replace("_", "-"), self.keywords)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One option as a front end adds it: ``addoption(name, **keywords)``; ``short`` is the
    plugin's short name, added only when no other plugin or conftest.py has taken it."""
    name: str
    keywords: Mapping[str, Any]
    short: str | None = None


RUN_OPTIONS = (
    RunOption("models", dict(
        type=models_list, default=None,
        help="comma-separated models: registry names, .tflite files (int8.tflite or int8.tflite=float.tflite), "
             "Keras .h5 / .keras / SavedModel folders, or module:function factories "
             f"(default: {','.join(DEFAULT_MODELS)})"),
        plugin=Spelling("conformance-models", dict(
            type=models_list, default="digits_cnn",
            help="comma-separated models for the conformance tests: registry names, int8.tflite[=float.tflite], "
                 "Keras files, module:function (default: digits_cnn)"))),
    RunOption("float_model", dict(default=None,
                                  help="the float .tflite reference of a single .tflite --models entry")),
    RunOption("devices", dict(type=csv_list, default=DEFAULT_DEVICES, help="comma-separated devices (default: cpu)"),
              plugin=Spelling("device", dict(
                  action="append", default=None, metavar="NAME",
                  help="device to run conformance tests on (repeatable; default: cpu). "
                       "See `qat-harness devices`."))),
    RunOption("threads", dict(type=at_least(1), default=2, help="interpreter threads (default: 2)")),
    RunOption("input_size", dict(type=at_least(1), default=None, help="input size for the application models")),
    RunOption("weights", dict(default=None, help="weights file (.h5) for an application model")),
    RunOption("dataset", dict(default=None,
                              help="evaluation data: an image folder (class/xxx.jpg) or an .npz with x (and y)"),
              plugin=Spelling("conformance-dataset", dict(
                  default=None, help="evaluation data for the conformance models: an image folder or an .npz"))),
    RunOption("labels", dict(default=None,
                             help="class names, one per line (line index = output index), for an image folder"),
              plugin=Spelling("conformance-labels", dict(
                  default=None, help="class names, one per line, for an image-folder dataset"))),
    RunOption("preprocess", dict(default=None,
                                 help="how images become model input: mobilenet [-1,1], unit [0,1], raw 0..255, "
                                      "caffe, torch (default: the model's own, or read from its input "
                                      "quantization)")),
    RunOption("task", dict(default=None, metavar="TASK",
                           help="what the model does, where its outputs do not say: classification (outputs "
                                "without a softmax judged on top-1), regression or dense (judged on their "
                                "fidelity to float) (default: read from each output's shape, op and the labels)")),
    RunOption("limit_per_class", dict(type=at_least(1), default=None, help="images read per class of --dataset")),
    RunOption("eval_limit", dict(type=at_least(1), default=None, help="cap on evaluation examples")),
    RunOption("warmup", dict(type=at_least(0), default=5, help="warm-up runs per model before timing")),
    RunOption("min_runs", dict(type=at_least(1), default=30, help="at least this many timed runs per model")),
    RunOption("min_seconds", dict(type=at_least(0.0, float), default=1.0, help="and at least this long timing")),
    RunOption("cache_dir", dict(type=Path, default=None,
                                help="artifact cache (default: $QAT_HARNESS_CACHE or ~/.cache/qat-harness)")),
    RunOption("no_cache", dict(action="store_true", help="rebuild artifacts even if cached")),
    RunOption("skip_bitwidth", dict(action="store_true",
                                    help="skip the C6 probe (4-bit QAT has no TFLite deployment path)")),
    RunOption("recipes", dict(default=None, metavar="NAMES",
                              help="other quantization recipes applied to the float model, judged on every kernel: "
                                   "int4-weight, int4-dynamic, int4-blockwise, 16x8, fp16-weights, int8-dynamic, "
                                   "'default' (int4-weight,int4-blockwise) or 'all' (default: none)")),
    RunOption("no_trace", dict(action="store_true",
                               help="do not trace a model x device whose int8/float agreement is not a PASS")),
    RunOption("cross_check", dict(action="store_true",
                                  help="also time the files with LiteRT's native benchmark tool and put its medians "
                                       "beside the harness's (a difference above 5%% is flagged)")),
    RunOption("junit_xml", dict(type=Path, default=None, metavar="FILE",
                                help="also write the verdicts as JUnit XML: one test case per claim x model x device")),
    RunOption("shard", dict(type=parse_shard, default=None, metavar="K/N",
                            help="run only piece K of N of the plan (its model x device pairs dealt round robin), "
                                 "for N CI jobs; `qat-harness merge` makes one report of the N reports")),
)


def dest(key: str, prefix: str = "") -> str:
    """Where a front end's parser keeps the value of the run option ``key``."""
    return prefix.replace("-", "_") + key


def run_option_flags(prefix: str = "") -> list[Flag]:
    flags = []
    for option in RUN_OPTIONS:
        spelling = option.spelling(prefix)
        short = "--" + spelling.flag if prefix and option.plugin is not None else None
        flags.append(Flag(f"--{prefix}{spelling.flag}", {**spelling.keywords, "dest": dest(option.key, prefix)},
                          short))
    return flags


def add_run_options(addoption: Callable[..., Any], prefix: str = "") -> None:
    """Add every run option through ``addoption`` (argparse's ``add_argument``, pytest's
    ``addoption``), each flag named ``--<prefix><name>``."""
    for flag in run_option_flags(prefix):
        addoption(flag.name, **flag.keywords)


# -- parsed values -> RunOptions ----------------------------------------------------------------------
def run_options(value: Callable[[str], Any], out: Path,
                device_options: Mapping[str, Mapping[str, DeviceOptionValue]]) -> RunOptions:
    """The run's options from parsed values: ``value(key)`` is the value of the run option
    ``key`` (a ``RUN_OPTIONS`` key) as the front end parsed it, ``device_options`` the options
    of each device. Every value is checked before anything runs (one-line UsageError)."""
    from qat_harness.devices.base import BenchSettings
    from qat_harness.options import RunOptions
    from qat_harness.sources import parse_models

    models = DEFAULT_MODELS if value("models") is None else value("models")
    sources = parse_models(models, value("float_model"))  # a wrong entry fails before anything runs
    weights, dataset, labels, preprocess = (value(k) for k in ("weights", "dataset", "labels", "preprocess"))
    check_weights(sources, weights)
    if dataset and not Path(dataset).exists():
        raise UsageError(f"dataset folder not found: {dataset}")
    if labels and not Path(labels).is_file():
        raise UsageError(f"labels file not found: {labels}")
    if preprocess:
        from qat_harness.models.datasets import preprocess as preprocessing

        preprocessing(preprocess)
    if weights and not Path(weights).exists():
        raise UsageError(f"weights file not found: {weights}")
    junit_xml = _junit_target(value("junit_xml"), out)
    recipes = recipe_names(value("recipes"))
    devices = device_names(value("devices"))
    return RunOptions(
        models=models, devices=devices, out=out, num_threads=value("threads"), input_size=value("input_size"),
        default_input_sizes=DEFAULT_INPUT_SIZES if value("models") is None else {},
        weights=weights, dataset=dataset, labels=labels, preprocess=preprocess, float_model=value("float_model"),
        task=value("task"), limit_per_class=value("limit_per_class"), eval_limit=value("eval_limit"),
        bench=BenchSettings(warmup_runs=value("warmup"), min_runs=value("min_runs"),
                            min_seconds=value("min_seconds"), num_threads=value("threads")),
        cache_dir=value("cache_dir"), use_cache=not value("no_cache"),
        device_options={n: dict(device_options.get(n, {})) for n in devices},
        check_bit_widths=not value("skip_bitwidth"), cross_check=value("cross_check"),
        recipes=recipes, trace=not value("no_trace"), junit_xml=junit_xml, shard=value("shard"))


def device_names(given: list[str] | None) -> list[str]:
    """The devices asked for, each once (default: ``DEFAULT_DEVICES``); a device family's
    name (``arm-cpu``) stands for each of its default members."""
    from qat_harness.devices.arm.levels import expand_family

    return expand_family(list(dict.fromkeys(given or DEFAULT_DEVICES)))


def recipe_names(text: str | None) -> list[str]:
    """``--recipes`` as recipe names (``recipes.catalog``); a bad name is a UsageError."""
    from qat_harness.recipes.catalog import parse_recipes

    try:
        return parse_recipes(text)
    except ValueError as exc:
        raise UsageError(f"--recipes: {exc}") from None


def check_weights(sources: Iterable[ModelSource], weights: str | None) -> None:
    """A weights file is refused before the run when a registry model cannot take it."""
    from qat_harness.models import registry
    from qat_harness.preparation import check_weights_apply
    from qat_harness.sources import SourceKind

    for source in sources:
        if source.kind is SourceKind.REGISTRY:
            check_weights_apply(registry.get(source.label), weights)



def _junit_target(path: Path | None, out: Path) -> Path | None:
    from qat_harness.record.report import Report
    from qat_harness.writers.junit import check_target

    return check_target(path, out, Report.FILES) if path is not None else None
