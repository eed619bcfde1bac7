"""The README's two set-up-and-go commands are the ones CI and users run."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", text.split("## Set up and go")[1].split("\n## ")[0])


def test_readme_has_exactly_two_set_up_and_go_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "qat-harness run" in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == _readme_commands()[1].strip()


pytest_plugins = ["pytester"]


def test_readme_own_model_test_file_runs_on_two_devices(pytester, tiny_models):
    """The worked example of a user's own test file, as printed in the README."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# test_my_model.py.*?)```", text, re.S).group(1)
    (pytester.path / "models").mkdir()
    (pytester.path / "models" / "my_int8.tflite").write_bytes(tiny_models["int8"].read_bytes())
    pytester.makepyfile(test_my_model=code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--device=cpu", "--device=cpu-ref")
    result.assert_outcomes(passed=2)
