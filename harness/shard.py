"""``--shard K/N``: one of N pieces of a run's plan (every model on every device), so that N CI
jobs cover the plan once, and ``qat-harness merge`` makes one report of their reports.

A piece is a set of (model, device) pairs: the plan's pairs in sorted order, dealt round robin
(pair i to piece i mod N + 1), so every piece is known from the plan alone, on any host, and the
pieces are as even as the plan allows. A model is built in every piece holding one of its pairs.
Each piece's report records its shard (``RunOptions.shard``): K, N, its pairs and the plan's
fingerprint, a digest of the options that decide what is measured (not where the run writes or
which serial a phone has), so pieces of different plans are never merged."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Protocol


class Plan(Protocol):
    """What a piece reads of the run's options (``options.RunOptions``, a dataclass)."""
    devices: list[str]

Pair = tuple[str, str]   # (model label, device name)

#: options that say where and how a piece runs on its host, not what the plan measures
HOST_OPTIONS = ("out", "shard", "junit_xml", "cache_dir", "use_cache", "device_options")


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int                      # K, from 1
    count: int                      # N
    plan: str = ""                  # the whole plan's fingerprint (set when the run starts)
    models: tuple[str, ...] = ()    # the plan's models (labels, in order), set with ``plan``
    pairs: tuple[Pair, ...] = ()    # the (model, device) pairs of this piece, set with ``plan``

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def of_plan(self, opts: Plan, models: list[str]) -> "Shard":
        """This piece of the plan of ``opts`` (``models``: the labels of its models)."""
        return dataclasses.replace(self, plan=plan_fingerprint(opts), models=tuple(models),
                                   pairs=tuple(deal(plan_pairs(models, opts.devices), self.count)[self.index - 1]))

    def holds(self, model: str, device: str) -> bool:
        return (model, device) in self.pairs

    def devices_of(self, model: str, devices: Iterable[str]) -> list[str]:
        """Of ``devices`` (in their order), those this piece runs ``model`` on."""
        return [d for d in devices if self.holds(model, d)]


def parse_shard(text: str) -> Shard:
    """``K/N`` with 1 <= K <= N (argparse ``type=``: a bad value is one line naming the flag)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 1/2), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"K must be between 1 and N, got {text}")
    return Shard(index, count)


def plan_pairs(models: Iterable[str], devices: Iterable[str]) -> list[Pair]:
    """Every (model, device) pair of the plan, in sorted order (whatever order they were given in)."""
    return sorted({(m, d) for m in models for d in devices})


def deal(pairs: list[Pair], count: int) -> list[list[Pair]]:
    """``pairs`` dealt round robin into ``count`` pieces."""
    return [pairs[k::count] for k in range(count)]


def plan_fingerprint(opts: Plan) -> str:
    """A digest of the options that decide what a run measures: equal for every piece of one plan."""
    from qat_harness.results import plain

    measured = {k: v for k, v in plain(opts).items() if k not in HOST_OPTIONS}
    return hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()[:16]


def run_devices(shard: Shard | None, model: str, devices: Iterable[str]) -> list[str]:
    """Of ``devices`` (in their order), those a run of ``shard`` (None: the whole plan) runs ``model`` on."""
    return list(devices) if shard is None else shard.devices_of(model, devices)
