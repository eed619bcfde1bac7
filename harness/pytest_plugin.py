"""pytest plugin (entry point ``pytest11``): ``--device`` selects where conformance tests run.

Modelled on playwright-pytest's ``--browser``: ``--device`` may be given several times; tests
that use the ``qat_device_name`` / ``qat_device`` fixtures are parametrized once per device;
markers ``only_device("x")`` and ``skip_device("x", reason=...)`` narrow a test. Device options
come from ``--device-option NAME=VALUE`` (checked against what the chosen devices declare) and
can be overridden per project by redefining the ``qat_device_options`` fixture. A device that
was asked for and is absent stops the session at once with the reason (exit code 4), never a
silently all-skipped green run. The requested devices are opened once for the session
(``DeviceSet``) and closed at its end. The conformance run takes every option of
``qat-harness run`` as ``--qat-<name>`` (``--qat-threads``, ``--qat-recipes``, ...), defined once
for both in ``option_definitions``.

This module is imported by every pytest run where qat-harness is installed, so it claims
nothing of other projects: every fixture it defines is named ``qat_*`` (a project's own
``device_name`` or ``device`` fixture keeps its value), and each option is ``--qat-*``, with
the README's short name (``--device``, ...) added only when no plugin or conftest.py of the
project took it. It imports no TensorFlow, selects no Keras version and touches no device
unless a test asks for one: the harness's Keras 2 work runs in its own child processes (see
``core.keras2``)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from qat_harness.option_definitions import (
    PLUGIN_PREFIX,
    Flag,
    add_run_options,
    dest,
    device_names,
    run_option_flags,
    run_options,
)

if TYPE_CHECKING:
    from qat_harness.options import RunOptions

_probe_cache: dict[str, object] = {}


GROUP = "qat-harness"
#: the plugin's own options, beside the run's (``option_definitions.RUN_OPTIONS``, as
#: ``--qat-<name>``): device options as NAME=VALUE, and how a latency FAIL ends a test
OWN_OPTIONS = (
    Flag("--qat-device-option", dict(action="append", dest="qat_device_options", default=[], metavar="NAME=VALUE",
                                     help="an option of the chosen devices, e.g. serial=R58M123 (repeatable)"),
         short="--device-option"),
    Flag("--qat-strict-perf", dict(action="store_true", dest="qat_strict_perf",
                                   help="a FAIL of a latency claim (C2/C3) fails the test instead of xfail"),
         short="--strict-perf"),
)


def _flags() -> list[Flag]:
    return [*run_option_flags(PLUGIN_PREFIX), *OWN_OPTIONS]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "qat-harness device conformance")
    add_run_options(group.addoption, PLUGIN_PREFIX)
    for flag in OWN_OPTIONS:
        group.addoption(flag.name, **flag.keywords)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """The short names are added once the project's conftest.py files have added their
    options: a project with an option of that name keeps it (an entry-point plugin loads
    before them, so adding ``--device`` at once made such a project's pytest crash)."""
    result = yield
    group = parser.getgroup(GROUP)
    free = object()
    for flag in _flags():
        if flag.short is None or early_config.getoption(flag.short, default=free) is not free:
            continue   # the project's own option; ours stays reachable under its --qat- name
        try:
            group.addoption(flag.short, **{**flag.keywords, "help": f"same as {flag.name}"})
        except (argparse.ArgumentError, ValueError):
            continue   # taken by an option that declared no default
    return result


def _value(config: pytest.Config) -> Callable[[str], Any]:
    """The parsed value of a run option, by its key (``option_definitions.RUN_OPTIONS``)."""
    return lambda key: config.getoption(dest(key, PLUGIN_PREFIX))


def conformance_options(config: pytest.Config, out: Path, device_options: dict[str, dict]) -> RunOptions:
    """The options of the session's conformance run, from the ``--qat-*`` run options."""
    return run_options(_value(config), out, device_options)


def requested_devices(config: pytest.Config) -> list[str]:
    return device_names(config.getoption(dest("devices", PLUGIN_PREFIX), default=None))


def given_device_options(config: pytest.Config) -> dict[str, dict]:
    """``--device-option`` values, split per requested device (typed by each option's
    declaration); an option none of them declares is a usage error."""
    from qat_harness.core.errors import UsageError
    from qat_harness.devices import registry

    raw: dict[str, str] = {}
    for item in config.getoption("qat_device_options", default=None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--device-option {item!r}: expected NAME=VALUE")
        raw[key.strip().replace("-", "_")] = value
    names = requested_devices(config)
    try:
        per_device = registry.split_options(names, raw)
        for name, options in per_device.items():
            if not options:
                continue
            declared = {o.name: o for o in registry.options_of(name)}
            per_device[name] = {k: declared[k].type(v) for k, v in options.items()}
    except (UsageError, ValueError) as exc:
        raise pytest.UsageError(f"--device-option: {exc}") from None
    return per_device


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "only_device(name, ...): run this test only on these devices")
    config.addinivalue_line("markers", "skip_device(name, reason=''): never run this test on this device")
    explicit = config.getoption(dest("devices", PLUGIN_PREFIX), default=None)
    if explicit:
        options = given_device_options(config)
        for name in explicit:
            availability = probe_device(name, options.get(name, {}))
            if not availability.available:
                raise pytest.UsageError(f"--device={name} was requested but is not available: "
                                        f"{availability.reason}")


def probe_device(name: str, options: dict | None = None):
    """Availability of a device, probed once (the fail-fast check of ``--device``)."""
    if name not in _probe_cache:
        from qat_harness.devices import registry

        _probe_cache[name] = registry.probe(name, **(options or {}))
    return _probe_cache[name]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qat_device_name" in metafunc.fixturenames:
        metafunc.parametrize("qat_device_name", requested_devices(metafunc.config), scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        device = callspec.params.get("qat_device_name") if callspec else None
        if device is None:
            continue
        only = item.get_closest_marker("only_device")
        if only and device not in only.args:
            item.add_marker(pytest.mark.skip(reason=f"only runs on {', '.join(only.args)}"))
        for mark in item.iter_markers("skip_device"):
            if device in mark.args:
                item.add_marker(pytest.mark.skip(reason=mark.kwargs.get("reason") or f"not on {device}"))


@pytest.fixture(scope="session")
def qat_device_options(pytestconfig: pytest.Config) -> dict[str, dict]:
    """Options per device name; override this fixture in a conftest.py to set them in code."""
    return given_device_options(pytestconfig)


@pytest.fixture(scope="session")
def qat_device_set(pytestconfig: pytest.Config, qat_device_options):
    """The requested devices, opened once for the session and closed at its end
    (``devices.device_set.DeviceSet``); an unusable one is left out, with its probe."""
    from qat_harness.core.errors import UsageError
    from qat_harness.devices.device_set import DeviceSet

    try:
        devices = DeviceSet.open(requested_devices(pytestconfig), _value(pytestconfig)("threads"),
                                 require_available=False, per_device_options=qat_device_options)
    except UsageError as exc:
        pytest.fail(f"qat-harness devices: {exc}", pytrace=False)
    with devices:
        yield devices


@pytest.fixture(scope="session")
def qat_device(qat_device_name: str, qat_device_set):
    """The adapter for the device this test instance runs on."""
    if qat_device_name not in qat_device_set:
        pytest.skip(f"{qat_device_name} not available: {qat_device_set.unavailable()[qat_device_name]}")
    return qat_device_set[qat_device_name]


@pytest.fixture(scope="session")
def qat_device_role(qat_device_name: str):
    """The role of the device (host CPU, accelerator, oracle): which claims apply to it."""
    from qat_harness.devices import registry

    return registry.device_class(qat_device_name).role


@pytest.fixture(scope="session")
def qat_conformance_models(pytestconfig: pytest.Config) -> list[str]:
    """The models' names as the report gives them (a file's name for a file)."""
    from qat_harness.core.errors import UsageError
    from qat_harness.sources import parse_models

    try:
        return [s.label for s in parse_models(pytestconfig.getoption(dest("models", PLUGIN_PREFIX)))]
    except UsageError as exc:
        raise pytest.UsageError(f"--conformance-models: {exc}") from None


@pytest.fixture(scope="session")
def qat_conformance_report(tmp_path_factory, qat_conformance_models, pytestconfig, qat_device_options):
    """One conformance run over the selected models and every requested device, shared by
    the session's conformance tests; returns the run's report (``record.tree.RunReport``)."""
    from qat_harness import pipeline
    from qat_harness.core.errors import UsageError

    try:
        opts = conformance_options(pytestconfig, tmp_path_factory.mktemp("conformance"), qat_device_options)
    except UsageError as exc:
        pytest.fail(f"qat-harness: {exc}", pytrace=False)
    report = pipeline.run(opts)
    if report.run.errors:
        pytest.fail("; ".join(f"{e.model}: {e.error}" for e in report.run.errors), pytrace=False)
    return report.run


def assert_verdict(claim, strict_perf: bool = False) -> None:
    """Map a claim verdict onto a test outcome: PASS/WARN pass (WARN with a warning), SKIP
    skips, FAIL/ERROR fail; a latency claim's FAIL is an xfail unless --strict-perf, because it
    is a measurement of this hardware, not a defect of the model or the harness."""
    import warnings

    from qat_harness import claims
    from qat_harness.results import Verdict

    text = f"{claim.id} {claim.model} on {claim.device}: {claim.verdict.value}: {claim.reason}"
    if claim.verdict is Verdict.SKIP:
        pytest.skip(text)
    if claim.verdict is Verdict.WARN:
        warnings.warn(text, stacklevel=2)
        return
    if claim.verdict is Verdict.FAIL and claims.get(claim.id).measures_hardware and not strict_perf:
        pytest.xfail(text)
    assert claim.verdict is Verdict.PASS, text
