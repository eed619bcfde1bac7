"""A normal (non-editable) install works: `pip install .` gives a working `qat-harness`, and
the artifact cache key follows the installed code, not the source tree's folder layout."""
import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# heavy: a wheel built and installed in a venv of its own, and a run from it (about 2 minutes);
# CI itself installs the project into a fresh venv
pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def running_site_packages() -> list[str]:
    """Where the interpreter running the suite finds its libraries: the venv's site-packages
    inside a venv, the interpreter's own outside one (and the user site when it is on)."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [f for f in folders if os.path.isdir(f)]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A venv holding its own, non-editable install of qat-harness, built from this checkout
    the way ``pip install .`` builds it (in build isolation, with the build requirements
    pyproject.toml declares, from pip's configured index), and seeing this environment's
    libraries (TensorFlow, ...) through a .pth file. ``--system-site-packages`` would not do:
    from inside a venv it reaches the base interpreter's site-packages, not the venv's."""
    venv = tmp_path_factory.mktemp("wheel-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
    # plain folder lines: the .pth files inside them (an editable install's finder) stay unread
    (Path(own_site) / "suite-environment.pth").write_text("\n".join(running_site_packages()) + "\n")
    build = tmp_path_factory.mktemp("build-src")
    subprocess.run(["cp", "-r", *[str(p) for p in ROOT.iterdir() if p.name not in (".git", ".tox", "reports")],
                    str(build)], check=True)  # a copy: building writes into the source folder
    res = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", str(build)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-1500:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    return python, venv, env


def _py(wheel_env, code: str) -> str:
    python, _, env = wheel_env
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-1500:]
    return out.stdout.strip().splitlines()[-1]


def test_the_package_is_imported_from_the_install_not_the_checkout(wheel_env):
    _, venv, _ = wheel_env
    where = _py(wheel_env, "import qat_harness.build.training as t; print(t.__file__)")
    assert where.startswith(str(venv)) and "site-packages" in where


def test_the_install_uses_the_libraries_of_the_environment_running_the_suite(wheel_env):
    """Inside a venv as outside one: the installed package runs on this environment's
    numpy and TensorFlow, not on whatever the base interpreter holds."""
    for module in ("numpy", "tensorflow"):
        where = _py(wheel_env, f"import {module}; print({module}.__file__)")
        assert any(where.startswith(folder + os.sep) for folder in running_site_packages()), (module, where)


def test_cache_key_changes_when_installed_training_code_changes(wheel_env):
    _, venv, _ = wheel_env
    digest = "from qat_harness.build.cache import source_digest; print(source_digest())"
    before = _py(wheel_env, digest)
    training = Path(_py(wheel_env, "import qat_harness.build.training as t; print(t.__file__)"))
    original = training.read_text()
    try:
        training.write_text(original + "\n# a change to the training code\n")
        assert _py(wheel_env, digest) != before
    finally:
        training.write_text(original)
    assert _py(wheel_env, digest) == before


def test_a_run_works_from_the_wheel(wheel_env, tmp_path):
    python, venv, env = wheel_env
    out = subprocess.run([str(venv / "bin" / "qat-harness"), "run", "--models", "digits_cnn",
                          "--devices", "cpu,cpu-ref", "--out", str(tmp_path / "out"), "--skip-bitwidth",
                          "--cache-dir", str(tmp_path / "cache"), "--min-runs", "5",
                          "--min-seconds", "0.1", "--warmup", "1", "--fail-on", "error"],
                         capture_output=True, text=True, env=env, timeout=900, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-1500:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    verdicts = {(c["id"], c["device"]): c["verdict"] for c in report["claims"]}
    assert verdicts[("C1-size", "any")] == "PASS" and verdicts[("A2-agreement", "cpu")] == "PASS"
    assert report["models"]["digits_cnn"]["artifacts"]["from_cache"] is False
