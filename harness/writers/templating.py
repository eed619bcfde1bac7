"""The jinja2 environments of the pages, templates from ``qat_harness/templates``.
Every value a template prints goes through ``text.visible`` first (``finalize``): no control
character from a name reaches a page. The HTML environment then autoescapes everything (names
from the user are text, never markup); the Markdown one escapes what its template marks
``| md``."""
from __future__ import annotations

import functools

from qat_harness.writers.text import difference_line, format_measured, markdown, visible


def _number(value, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def _verdict_class(verdict) -> str:
    return f"v-{str(getattr(verdict, 'value', verdict)).lower()}" if verdict else "v-none"


@functools.cache
def environment(autoescape: bool = True):
    from jinja2 import ChainableUndefined, Environment, PackageLoader

    env = Environment(loader=PackageLoader("qat_harness", "templates"), autoescape=autoescape,
                      trim_blocks=True, lstrip_blocks=True, undefined=ChainableUndefined,
                      finalize=visible)
    env.filters.update(num=_number, verdict_class=_verdict_class, measured=format_measured, md=markdown,
                       difference=difference_line)
    return env


def render(template: str, **context) -> str:
    return environment(autoescape=template.endswith(".html.j2")).get_template(template).render(**context)
