"""``qat-harness setup arm-cpu`` where the aarch64 root cannot be built: one line, exit 2,
nothing downloaded and nothing left behind."""
from qat_harness import cli
from qat_harness.devices.arm import root as arm_root


def test_setup_on_a_machine_without_debian_tools_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(arm_root.ROOT_ENV, str(tmp_path / "arm-root"))
    monkeypatch.setattr(arm_root.shutil, "which", lambda tool: None)
    assert cli.main(["setup", "arm-cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("not a Debian system: the aarch64 root is built with Debian's apt-get and dpkg-deb, "
                        "which this machine lacks") and "\n" not in err
    assert not (tmp_path / "arm-root").exists()
