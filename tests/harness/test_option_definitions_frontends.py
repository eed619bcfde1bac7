"""The run options are defined once (``option_definitions``): ``qat-harness run`` / ``nightly``
and the pytest plugin offer the same options, and the same values give the same ``RunOptions``
whichever of them parsed them."""
import numpy as np
import pytest

from qat_harness import cli
from qat_harness.commands.device_options import device_option_values
from qat_harness.commands.run import command_line_options
from qat_harness.devices import registry
from qat_harness.option_definitions import RUN_OPTIONS
from qat_harness.pytest_plugin import conformance_options, given_device_options

pytest_plugins = ["pytester"]

#: where a command writes, when it fails, what it resumes, which finished report it records
#: instead of running: not options of the run itself
COMMAND_LINE_ONLY = {"command", "out", "fail_on", "resume", "latency_tolerance", "history", "from_report"}
#: how a test ends on a latency FAIL; device options (the command line has one flag per option)
PLUGIN_ONLY = {"strict_perf", "device_options"}


def _cli_keys(command: str) -> set[str]:
    given = vars(cli.build_parser().parse_args([command]))
    return {k for k in given if not k.startswith("device_option.")} - COMMAND_LINE_ONLY


def _plugin_keys(pytester) -> set[str]:
    config = pytester.parseconfig()
    return {k.removeprefix("qat_") for k in vars(config.option) if k.startswith("qat_")} - PLUGIN_ONLY


def test_every_run_option_of_the_command_line_is_one_of_the_plugin_and_back(pytester):
    table = {option.key for option in RUN_OPTIONS}
    assert _cli_keys("run") == table
    assert _cli_keys("nightly") == table
    assert _plugin_keys(pytester) == table


def test_every_device_option_flag_of_the_command_line_is_a_device_option_of_the_plugin(files, pytester):
    """Devices declare their options once; the command line spells each as its flag, the plugin
    as --qat-device-option NAME=VALUE, and both give every device the same typed value."""
    names = ["nnapi", "openvino"]
    cli_args = cli.build_parser().parse_args(["run", "--devices", ",".join(names), "--serial", "R58M123",
                                              "--openvino-precision", "f32", "--android-run-batch", "7"])
    config = pytester.parseconfig(*[f"--qat-device={n}" for n in names], "--qat-device-option=serial=R58M123",
                                  "--qat-device-option=precision=f32", "--qat-device-option=run_batch=7")
    from_cli = registry.split_options(names, device_option_values(cli_args))
    assert from_cli == given_device_options(config)
    assert from_cli["nnapi"]["run_batch"] == 7 and from_cli["openvino"] == {"precision": "f32"}


@pytest.fixture(scope="module", autouse=True)
def files(tmp_path_factory):
    """A data set and a labels file; made (and a run's options read once) before pytester is set
    up, because pytester forgets the modules imported during a test and numpy's extension
    modules cannot be imported twice in one process."""
    folder = tmp_path_factory.mktemp("files")
    np.savez(folder / "data.npz", x=np.zeros((2, 28, 28, 1), np.float32))
    (folder / "labels.txt").write_text("zero\none\n")
    argv = [a.format(f=folder) for a in GIVEN[1][0]]
    command_line_options(cli.build_parser().parse_args(["run", *argv]), folder / "warm")[0].close()
    return folder


GIVEN = [  # (command-line arguments, the same values for the plugin); {f} is a folder of files
    ([], []),
    (["--models", "digits_cnn", "--devices", "cpu,null", "--threads", "3", "--input-size", "28",
      "--dataset", "{f}/data.npz", "--labels", "{f}/labels.txt", "--preprocess", "unit", "--limit-per-class", "2",
      "--eval-limit", "10", "--warmup", "1", "--min-runs", "2", "--min-seconds", "0.5", "--cache-dir", "{f}/cache",
      "--no-cache", "--skip-bitwidth", "--recipes", "16x8", "--no-trace", "--cross-check",
      "--junit-xml", "{f}/junit.xml"],
     ["--qat-conformance-models=digits_cnn", "--qat-device=cpu", "--qat-device=null", "--qat-threads=3",
      "--qat-input-size=28", "--qat-conformance-dataset={f}/data.npz", "--qat-conformance-labels={f}/labels.txt",
      "--qat-preprocess=unit", "--qat-limit-per-class=2", "--qat-eval-limit=10", "--qat-warmup=1",
      "--qat-min-runs=2", "--qat-min-seconds=0.5", "--qat-cache-dir={f}/cache", "--qat-no-cache",
      "--qat-skip-bitwidth", "--qat-recipes=16x8", "--qat-no-trace", "--qat-cross-check",
      "--qat-junit-xml={f}/junit.xml"]),
]


@pytest.mark.parametrize("cli_argv, plugin_argv", GIVEN, ids=["defaults", "every-option"])
def test_the_same_values_give_the_same_run_options(files, pytester, cli_argv, plugin_argv):
    out = files / "out"
    cli_argv, plugin_argv = ([a.format(f=files) for a in argv] for argv in (cli_argv, plugin_argv))
    if not cli_argv:  # each front end's own default model set; the rest is the same
        cli_argv, plugin_argv = ["--models", "digits_cnn"], []
    devices, from_cli = command_line_options(cli.build_parser().parse_args(["run", *cli_argv]), out)
    devices.close()
    config = pytester.parseconfig(*plugin_argv)
    from_plugin = conformance_options(config, out, given_device_options(config))
    assert from_plugin == from_cli
    if plugin_argv:
        assert from_cli.bench.min_runs == 2 and from_cli.devices == ["cpu", "null"] and from_cli.recipes == ["16x8"]


def test_a_bad_value_is_one_line_in_both(files, pytester, capsys):
    assert cli.main(["run", "--threads", "0"]) == cli.EXIT_USAGE
    assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    result = pytester.runpytest("-p", "no:cacheprovider", "--qat-threads=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --qat-threads: must be at least 1, got 0*"])


def test_a_bad_run_option_of_the_plugin_stops_its_conformance_run_in_one_line(pytester, tmp_path):
    pytester.makepyfile("def test_run(qat_conformance_report):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           f"--qat-conformance-dataset={tmp_path / 'missing'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*qat-harness: dataset folder not found: {tmp_path / 'missing'}*"])
