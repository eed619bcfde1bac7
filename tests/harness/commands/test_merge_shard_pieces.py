"""--shard K/N and ``qat-harness merge`` (issue 23): two pieces of a plan merged give the claims of
the unsharded run; overlapping, missing and foreign pieces are refused in one line (exit 2)."""
from __future__ import annotations

import dataclasses

import pytest
from simulated_lab import LabHostCpu, LabOracle, LabPhone, Spans, lab, plain_html_pages

from qat_harness import cli, pipeline
from qat_harness.devices.base import BenchSettings
from qat_harness.options import RunOptions
from qat_harness.record import codec
from qat_harness.record.folder import write_atomically
from qat_harness.shard import Shard, parse_shard


def _options(out, tiny_models, shard: Shard | None) -> RunOptions:
    pair = f"{tiny_models['int8']}={tiny_models['float']}"
    return RunOptions(models=[pair, pair], devices=["phone", "host", "oracle"], out=out, check_bit_widths=False,
                      trace=False, eval_limit=16, oracle_limit=8, shard=shard,
                      bench=BenchSettings(warmup_runs=0, min_runs=6, min_seconds=0.0))


def _run(out, tiny_models, shard):
    spans = Spans()
    devices = lab([LabPhone("phone", spans), LabHostCpu("host", spans), LabOracle("oracle", spans)])
    return pipeline.run(_options(out, tiny_models, shard), devices=devices).json_path


@pytest.fixture(scope="module")
def plan(tmp_path_factory, tiny_models):
    """The plan run whole, and as its two pieces."""
    root = tmp_path_factory.mktemp("plan")
    with plain_html_pages():
        yield {"whole": _run(root / "whole", tiny_models, None),
               1: _run(root / "piece1", tiny_models, parse_shard("1/2")),
               2: _run(root / "piece2", tiny_models, parse_shard("2/2"))}


def _claims(run):
    """Every claim but its latency (a measurement, not a verdict two runs must repeat)."""
    return sorted((c.id, c.model, c.device, c.verdict.value, c.reason) for c in run.claims
                  if "latency" not in c.id)


def _merge(capsys, *argv):
    code = cli.main(["merge", *map(str, argv)])
    return code, capsys.readouterr().err


def test_each_piece_runs_its_half_of_the_pairs(plan):
    one, two = codec.load(plan[1]), codec.load(plan[2])
    assert one.options.shard.plan == two.options.shard.plan != ""
    assert len(one.options.shard.pairs) == len(two.options.shard.pairs) == 3
    assert not set(one.options.shard.pairs) & set(two.options.shard.pairs)
    ran = {(c.model, c.device) for c in [*one.claims, *two.claims] if c.device != "any"}
    assert ran == set(one.options.shard.pairs) | set(two.options.shard.pairs)


def test_two_pieces_merged_give_the_claims_of_the_whole_run(plan, tmp_path, capsys):
    code, err = _merge(capsys, plan[2], plan[1].parent, "--out", tmp_path / "merged")
    assert code == cli.EXIT_OK, err
    merged, whole = codec.load(tmp_path / "merged"), codec.load(plan["whole"])
    assert _claims(merged) == _claims(whole)
    assert len(merged.claims) == len(whole.claims)
    assert merged.done == whole.done
    assert list(merged.models) == list(whole.models)
    for name, section in whole.models.items():
        assert list(merged.models[name].devices) == list(section.devices)
    assert merged.options.shard is None and merged.status.value == "complete"
    assert (tmp_path / "merged" / "report.md").is_file() and (tmp_path / "merged" / "report.html").is_file()


def _foreign(piece, folder):
    """``piece`` as a piece of another plan: its plan fingerprint changed on the typed tree."""
    run = codec.load(piece)
    run.options = dataclasses.replace(run.options, shard=dataclasses.replace(run.options.shard, plan="0" * 16))
    folder.mkdir()
    write_atomically(folder / "report.json", codec.dump(run))
    return folder


@pytest.mark.parametrize("case, needle", [
    ("overlap", "overlapping pieces"),
    ("missing", "missing pieces"),
    ("foreign", "different plans"),
    ("whole", "not a piece of a sharded run"),
])
def test_merge_refuses_pieces_that_do_not_make_one_plan(plan, tmp_path, capsys, case, needle):
    pieces = {"overlap": [plan[1], plan[2], plan[1]], "missing": [plan[2]],
              "foreign": [plan[1], _foreign(plan[2], tmp_path / "other")], "whole": [plan["whole"], plan[1]]}[case]
    code, err = _merge(capsys, *pieces, "--out", tmp_path / "merged")
    assert code == cli.EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "merged" / "report.json").exists()


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_one_line(capsys, text):
    code = cli.main(["run", "--shard", text, "--models", "digits_cnn"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "--shard" in err and len(err.strip().splitlines()) == 1, err
