"""The probes a layer matrix runs: the built-in ones (``models.probes``) and the user's own
``module:function`` probes, checked before anything runs."""
from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from qat_harness.core.errors import UsageError
from qat_harness.layers.protocol import BUILTIN, USER, ProbeRequest
from qat_harness.sources import FACTORY_REF


def available_probes() -> list[str]:
    from qat_harness.models.probes import names
    return names()


@dataclasses.dataclass
class Task:
    name: str
    kind: str            # protocol.BUILTIN (``name`` is in models.probes) or protocol.USER (``module:function``)
    layer: str
    group: str
    description: str
    claims: tuple[str, ...] = ()
    bn_fold: bool = False
    source: str = "built-in"

    def request(self, workdir: Path, n_examples: int, float_model: bool) -> ProbeRequest:
        return ProbeRequest(self.kind, self.name, str(workdir), n_examples, float_model)


def make_tasks(layers: list[str] | None, user_probes: Iterable[str] | None) -> list[Task]:
    from qat_harness.models.probes import PROBES

    names = list(PROBES) if layers is None else list(layers)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise UsageError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    tasks = [Task(n, BUILTIN, PROBES[n].layer, PROBES[n].group,
                  PROBES[n].description, PROBES[n].claims, PROBES[n].bn_fold) for n in names]
    for ref in user_probes or ():
        if not FACTORY_REF.match(ref):
            raise UsageError(f"--probe {ref!r}: expected MODULE:FUNCTION, e.g. my_probes:make_model")
        module = ref.split(":")[0]
        if not _module_findable(module):
            raise UsageError(f"--probe {ref}: cannot find module {module} "
                             "(run from the folder that holds it, or put it on PYTHONPATH)")
        tasks.append(Task(ref, USER, ref, "user", f"user probe {ref}",
                          source="user"))
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise UsageError(f"probe {t.name} given twice")
        seen.add(t.name)
    return tasks


def _module_findable(module: str) -> bool:
    """Is the user's module there, without running any of its code in this process? Only
    the top-level name is looked up (find_spec of a dotted name would import its parents);
    the child, which runs from the same folder, imports the module itself."""
    top = module.split(".")[0]
    try:
        if importlib.util.find_spec(top) is not None:
            return True
    except (ImportError, ValueError):
        pass
    base = Path.cwd() / top
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()

