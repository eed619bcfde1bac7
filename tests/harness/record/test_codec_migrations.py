"""report.json <-> the typed report tree: reports written by older harnesses load through the
ordered migrations with the same claims, verdicts and values; a file from a newer harness, or
one that is not a report, is one line naming it (and ``--resume`` says so, exit 2)."""
import json

import pytest
import recorded_reports

from qat_harness import cli
from qat_harness.core.errors import UsageError
from qat_harness.devices.base import Role
from qat_harness.record import codec
from qat_harness.record.tree import DeviceSection, RunReport, RunStatus, TfliteSummary


def _json(path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("fixture", [recorded_reports.DIGITS, recorded_reports.TINY],
                         ids=["digits-before-architecture", "tiny-1fe17ab"])
def test_an_old_report_loads_into_the_typed_tree_and_dumps_the_same_claims_and_values(fixture):
    before = _json(fixture)
    run = codec.load(fixture)
    assert isinstance(run, RunReport) and before["schema_version"] == 1
    assert run.status is RunStatus(before["status"])
    after = json.loads(codec.dump(run))
    assert after["schema_version"] == codec.SCHEMA_VERSION
    assert after["claims"] == before["claims"]               # ids, verdicts, measured, reasons, details
    for name, model in before["models"].items():
        for dev, old in model["devices"].items():
            section = run.models[name].devices[dev]
            assert isinstance(section, DeviceSection)
            new = after["models"][name]["devices"][dev]
            for key in ("top1", "latency", "latency_raw_ms", "first_invoke_ms", "speedup_qat_vs_float",
                        "speedup_ptq_vs_float"):
                assert new.get(key) == old.get(key), (name, dev, key)
            for variant, deleg in old["delegation"].items():
                assert {k: new["delegation"][variant][k] for k in ("backend", "ops_total", "ops_delegated",
                                                                   "fallback")} == \
                       {k: deleg[k] for k in ("backend", "ops_total", "ops_delegated", "fallback")}
        for variant, summary in model.get("tflite", {}).items():
            assert isinstance(run.models[name].tflite[variant], TfliteSummary)
            assert after["models"][name]["tflite"][variant] == summary
    assert codec.loads(codec.dump(run)) == run               # the codec is its own inverse


def test_the_migration_to_2_keeps_what_schema_1_said_in_its_typed_place():
    run = recorded_reports.digits()
    cpu = run.models["digits_cnn"].devices["cpu"]
    assert cpu.vs_reference_kernels.max_steps == 3 and cpu.vs_reference_kernels.domain == "int8 steps"
    assert cpu.vs_reference_kernels.output == "StatefulPartitionedCall:0"
    assert run.devices["cpu-ref"].facts["resolver"] == "ref" and run.devices["cpu"].role is None
    assert run.environment.libraries == {}                    # not recorded before the results model
    assert run.models["digits_cnn"].keras.plan.qat_epochs == 3
    tiny = recorded_reports.tiny()
    assert tiny.devices["cpu"].role is Role.HOST_CPU
    blocks = tiny.models[recorded_reports.TINY_MODEL].devices["cpu"].bench_details.blocks
    assert blocks.block_runs == 10 and blocks.rounds == 10


def _write(tmp_path, data) -> object:
    path = tmp_path / "report.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize("content, says", [
    ("{not json", "is not a report.json"),
    ([1, 2], "is not a qat-harness report"),
    ({"tool": "other", "schema_version": 1}, "is not a qat-harness report"),
    ({"tool": "qat-harness", "schema_version": 99}, "newer qat-harness (report schema 99)"),
    ({"tool": "qat-harness", "schema_version": True}, "schema_version True"),
    ({"tool": "qat-harness", "schema_version": 1, "models": ["m"]}, "malformed report (schema 1)"),
    ({"tool": "qat-harness", "schema_version": 2, "status": "done"}, "malformed report"),
])
def test_what_is_not_a_report_of_this_version_is_one_line_naming_the_file(tmp_path, content, says):
    path = _write(tmp_path, content)
    with pytest.raises(UsageError) as exc:
        codec.load(path)
    assert says in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_malformed_report_given_to_resume_is_one_line_and_exit_2(tmp_path, capsys):
    data = codec.to_json_data(recorded_reports.tiny())
    data["status"] = "interrupted"
    data["models"]["int8.tflite"]["devices"]["cpu"]["latency"] = {"float": "fast"}
    _write(tmp_path, data)
    code = cli.main(["run", "--resume", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "Traceback" not in err and err.count("\n") == 1
    assert "malformed report" in err and "latency" in err
