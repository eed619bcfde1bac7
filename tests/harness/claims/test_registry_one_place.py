"""The registry is the one place a claim id is spelt: no source folder the package installs holds a
claim-id literal outside ``qat_harness.claims``, the registry lists the claims in CLAIMS.md's
order, and every claim says what it is judged on."""
import re
from pathlib import Path

import pytest

import qat_harness
import qat_harness.claims
import qat_harness.core
import qat_harness.devices
import qat_harness.models
from qat_harness import claims
from qat_harness.devices.base import Role

ROOT = Path(__file__).resolve().parents[3]
#: A claim id in quotes ('C1-size', "M2-layers", f"K1-..."), the form a literal takes in code or a template.
CLAIM_ID_LITERAL = re.compile(r"""["']((?:C[1-6]|K[0-9]+|A[0-9]+|M[1-5])-[a-z0-9][a-z0-9-]*)""")


def _source_files():
    """Every text file of the installed source folders (harness, core, devices, models)."""
    folders = {Path(p).resolve() for pkg in (qat_harness, qat_harness.core, qat_harness.devices, qat_harness.models)
               for p in pkg.__path__}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".j2", ".html", ".md", ".txt", ".json"):
                yield path


def test_claim_id_literals_live_only_in_the_registry():
    registry = {Path(p).resolve() for p in qat_harness.claims.__path__}
    found, in_registry = [], set()
    for path in _source_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            ids = CLAIM_ID_LITERAL.findall(line)
            if any(folder in path.parents for folder in registry):
                in_registry.update(ids)
            elif ids:
                found.append(f"{path}:{n}: {', '.join(ids)}")
    assert not found, "claim ids spelt outside harness/claims/ (use the claim class's .id): " + "; ".join(found)
    assert in_registry == set(claims.REGISTRY)  # the pattern finds every id where it is spelt


def test_registry_follows_claims_md():
    text = (ROOT / "CLAIMS.md").read_text()
    rows = re.findall(r"^\| `([A-Z][0-9]+-[a-z0-9-]+)` \|", text, flags=re.M)
    assert rows == list(claims.REGISTRY)
    assert "harness/claims/" in text and "one place" in text


@pytest.mark.parametrize("claim", list(claims.REGISTRY.values()), ids=lambda c: c.id)
def test_every_claim_says_what_it_is_and_where_it_is_judged(claim):
    assert claims.get(claim.id) is claim
    assert claim.text and claim.expected and claim.scopes
    if claims.Scope.DEVICE in claim.scopes:
        assert claim.roles, "a device claim is judged on some role"
        assert all(claim.recorded_on(role) for role in claim.skipped_roles)
    else:
        assert not claim.roles


def test_each_role_has_at_most_one_latency_claim_and_the_others_a_reason():
    assert claims.latency_claim(Role.HOST_CPU) is claims.CpuLatency
    assert claims.latency_claim(Role.ACCELERATOR) is claims.AcceleratorLatency
    for role in (Role.ORACLE, Role.OVERHEAD):
        assert claims.latency_claim(role) is None
        assert claims.CpuLatency.skip_role("m", "d", role).reason == claims.CpuLatency.skipped_roles[role]


def test_an_unknown_id_names_the_known_ones():
    with pytest.raises(KeyError, match="C1-size"):
        claims.get("C9-nothing")


def test_layer_probes_name_claims_by_their_short_id():
    from qat_harness.models.probes import PROBES

    tags = {c.tag() for c in claims.with_scope(claims.Scope.LAYER_MATRIX)}
    assert {t for p in PROBES.values() for t in p.claims} <= tags


def test_the_claims_command_lists_the_registry(capsys):
    from qat_harness import cli

    assert cli.main(["claims"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in claims.REGISTRY]
    assert listed == list(claims.REGISTRY)
