"""Keras 2 is the harness's private business: installing qat-harness (whose pytest plugin is
loaded in every pytest run) must leave `tf.keras` alone for everybody else's tests."""
import sys

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import os
import sys


def test_a_keras3_project_keeps_keras3(request):
    assert request.config.pluginmanager.hasplugin("qat_harness"), "the plugin must be loaded"
    import tensorflow as tf
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    assert tf.keras.__version__.startswith("3."), tf.keras.__version__


def test_the_harness_fixtures_do_not_switch_keras(qat_device, request):
    from qat_harness import pipeline  # noqa: F401 - the run machinery, imported in this process
    import tensorflow as tf
    assert qat_device.name == "cpu"
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    assert tf.keras.__version__.startswith("3."), tf.keras.__version__
"""


def test_tf_keras_stays_keras3_in_a_users_pytest_run(pytester, monkeypatch):
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)  # this suite's own process set it
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_parent_side_modules_import_no_tensorflow():
    """The CLI, the run, the layer matrix and the devices run Keras 2 work in child
    processes only: importing them loads neither TensorFlow nor tf_keras."""
    import subprocess

    code = ("import sys, qat_harness.cli, qat_harness.pipeline, qat_harness.layers.matrix, "
            "qat_harness.pytest_plugin, qat_harness.devices.registry as r; r.entries(); "
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_keras2_enter_refuses_after_keras3_loaded():
    import subprocess

    code = ("import os; os.environ.pop('TF_USE_LEGACY_KERAS', None); import tensorflow; "
            "from qat_harness.core import keras2\n"
            "try:\n    keras2.enter()\nexcept RuntimeError as e:\n    print('refused:', e)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "refused: TensorFlow was imported before Keras 2 was selected" in out.stdout, out.stderr[-500:]


@pytest.mark.parametrize("module", ["qat_harness.build.builder", "qat_harness.layers.child"])
def test_children_get_keras2(module):
    from qat_harness.core.child import child_environment

    assert child_environment()["TF_USE_LEGACY_KERAS"] == "1"
