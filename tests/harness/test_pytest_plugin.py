"""The --device option: parametrization, markers, and fail-fast for absent devices."""
import pytest

pytest_plugins = ["pytester"]

SAMPLE = """
import pytest

def test_runs_on(qat_device_name):
    assert qat_device_name in ("cpu", "cpu-ref", "null")

@pytest.mark.only_device("cpu-ref")
def test_only_ref(qat_device_name):
    assert qat_device_name == "cpu-ref"

@pytest.mark.skip_device("cpu", reason="not on the fast path")
def test_not_cpu(qat_device):
    assert qat_device.name != "cpu"
"""


def test_default_device_is_cpu(pytester):
    pytester.makepyfile(SAMPLE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*test_runs_on?cpu? PASSED*"])


def test_repeated_device_option_parametrizes(pytester):
    pytester.makepyfile(SAMPLE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--device=cpu", "--device=cpu-ref")
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(["*test_only_ref?cpu-ref? PASSED*", "*test_not_cpu?cpu-ref? PASSED*"])


def test_unknown_device_is_a_usage_error(pytester):
    pytester.makepyfile(SAMPLE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--device=warp-drive")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--device=warp-drive was requested but is not available: unknown device*"])


@pytest.mark.parametrize("name", ["nnapi", "edgetpu"])
def test_absent_hardware_fails_fast_naming_what_is_missing(pytester, monkeypatch, name):
    from qat_harness.devices import registry

    for var in ("ADB_SERVER_SOCKET", "ANDROID_SERIAL", "QAT_EDGETPU_SIMULATOR", "QAT_EDGETPU_COMPILER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "1")  # nothing listens there
    availability = registry.create(name).probe()
    assert not availability.available
    pytester.makepyfile(SAMPLE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--device={name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--device={name} was requested but is not available*"])
    assert availability.reason[:40] in result.stderr.str()
