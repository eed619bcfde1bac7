"""The plugin is loaded into every pytest run where qat-harness is installed: it must leave
other projects' fixtures and options alone, and claim only tests that ask for its own
``qat_*`` fixtures."""
import pytest

pytest_plugins = ["pytester"]

OWN_FIXTURES = """
import pytest

@pytest.fixture
def device_name():
    return "cuda:0"

@pytest.fixture
def device():
    return "the project's accelerator"
"""

OWN_TESTS = """
def test_keeps_its_device(device_name, device):
    assert device_name == "cuda:0" and device == "the project's accelerator"
"""


@pytest.mark.parametrize("args", [[], ["--device=cpu"]])
def test_a_project_with_its_own_device_fixtures_keeps_them(pytester, args):
    pytester.makeconftest(OWN_FIXTURES)
    pytester.makepyfile(OWN_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_keeps_its_device PASSED*"])   # not [cpu]


def test_a_project_without_them_is_not_given_any(pytester):
    pytester.makepyfile("def test_uses(device_name):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'device_name' not found*"])


def test_a_project_with_its_own_device_option_keeps_it_and_reaches_ours_by_its_qat_name(pytester):
    pytester.makeconftest(OWN_FIXTURES.replace('    return "cuda:0"', '    return pytestconfig.getoption("--device")')
                          .replace("def device_name():", "def device_name(pytestconfig):")
                          + '\ndef pytest_addoption(parser):\n    parser.addoption("--device", default="cuda:0")\n')
    pytester.makepyfile(OWN_TESTS.replace('"cuda:0"', '"cuda:1"') + """
def test_ours(qat_device_name):
    assert qat_device_name == "cpu-ref"
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--device=cuda:1", "--qat-device=cpu-ref")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_ours?cpu-ref? PASSED*"])


def test_the_plugins_own_fixtures_are_parametrized_per_device(pytester):
    pytester.makeconftest(OWN_FIXTURES)
    pytester.makepyfile("""
def test_both(qat_device_name, device_name):
    assert device_name == "cuda:0" and qat_device_name in ("cpu", "cpu-ref")
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--device=cpu", "--device=cpu-ref")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_both?cpu? PASSED*", "*test_both?cpu-ref? PASSED*"])
