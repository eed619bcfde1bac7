"""`qat-harness nightly --from-report`: a finished report (the merge of a sharded night's pieces)
recorded and compared as a night, without running anything; a piece alone is refused in one line
(issue 23: a sharded nightly recorded no history)."""
import dataclasses

import recorded_reports

from qat_harness import cli, history
from qat_harness.record.report import Report
from qat_harness.shard import parse_shard


def _finished(tmp_path, name: str, run) -> str:
    Report(tmp_path / name, run=run).finish()
    return str(tmp_path / name)


def test_finished_reports_are_recorded_and_the_second_compared(tmp_path, capsys):
    nightly = tmp_path / "nightly"
    first = _finished(tmp_path, "merged1", recorded_reports.night("2026-01-01T02:00:00+00:00", seed=1))
    slower = recorded_reports.night("2026-01-02T02:00:00+00:00", seed=2, int8_ms=0.8)
    second = _finished(tmp_path, "merged2", slower)
    assert cli.main(["nightly", "--out", str(nightly), "--from-report", first]) == 0
    assert "first recorded run" in capsys.readouterr().out
    cli.main(["nightly", "--out", str(nightly), "--from-report", second])
    out = capsys.readouterr().out
    assert len(history.load(nightly / "history.sqlite").nights) == 2
    nights = sorted(p for p in nightly.iterdir() if p.is_dir() and (p / "compare.txt").exists())
    assert len(nights) == 1 and (nights[0] / "report.json").is_file() and (nights[0] / "report.html").is_file()
    assert "int8" in (nights[0] / "compare.txt").read_text() and "nightly gate" in out


def test_a_piece_of_a_sharded_night_is_refused_in_one_line(tmp_path, capsys):
    piece = recorded_reports.night("2026-01-01T02:00:00+00:00", seed=1)
    piece.options = dataclasses.replace(piece.options, shard=parse_shard("1/2"))
    code = cli.main(["nightly", "--out", str(tmp_path / "nightly"), "--from-report",
                     _finished(tmp_path, "piece", piece)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1 and "merge the pieces first" in err, err
    assert not (tmp_path / "nightly").exists() or not any((tmp_path / "nightly").iterdir())
    code = cli.main(["nightly", "--out", str(tmp_path / "nightly"), "--from-report", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_finished_reports_device_options_are_not_what_the_retime_opens_devices_with(tmp_path, monkeypatch):
    """A report is data: its devices are re-timed with this command line's options, never with
    a program or runtime folder the report names."""
    from qat_harness.compare import nightly_gate

    opened = []

    def capturing(opts):
        opened.append(opts.device_options)
        return lambda device, labels: (_ for _ in ()).throw(RuntimeError("not timed here"))
    monkeypatch.setattr(nightly_gate, "device_timer", capturing)
    nightly = tmp_path / "nightly"
    for day, int8_ms in ((1, 0.5), (2, 0.8)):
        run = recorded_reports.night(f"2026-01-0{day}T02:00:00+00:00", seed=day, int8_ms=int8_ms)
        run.options = dataclasses.replace(run.options, device_options={"cpu": {"litert_runtime": str(tmp_path)}})
        cli.main(["nightly", "--out", str(nightly), "--from-report", _finished(tmp_path, f"merged{day}", run)])
    assert opened == [{name: {} for name in run.devices}]
