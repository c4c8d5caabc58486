"""Helpers to call the GraphQL endpoint the way a client does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any


async def gql(client, query: str, variables: dict | None = None, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def subscribed(app, count: int, timeout: float = 10) -> None:
    """Wait until the app serves `count` subscriptions: the protocol answers a subscribe
    message with nothing, and the server registers it in its own time (events published
    before that do not reach it)."""
    async with asyncio.timeout(timeout):
        while app.state.events.subscription_count() < count:  # noqa: ASYNC110 (the hub signals nothing)
            await asyncio.sleep(0.01)


def error_codes(result: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors", [])]


class StatementCounter(logging.Handler):
    """Collects the SQL statements Tortoise logs (attach it to `tortoise.db_client` at DEBUG)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record):
        self.statements.append(record.getMessage())


async def gql_counted(client, query: str, variables: dict | None = None, token: str | None = None):
    """`gql`, and the SQL statements it ran."""
    logger = logging.getLogger("tortoise.db_client")
    counter, old_level = StatementCounter(), logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        result = await gql(client, query, variables, token)
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)
    return result, counter.statements


class LiveClient:
    """A graphql-transport-ws client as SPAs use it: one socket, several subscriptions, each
    one's messages kept apart."""

    def __init__(self, address: str, token: str | None, origin: str = "http://127.0.0.1:8000"):
        self.address, self.token, self.origin = address, token, origin
        self.inbox: dict[str, asyncio.Queue] = {}
        self.closed: asyncio.Future | None = None
        self._ids = 0

    async def __aenter__(self) -> LiveClient:
        import websockets

        self.ws = await websockets.connect(
            f"ws://{self.address}/graphql", subprotocols=["graphql-transport-ws"], origin=self.origin,
            max_queue=None,
        )
        payload = {"authorization": f"Bearer {self.token}"} if self.token else {}
        await self.ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        self.closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif "id" in message:
                    self.inbox.setdefault(message["id"], asyncio.Queue()).put_nowait(message)
        except websockets.ConnectionClosed as exc:
            if exc.rcvd:
                self.closed.set_result(exc.rcvd.code)
        if not self.closed.done():
            self.closed.set_result(None)

    async def subscribe(self, query: str, variables: dict | None = None) -> str:
        self._ids += 1
        operation = str(self._ids)
        self.inbox.setdefault(operation, asyncio.Queue())
        await self.ws.send(json.dumps({
            "id": operation, "type": "subscribe", "payload": {"query": query, "variables": variables or {}},
        }))
        return operation

    async def next(self, operation: str, timeout: float = 10) -> dict:
        """The subscription's next message (`next`, `error` or `complete`)."""
        return await asyncio.wait_for(self.inbox[operation].get(), timeout)

    async def drain(self, operation: str, quiet: float = 0.5) -> list[dict]:
        """Every message of the subscription until none arrives for `quiet` seconds."""
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(self.inbox[operation].get(), quiet))
            except TimeoutError:
                return messages


@contextlib.asynccontextmanager
async def client_of(settings, redis, **changes):
    """A client of the app on these settings, changed."""
    import httpx

    from invoicing.app import create_app

    application = create_app(settings.model_copy(update=changes))
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        yield http
    await application.state.events.close()
