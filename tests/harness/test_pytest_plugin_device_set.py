"""The plugin opens the requested devices once for the session (``DeviceSet``) and closes them
when the session ends; every test on a device gets that same opened device."""
pytest_plugins = ["pytester"]

CONFTEST = """
import json
from pathlib import Path

SEEN = {}

def pytest_sessionfinish(session):
    # the session's fixtures are torn down by now: a closed DeviceSet holds no device
    sets = {id(s): s for s, _device in SEEN.values()}
    Path("seen.json").write_text(json.dumps({
        "sets": len(sets), "open_after_session": [len(s) for s in sets.values()],
        "devices": {name: len({id(d) for _s, d in pairs}) for name, pairs in _by_name().items()}}))

def _by_name():
    by_name = {}
    for (name, _test), pair in SEEN.items():
        by_name.setdefault(name, []).append(pair)
    return by_name
"""

TESTS = """
import pytest
from conftest import SEEN

@pytest.mark.parametrize("test", ["first", "second"])
def test_device(qat_device_name, qat_device, qat_device_set, test):
    SEEN[(qat_device_name, test)] = (qat_device_set, qat_device)
    assert qat_device_set[qat_device_name] is qat_device and qat_device.name == qat_device_name
"""


def test_devices_are_opened_once_per_session_and_closed_at_its_end(pytester):
    import json

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_devices=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--device=cpu", "--device=null")
    result.assert_outcomes(passed=4)
    seen = json.loads((pytester.path / "seen.json").read_text())
    assert seen == {"sets": 1, "open_after_session": [0], "devices": {"cpu": 1, "null": 1}}


def test_devices_the_session_cannot_open_fail_its_tests_in_one_line(pytester):
    pytester.makeconftest("""
import pytest

@pytest.fixture(scope="session")
def qat_device_options():
    return {"cpu": {"no_such_option": 1}}
""")
    pytester.makepyfile("def test_uses(qat_device):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*qat-harness devices:*no_such_option*"])
    assert "Traceback" not in result.stdout.str()
