"""``devices`` and ``claims``: what devices are installed (and for the missing ones, why), and
what the claims say."""
from __future__ import annotations

import argparse

from qat_harness.commands.errors import EXIT_OK


def add_parsers(sub) -> None:
    sub.add_parser("devices", help="list devices found and, for the missing ones, why")
    sub.add_parser("claims", help="list the claim ids")


def cmd_devices(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from qat_harness.devices import registry

    rows = []
    for name, entry in registry.entries().items():
        cls = entry.device_class
        if cls is None:
            rows.append([name, "unavailable", "-", entry.description, entry.load_error, "-"])
            continue
        avail = registry.probe(name)
        options = ", ".join(o.cli_flag for o in cls.options) or "-"
        rows.append([name, "available" if avail.available else "missing", cls.role.value,
                     cls.description, avail.reason, options])
    print(tabulate(rows, headers=["device", "status", "role", "what", "details", "options"],
                   tablefmt="simple", maxcolwidths=[None, None, None, 40, 60, 30]))
    return EXIT_OK


def cmd_claims(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from qat_harness.claims import REGISTRY

    rows = [[c.id, ", ".join(s.value for s in c.scopes), c.text] for c in REGISTRY.values()]
    print(tabulate(rows, headers=["claim", "judged per", "what the guide says"], tablefmt="simple",
                   maxcolwidths=[None, None, 80]))
    return EXIT_OK
