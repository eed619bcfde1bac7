"""pytest plugin (entry point ``pytest11``): ``--device`` selects where conformance tests run.

Modelled on playwright-pytest's ``--browser``: ``--device`` may be given several times; tests
that use the ``qat_device_name`` / ``qat_device`` fixtures are parametrized once per device;
markers ``only_device("x")`` and ``skip_device("x", reason=...)`` narrow a test. Device options
come from ``--device-option NAME=VALUE`` (checked against what the chosen devices declare) and
can be overridden per project by redefining the ``qat_device_options`` fixture. A device that
was asked for and is absent stops the session at once with the reason (exit code 4), never a
silently all-skipped green run. Probes are cached for the session.

This module is imported by every pytest run where qat-harness is installed, so it claims
nothing of other projects: every fixture it defines is named ``qat_*`` (a project's own
``device_name`` or ``device`` fixture keeps its value), and each option is ``--qat-*``, with
the README's short name (``--device``, ...) added only when no plugin or conftest.py of the
project took it. It imports no TensorFlow, selects no Keras version and touches no device
unless a test asks for one: the harness's Keras 2 work runs in its own child processes (see
``core.keras2``)."""
from __future__ import annotations

import argparse

import pytest

DEFAULT_DEVICE = "cpu"
_probe_cache: dict[str, object] = {}


GROUP = "qat-harness"
# (the README's short name, argparse keywords); each option is also --qat-<short name>.
OPTIONS = (
    ("--device", dict(action="append", dest="qat_devices", default=None, metavar="NAME",
                      help="device to run conformance tests on (repeatable; default: cpu). "
                           "See `qat-harness devices`.")),
    ("--device-option", dict(action="append", dest="qat_device_options", default=[], metavar="NAME=VALUE",
                             help="an option of the chosen devices, e.g. serial=R58M123 (repeatable)")),
    ("--conformance-models", dict(dest="qat_models", default="digits_cnn",
                                  help="comma-separated models for the conformance tests: registry names, "
                                       "int8.tflite[=float.tflite], Keras files, module:function "
                                       "(default: digits_cnn)")),
    ("--conformance-dataset", dict(dest="qat_dataset", default=None,
                                   help="evaluation data for the conformance models: an image folder or an .npz")),
    ("--conformance-labels", dict(dest="qat_labels", default=None,
                                  help="class names, one per line, for an image-folder dataset")),
    ("--strict-perf", dict(action="store_true", dest="qat_strict_perf",
                           help="a FAIL of a latency claim (C2/C3) fails the test instead of xfail")),
)


def _namespaced(short: str) -> str:
    return "--qat-" + short.removeprefix("--")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "qat-harness device conformance")
    for short, keywords in OPTIONS:
        group.addoption(_namespaced(short), **keywords)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """The short names are added once the project's conftest.py files have added their
    options: a project with an option of that name keeps it (an entry-point plugin loads
    before them, so adding ``--device`` at once made such a project's pytest crash)."""
    result = yield
    group = parser.getgroup(GROUP)
    free = object()
    for short, keywords in OPTIONS:
        if early_config.getoption(short, default=free) is not free:
            continue   # the project's own option; ours stays reachable under its --qat- name
        try:
            group.addoption(short, **{**keywords, "help": f"same as {_namespaced(short)}"})
        except (argparse.ArgumentError, ValueError):
            continue   # taken by an option that declared no default
    return result


def requested_devices(config: pytest.Config) -> list[str]:
    names = config.getoption("qat_devices", default=None) or [DEFAULT_DEVICE]
    return list(dict.fromkeys(names))


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
    explicit = config.getoption("qat_devices", default=None)
    if explicit:
        options = given_device_options(config)
        for name in explicit:
            availability = probe_device(name, options.get(name, {}))
            if not availability.available:
                raise pytest.UsageError(f"--device={name} was requested but is not available: "
                                        f"{availability.reason}")


def probe_device(name: str, options: dict | None = None):
    """Availability of a device, probed once per session."""
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
def qat_device(qat_device_name: str, qat_device_options):
    """The adapter for the device this test instance runs on."""
    from qat_harness.devices import registry

    availability = probe_device(qat_device_name, qat_device_options.get(qat_device_name, {}))
    if not availability.available:
        pytest.skip(f"{qat_device_name} not available: {availability.reason}")
    dev = registry.create(qat_device_name, **qat_device_options.get(qat_device_name, {}))
    yield dev
    dev.close()


@pytest.fixture(scope="session")
def qat_device_role(qat_device_name: str):
    """The role of the device (host CPU, accelerator, oracle): which claims apply to it."""
    from qat_harness.devices import registry

    return registry.device_class(qat_device_name).role


def _model_entries(config: pytest.Config) -> list[str]:
    return [m.strip() for m in config.getoption("qat_models").split(",") if m.strip()]


@pytest.fixture(scope="session")
def qat_conformance_models(pytestconfig: pytest.Config) -> list[str]:
    """The models' names as the report gives them (a file's name for a file)."""
    from qat_harness.core.errors import UsageError
    from qat_harness.sources import parse_models

    try:
        return [s.label for s in parse_models(_model_entries(pytestconfig))]
    except UsageError as exc:
        raise pytest.UsageError(f"--conformance-models: {exc}") from None


@pytest.fixture(scope="session")
def qat_conformance_report(tmp_path_factory, qat_conformance_models, pytestconfig, qat_device_options):
    """One conformance run over the selected models and every requested device, shared by
    the session's conformance tests; returns the run's report (``record.tree.RunReport``)."""
    from qat_harness import pipeline

    out = tmp_path_factory.mktemp("conformance")
    opts = pipeline.RunOptions(models=_model_entries(pytestconfig),
                               devices=requested_devices(pytestconfig), out=out, eval_limit=None,
                               device_options=qat_device_options,
                               dataset=pytestconfig.getoption("qat_dataset"),
                               labels=pytestconfig.getoption("qat_labels"))
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
