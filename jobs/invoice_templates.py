"""Printing with an organization's own invoice template, in a sandbox.

The text is compiled by Jinja's ImmutableSandboxedEnvironment: no attribute starting with `_`,
no Python internals (`__class__` tricks end in a SecurityError), no changing the view's lists and
dicts. It has the product's filters, `_()` and the view's locale, as the product's templates do,
and may extend or include the product's invoice and its base (`invoice/v1.html`,
`document/v1.html`) and nothing else: every other name is not found, so no file is read. Its text
methods and filters are the ones that cannot blow a short text up to gigabytes (`center`,
`ljust`, `format` and their kind are left out), `range` stops at MAX_RANGE.

What a sandbox cannot bound (a loop of loops, a text doubled again and again) is bounded by the
process it renders in: each print (of one invoice, or of a batch's invoices of one organization)
runs in a child interpreter of its own, with RENDER_MEMORY_BYTES of address space and
RENDER_SECONDS of CPU time (WALL_SECONDS in all); past them it is killed and the template
refused. Printing the HTML to PDF is the product's printer as for any invoice: Chromium with
JavaScript off and every request that is not `data:` aborted."""

from __future__ import annotations

import asyncio
import functools
import json
import resource
import sys
import types
from typing import Any

from jinja2 import BaseLoader, Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, select_autoescape
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from jobs import rendering
from models.errors import TemplateRejected

# What an own template may extend or include: the product's invoice (to change a few blocks)
# and the page every document extends (to write the whole body).
BASES = ("invoice/v1.html", "document/v1.html", "document/v1.css")
MAX_RANGE = 10_000
MAX_TEXT = 1_000_000
RENDER_SECONDS = 10
RENDER_MEMORY_BYTES = 1024**3
# The child's whole life, its start (a fresh interpreter importing the printer) included.
WALL_SECONDS = 60
ROOT = rendering.TEMPLATES_DIR.parent
_OWN = "<template>"  # the file name Jinja gives a template compiled from a string

_TEXT_METHODS = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "isalnum",
        "isalpha",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
    }
)
_FILTERS = frozenset(
    {
        "abs",
        "attr",
        "batch",
        "capitalize",
        "count",
        "d",
        "default",
        "dictsort",
        "e",
        "escape",
        "first",
        "float",
        "forceescape",
        "groupby",
        "int",
        "items",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "reverse",
        "round",
        "safe",
        "select",
        "selectattr",
        "slice",
        "sort",
        "string",
        "striptags",
        "sum",
        "title",
        "tojson",
        "trim",
        "truncate",
        "unique",
        "upper",
        "wordcount",
        # The product's own (jobs/rendering.py).
        "money",
        "amount",
        "price",
        "quantity",
        "date",
        "month",
        "charge_label",
        "rate",
    }
)


class _Bases(BaseLoader):
    """The product's base templates, and no other file."""

    def __init__(self) -> None:
        self._files = FileSystemLoader(rendering.TEMPLATES_DIR)

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Any]:
        if template not in BASES:
            raise TemplateNotFound(template)
        return self._files.get_source(environment, template)


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"range() is limited to {MAX_RANGE} items")
    return numbers


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and isinstance(value, (types.BuiltinMethodType, types.MethodType)):
            return attr in _TEXT_METHODS
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """No `str.format`: a width of a billion characters is one format spec away."""
        return None

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and isinstance(right, (str, list, tuple)):
            left, right = right, left
        if operator == "*" and isinstance(left, (str, list, tuple)) and isinstance(right, int):
            if len(left) * right > MAX_TEXT:
                raise OverflowError("repeating a text or a list is limited to 1,000,000 items")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 100:
            raise OverflowError("a power is limited to exponents of 100")
        if operator == "%" and isinstance(left, str):
            raise ValueError("formatting with % is not available: use the filters")
        return super().call_binop(context, operator, left, right)


def _sandbox() -> Environment:
    env = _Sandbox(
        loader=_Bases(),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    rendering.configure(env)
    env.filters = {name: function for name, function in env.filters.items() if name in _FILTERS}
    env.globals["range"] = _bounded_range
    return env


_env = _sandbox()


@functools.lru_cache(maxsize=32)
def _compiled(source: str) -> Template:
    return _env.from_string(source)


def _line_of(exc: BaseException) -> int | None:
    """The line of the own template where `exc` was raised (Jinja gives its frames the
    template's lines), the innermost one; None when none of its lines is at fault."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno if exc.filename in (None, _OWN) and exc.name is None else None
    line = None
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == _OWN:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TemplateNotFound):
        return f"{exc.name!r} cannot be extended or included: only {', '.join(BASES[:2])} can"
    if isinstance(exc, TemplateSyntaxError):
        return exc.message or "the template does not compile"
    if isinstance(exc, RecursionError):
        return "the template calls itself too deeply"
    if isinstance(exc, MemoryError):
        return "the template uses too much memory"
    text = str(exc).strip()
    return text if text else type(exc).__name__


def render_here(source: str, view: dict[str, Any]) -> str:
    """The invoice printed with `source`, in this process (the sandbox's limits, not the
    process's): TemplateRejected with the line and the reason when it cannot be."""
    try:
        html = _compiled(source).render(view)
    except Exception as exc:
        raise TemplateRejected(_reason(exc), line=_line_of(exc)) from None
    if len(html) > 20 * MAX_TEXT:
        raise TemplateRejected("the printed invoice is larger than 20,000,000 characters")
    return str(html) if isinstance(html, Markup) else html


def _limited() -> None:
    """The child's own limits, set before it reads the template."""
    resource.setrlimit(resource.RLIMIT_AS, (RENDER_MEMORY_BYTES, RENDER_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (RENDER_SECONDS, RENDER_SECONDS + 1))


def serve() -> None:
    """The child (`python -m jobs.template_printer`): {"source", "views"} as JSON on stdin, each
    view printed, the outcome as JSON on stdout."""
    _limited()
    asked = json.load(sys.stdin)
    try:
        outcome: dict[str, Any] = {"printed": [render_here(asked["source"], view) for view in asked["views"]]}
    except TemplateRejected as exc:
        outcome = {"rejected": exc.reason, "line": exc.line}
    except MemoryError:
        outcome = {"rejected": "the template uses too much memory", "line": None}
    json.dump(outcome, sys.stdout)


async def render_own(source: str, views: list[dict[str, Any]]) -> list[str]:
    """Each view printed with the organization's template `source`, in a child process with
    bounded time and memory; TemplateRejected (line, reason) when one cannot be."""
    if not views:
        return []
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobs.template_printer",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        answer, _ = await asyncio.wait_for(child.communicate(json.dumps({"source": source, "views": views}).encode()), WALL_SECONDS)
    except TimeoutError:
        raise TemplateRejected(f"printing the invoice took longer than {WALL_SECONDS} seconds") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0 or not answer:  # killed: past its CPU time or its memory
        raise TemplateRejected("the template used too much time or memory")
    outcome = json.loads(answer)
    if "rejected" in outcome:
        raise TemplateRejected(outcome["rejected"], line=outcome["line"])
    return list(outcome["printed"])


async def check_template(source: str) -> None:
    """Refuse (TemplateRejected) a template that does not compile, or that fails to print the
    sample invoice (jobs/rendering.py) in English or in German."""
    sample = rendering.sample_view()
    await render_own(source, [sample, {**sample, "locale": "de"}])


async def render_invoice(view: dict[str, Any], source: str | None) -> str:
    """The view printed with its template: the organization's `source` when it was printed with
    one, else the product's version the view names."""
    if source is None:
        return rendering.render_invoice_html(view)
    (html,) = await render_own(source, [view])
    return html
