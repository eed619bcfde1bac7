"""Devices are plug-ins: a third-party package registers a device class in the entry-point
group `qat_harness.devices` and it shows up in `qat-harness devices`, takes its own options
and runs in `qat-harness run`, without a line changed in this repository."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qat_harness.core.errors import UsageError
from qat_harness.devices import registry
from qat_harness.devices.base import Role

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
CLI = [sys.executable, "-c", "import sys; from qat_harness.cli import main; sys.exit(main())"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}


def _cli(*args, timeout=600):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=_env(), timeout=timeout)


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    registry.refresh()
    yield
    registry.refresh()


def test_the_acme_plugin_is_ten_lines_of_code():
    code = [line for line in (PLUGINS / "acme_device.py").read_text().splitlines() if line.strip()]
    assert len(code) <= 16


def test_entry_point_device_is_discovered_with_role_and_options(plugin_path):
    assert "acme-cpu" in registry.names()
    cls = registry.device_class("acme-cpu")
    assert cls.role is Role.HOST_CPU and [o.name for o in cls.options] == ["acme_level"]
    dev = registry.create("acme-cpu", num_threads=1, acme_level=3)
    assert dev.describe()["acme_level"] == 3 and dev.probe().available


def test_unknown_option_is_refused_not_swallowed(plugin_path):
    with pytest.raises(UsageError, match="has no option serial"):
        registry.create("acme-cpu", serial="X")
    with pytest.raises(UsageError, match="applies to none of the devices cpu.*it is an option of acme-cpu"):
        registry.split_options(["cpu"], {"acme_level": 2})


def test_a_plugin_that_cannot_import_is_listed_with_its_error(plugin_path):
    entry = registry.entries()["broken-npu"]
    assert entry.device_class is None and "acme_npu_sdk" in entry.load_error
    assert not registry.probe("broken-npu").available
    with pytest.raises(UsageError, match="cannot be loaded.*acme_npu_sdk"):
        registry.device_class("broken-npu")


def test_builtin_devices_register_through_the_same_group():
    import importlib.metadata

    names = {ep.name for ep in importlib.metadata.entry_points(group="qat_harness.devices")}
    assert {"cpu", "cpu-ref", "null", "nnapi", "android-cpu", "android-gpu", "edgetpu", "openvino"} <= names


def test_devices_command_lists_the_plugin_and_the_broken_one():
    out = _cli("devices", timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "available" in rows["acme-cpu"] and "host-cpu" in rows["acme-cpu"]
    assert "unavailable" in rows["broken-npu"]
    assert "acme_npu_sdk" in out.stdout


@pytest.mark.slow
@pytest.mark.heavy   # a whole conformance run; the plug-in's registry path is test_layers' in CI
def test_the_plugin_runs_in_a_conformance_run(tmp_path):
    out = _cli("run", "--models", "digits_cnn", "--devices", "acme-cpu", "--acme-level", "3",
               "--out", str(tmp_path), "--skip-bitwidth", "--min-runs", "5", "--min-seconds", "0.1",
               "--warmup", "1", "--fail-on", "never")
    assert out.returncode == 0, out.stderr[-800:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["devices"]["acme-cpu"]["acme_level"] == 3
    judged = {c["id"]: c["verdict"] for c in report["claims"] if c["device"] == "acme-cpu"}
    assert judged["A2-agreement"] == "PASS" and "C2-cpu-latency" in judged


def test_an_option_for_a_device_not_in_the_run_is_a_usage_error(tmp_path):
    out = _cli("run", "--models", "digits_cnn", "--devices", "cpu", "--acme-level", "3",
               "--out", str(tmp_path), timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("qat-harness: error: option 'acme_level' applies to none")
