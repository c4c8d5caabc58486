"""Helpers to call the GraphQL endpoint the way a client does."""

from __future__ import annotations

import logging
from typing import Any


async def gql(client, query: str, variables: dict | None = None, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def error_codes(result: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors", [])]


class StatementCounter(logging.Handler):
    """Collects the SQL statements Tortoise logs (attach it to `tortoise.db_client` at DEBUG)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record):
        self.statements.append(record.getMessage())
