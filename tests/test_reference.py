"""The manual's reference pages are written from the code by scripts/reference.py: each must be
what the script writes now, so that a setting, a command or a schema field added without its
page regenerated fails here (as tests/test_sdl.py holds schema.graphql to the code). And every
GraphQL example in the manual must be valid against the schema."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import typer
from graphql import GraphQLSchema, build_schema, parse, validate
from pydantic import Field

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run `.venv/bin/python scripts/reference.py` and commit docs/reference/"


def _load_reference():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference"] = module
    spec.loader.exec_module(module)
    return module


reference = _load_reference()
PAGES = reference.pages()


@pytest.mark.parametrize("path", sorted(PAGES), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_reference_page_is_what_the_code_says(path):
    assert path.exists(), REGENERATE
    assert path.read_text() == PAGES[path], REGENERATE


def test_the_reference_folder_holds_no_page_the_script_does_not_write():
    """A page left behind (a removed setting's page, a renamed one) would be stale for good."""
    written = {path for path in PAGES} | {ROOT / "docs" / "reference" / "index.md"}
    assert sorted(set((ROOT / "docs" / "reference").rglob("*.md")) - written) == []


def test_a_new_setting_is_missing_from_the_page_until_it_is_regenerated(monkeypatch):
    import infra.settings

    class WithOneMore(infra.settings.Settings):
        reminder_hour: int = Field(9, description="The hour of the day reminders go out.")

    page = reference.settings_page()
    monkeypatch.setattr(infra.settings, "Settings", WithOneMore)
    changed = reference.settings_page()
    assert changed != page
    assert "| `REMINDER_HOUR` | integer | `9` | The hour of the day reminders go out. |" in changed
    assert "`REMINDER_HOUR`" not in (ROOT / "docs" / "reference" / "settings.md").read_text()


def test_a_new_command_is_missing_from_the_page_until_it_is_regenerated(monkeypatch):
    from invoicing.cli import app

    page = reference.cli_page()
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))

    @app.command("send-statements")
    def send_statements(month: str = typer.Argument(..., help="The month, YYYY-MM.")) -> None:
        """E-mail each customer its statement of the month."""

    changed = reference.cli_page()
    assert changed != page
    assert "## `invoicing send-statements`" in changed
    assert "E-mail each customer its statement of the month." in changed
    assert "send-statements" not in (ROOT / "docs" / "reference" / "cli.md").read_text()


def test_a_new_schema_field_is_missing_from_the_page_until_it_is_regenerated():
    sdl = (ROOT / "schema.graphql").read_text()
    added = sdl.replace("type Query {\n", 'type Query {\n  """Statements of a month."""\n  statements(month: Month!): [String!]!\n\n', 1)
    assert added != sdl
    pages = reference.graphql_pages(added)
    assert pages != reference.graphql_pages(sdl)
    assert "## `statements` {#statements}" in pages["graphql/queries.md"]
    assert "Statements of a month." in pages["graphql/queries.md"]


def test_every_setting_is_described():
    """The settings page is an operator's reference: a setting without a description would show
    there as a bare name."""
    from infra.settings import Settings

    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_a_setting_reads_as_its_environment_variable_with_type_default_and_description():
    text = (ROOT / "docs" / "reference" / "settings.md").read_text()
    assert "| `MAX_UPLOAD_BYTES` | integer | `5368709120` (5 GiB) |" in text
    assert "| `ENVIRONMENT` | one of `development`, `production`, `test` | `development` |" in text
    assert "| `DATABASE_URL` | text (optional) | unset | postgres://user:pass@host:port/db;" in text


def test_a_schema_field_shows_its_scopes_arguments_and_links():
    queries = (ROOT / "docs" / "reference" / "graphql" / "queries.md").read_text()
    entry = queries.split("## `invoices` {#invoices}", 1)[1].split("\n## ", 1)[0]
    assert "Answers [InvoiceConnection](types.md#invoiceconnection)!." in entry
    assert "Scopes: `OWNER`, `VIEWER`, `CUSTOMER`." in entry
    assert "| `filter` | [InvoiceFilter](types.md#invoicefilter) |" in entry


# ```graphql blocks, also indented inside a list item.
EXAMPLE = re.compile(r"^(?P<indent> *)```graphql\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)


def _examples() -> list[tuple[str, str]]:
    found = []
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]):
        for number, match in enumerate(EXAMPLE.finditer(path.read_text()), 1):
            found.append((f"{path.relative_to(ROOT)}#{number}", match["body"]))
    return found


@pytest.fixture(scope="module")
def committed_schema() -> GraphQLSchema:
    return build_schema((ROOT / "schema.graphql").read_text())


@pytest.mark.parametrize(("where", "example"), _examples(), ids=[where for where, _ in _examples()])
def test_every_graphql_example_in_the_manual_is_valid(where, example, committed_schema):
    errors = validate(committed_schema, parse(example))
    assert [error.message for error in errors] == []


def test_the_manual_has_graphql_examples_to_check():
    assert len(_examples()) >= 6
