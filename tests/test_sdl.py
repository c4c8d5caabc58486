"""The committed SDL is the product's manual: it must match the code."""

from __future__ import annotations

from pathlib import Path

from invoicing.root import schema, sdl

BUILT_IN = {"String", "Int", "Float", "Boolean", "ID", "Decimal", "Date", "DateTime", "JSON", "Upload"}
SDL_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_graphql_matches_the_code():
    assert SDL_FILE.read_text() == sdl(), "run `invoicing schema` and commit schema.graphql"


def test_every_type_and_field_has_a_description():
    missing = []
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__") or name in BUILT_IN:
            continue
        if not graphql_type.description:
            missing.append(name)
        for field_name, field in getattr(graphql_type, "fields", {}).items():
            if not field.description:
                missing.append(f"{name}.{field_name}")
    assert missing == []


def test_scopes_show_in_the_sdl():
    text = sdl()
    assert "directive @requiresScope(scopes: [Scope!]!) on FIELD_DEFINITION" in text
    assert "createApiToken(input: CreateApiTokenInput!): CreateApiTokenPayload! @requiresScope(scopes: [OWNER])" in text
