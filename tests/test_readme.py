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
