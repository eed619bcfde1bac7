"""``merge``: one report of the pieces of a sharded plan (``--shard K/N``, see ``shard``).

    qat-harness merge piece1/report.json piece2/ ... --out DIR

Every piece of one plan, each once and complete, or a one-line refusal (exit 2) saying which
piece overlaps, is missing or belongs to another plan. The merge is made on the typed report
tree: each (model, device) pair's section and claims come from the piece that ran it; what is the
model's alone (its build and files, the structure claims C1/C4/C5/M3, the recipe axis) from the
piece whose devices decided it as the whole plan's would have: the structure claims are judged
on whether any device loaded the file (``claims.Loadability``), so they come from a piece where
one did, if any did. The report is written as a run's is: report.json, report.md, report.html."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from qat_harness.commands.errors import EXIT_OK
from qat_harness.core.errors import UsageError
from qat_harness.record.tree import ModelSection, RunReport, RunStatus
from qat_harness.results import ClaimResult
from qat_harness.shard import Shard, plan_pairs


@dataclasses.dataclass
class Piece:
    path: Path
    run: RunReport

    @property
    def shard(self) -> Shard:
        shard = self.run.options.shard
        assert shard is not None  # checked by ``pieces_of_one_plan``
        return shard


def add_parser(sub) -> None:
    m = sub.add_parser("merge", help="one report of the pieces of a sharded run (--shard K/N)")
    m.add_argument("reports", type=Path, nargs="+", metavar="REPORT",
                   help="each piece's report.json (or the folder holding it)")
    m.add_argument("--out", type=Path, required=True, help="the folder of the merged report")


def cmd_merge(args: argparse.Namespace) -> int:
    from qat_harness.record import codec
    from qat_harness.record.report import Report
    from qat_harness.writers import console
    from qat_harness.writers.pages import run_pages

    pieces = pieces_of_one_plan([Piece(Path(p), codec.load(p)) for p in args.reports])
    out = Path(args.out).resolve()
    report = Report(out, run=merge(pieces, out), pages=run_pages(out))
    report.finish()
    console.say(f"merged {len(pieces)} pieces of plan {pieces[0].shard.plan}: {report.json_path}, "
                f"{report.md_path.name} and {report.html_path.name}")
    return EXIT_OK


def pieces_of_one_plan(pieces: list[Piece]) -> list[Piece]:
    """The pieces in shard order, each checked: one line for the first thing that is wrong."""
    for p in pieces:
        if p.run.options.shard is None:
            raise UsageError(f"{p.path} is not a piece of a sharded run (it was not run with --shard K/N)")
    first = pieces[0]
    for p in pieces[1:]:
        if (p.shard.plan, p.shard.count) != (first.shard.plan, first.shard.count):
            raise UsageError(f"{p.path} (plan {p.shard.plan}, shard {p.shard}) and {first.path} (plan "
                             f"{first.shard.plan}, shard {first.shard}) are pieces of different plans")
    by_index: dict[int, Piece] = {}
    for p in pieces:
        if p.shard.index in by_index:
            raise UsageError(f"overlapping pieces: {by_index[p.shard.index].path} and {p.path} are both "
                             f"shard {p.shard}")
        by_index[p.shard.index] = p
    count = first.shard.count
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in by_index]
    if missing:
        raise UsageError(f"missing pieces of plan {first.shard.plan}: shard {', '.join(missing)} not given")
    ordered = [by_index[k] for k in range(1, count + 1)]
    seen: dict[tuple[str, str], Piece] = {}
    for p in ordered:
        if p.run.status is not RunStatus.COMPLETE:
            raise UsageError(f"{p.path} (shard {p.shard}) is {p.run.status.value}: finish it with "
                             f"`qat-harness run --resume {p.path.parent if p.path.is_file() else p.path}` first")
        for pair in p.shard.pairs:
            if pair in seen:
                raise UsageError(f"overlapping pieces: {seen[pair].path} and {p.path} both ran "
                                 f"{pair[0]} on {pair[1]}")
            seen[pair] = p
    left = [f"{m} on {d}" for m, d in plan_pairs(first.shard.models, first.run.options.devices) if (m, d) not in seen]
    if left:
        raise UsageError(f"missing pieces of plan {first.shard.plan}: no piece ran {', '.join(left)}")
    return ordered


def merge(pieces: list[Piece], out: Path) -> RunReport:
    """One report of the checked ``pieces`` (in shard order), as the unsharded run writes it."""
    first = pieces[0].run
    devices = first.options.devices
    options = dataclasses.replace(first.options, out=out, shard=None, junit_xml=None)
    run = RunReport(first.environment, options, started=min(p.run.started for p in pieces),
                    resumed=[r for p in pieces for r in p.run.resumed])
    for d in devices:
        described = next((p.run.devices[d] for p in pieces if d in p.run.devices), None)
        if described is not None:
            run.devices[d] = described
    plan_models = pieces[0].shard.models
    run.claims = _unique([c for p in pieces for c in p.run.claims if c.model not in plan_models])
    for name in plan_models:
        holders = [p for p in pieces if any(m == name for m, _ in p.shard.pairs)]
        owner = {d: p for d in devices for p in holders if p.shard.holds(name, d)}
        sections = {id(p): p.run.models[name] for p in holders if name in p.run.models}
        if not sections:
            continue
        section = _merged_section([sections[id(p)] for p in holders if id(p) in sections], owner, name)
        run.models[name] = section
        decider = _structure_piece(section, [p for p in holders if id(p) in sections], owner, name)
        model_claims = [c for c in decider.run.claims if c.model == name and c.device not in owner]
        model_claims += [c for p in holders for c in p.run.claims if c.model == name and c.device not in owner]
        run.claims += _unique(model_claims)
        for d in devices:
            if d in owner:
                run.claims += [c for c in owner[d].run.claims if c.model == name and c.device == d]
                if d in owner[d].run.done.get(name, ()):
                    run.done.setdefault(name, []).append(d)
    run.notes = _unique_by([n for p in pieces for n in p.run.notes], lambda n: (n.model, n.text))
    run.errors = _unique_by([e for p in pieces for e in p.run.errors], lambda e: (e.model, e.error))
    return run


def _merged_section(sections: list[ModelSection], owner: dict, name: str) -> ModelSection:
    """The model's section of the first piece, with every device section from the piece that ran
    it and what only some pieces have (the recipe axis, the oracle's error) from those."""
    merged = dataclasses.replace(sections[0], devices={})
    for d, piece in owner.items():
        own = piece.run.models.get(name)
        if own is not None and d in own.devices:
            merged.devices[d] = own.devices[d]
    for field in ("recipes", "oracle_error", "error", "outputs"):
        if getattr(merged, field) is None:
            setattr(merged, field, next((getattr(s, field) for s in sections if getattr(s, field) is not None), None))
    return merged


def _structure_piece(section: ModelSection, holders: list[Piece], owner: dict, name: str) -> Piece:
    """The piece whose structure claims are the whole plan's: one where a device loaded the file
    under test when any did (then the claims do not depend on which), else the piece of the
    first device (whose refusal the plan's claims quote)."""
    from qat_harness import claims
    from qat_harness.writers.labels import under_test

    ut = under_test(section)
    if ut is None:
        return holders[0]

    def loadability(s: ModelSection):
        return claims.Loadability({d: ds.errors.get(f"run:{ut}") or "" for d, ds in s.devices.items()})

    if loadability(section).settled:
        return next(p for p in holders if loadability(p.run.models[name]).settled)
    first_device = next(iter(section.devices), None)
    return owner[first_device] if first_device in owner else holders[0]


def _unique(results: list[ClaimResult]) -> list[ClaimResult]:
    return _unique_by(results, lambda c: (c.id, c.model, c.device))


def _unique_by(items: list, key) -> list:
    seen: set = set()
    kept = []
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            kept.append(item)
    return kept
