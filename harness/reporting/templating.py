"""The jinja2 environment of the HTML pages: templates from ``qat_harness/templates``,
autoescaping on for every template (names from the user are text, never markup)."""
from __future__ import annotations

import functools


def _number(value, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


@functools.lru_cache(maxsize=1)
def environment():
    from jinja2 import ChainableUndefined, Environment, PackageLoader

    env = Environment(loader=PackageLoader("qat_harness", "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True, undefined=ChainableUndefined)
    env.filters["num"] = _number
    env.filters["verdict_class"] = lambda verdict: f"v-{str(verdict).lower()}" if verdict else "v-none"
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
