"""Cost deliveries over GraphQL as a console uses them: uploaded (one file or parts) and stored
a chunk at a time, imported by a real worker in the background, followed live with
`costImportChanged`, listed with `costImports`; each for every scope and another organization."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from strawberry.relay import to_base64

from models import CostImport, CostRecord, SubAccount
from tests.graphql import LiveClient, error_codes, gql
from tests.test_costs_import import AWS_BIG, SAMPLE, sample_rows, to_csv

IMPORT = """mutation($file: Upload, $files: [Upload!]) {
  importCosts(file: $file, files: $files) { __typename
  ... on CostImportQueued { costImport { id state filename rowsDone } }
  ... on UserError { code field message } } }"""
IMPORTS = """{ costImports(first: 10) { totalCount edges { node { id state filename rows inserted duplicates late
  replaced rowsDone startedAt finishedAt error { message file line column }
  scopes { providerName billingAccountId billingMonth outcome rows totals { currency billedCost } } } } } }"""
WATCH = """subscription($id: ID!) { costImportChanged(id: $id) { id state rowsDone rows inserted } }"""
ROLES = ("owner", "viewer", "customer", "foreign_owner")


async def send(client, token, parts: list[tuple[str, bytes]]):
    """`importCosts` as a GraphQL multipart request: the first part as `file`, the rest as `files`."""
    mapping = {"0": ["variables.file"], **{str(i): [f"variables.files.{i - 1}"] for i in range(1, len(parts))}}
    variables = {"file": None, "files": [None] * (len(parts) - 1) or None}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps({"query": IMPORT, "variables": variables}), "map": json.dumps(mapping)},
        files={str(i): (name, data, "application/octet-stream") for i, (name, data) in enumerate(parts)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _done(import_id: str, timeout: float = 60) -> CostImport:
    database_id = import_id
    for _ in range(int(timeout / 0.1)):
        row = await CostImport.get(id=database_id)
        if row.state in ("DONE", "FAILED"):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"import {import_id} still {row.state}")


def _database_id(global_id: str) -> str:
    from strawberry.relay import from_base64

    return from_base64(global_id)[1]


async def test_a_delivery_in_parts_is_stored_queued_and_imported_by_the_worker(client, world, worker, settings):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    header, rows = sample_rows()
    half = len(rows) // 2
    parts = [("part-1.csv.gz", gzip.compress(to_csv(header, rows[:half]))), ("part-2.csv", to_csv(header, rows[half:]))]
    result = await send(client, world.tokens["owner"], parts)
    queued = result["data"]["importCosts"]
    assert queued["__typename"] == "CostImportQueued", result
    assert queued["costImport"]["state"] == "QUEUED"
    assert queued["costImport"]["filename"] == "part-1.csv.gz, part-2.csv"
    stored = sorted((settings.storage_path / "cost-deliveries" / str(world.org.id)).glob("*/*"))
    assert [path.name for path in stored] == ["1", "2"], "each part is kept as it arrived"

    done = await _done(_database_id(queued["costImport"]["id"]))
    assert (done.state, done.row_count) == ("DONE", len(rows))
    assert await CostRecord.filter(organization_id=world.org.id).count() == len(rows)
    listed = await gql(client, IMPORTS, token=world.tokens["viewer"])
    (edge,) = listed["data"]["costImports"]["edges"]
    node = edge["node"]
    assert (node["state"], node["rows"], node["inserted"], node["rowsDone"]) == ("DONE", len(rows), len(rows), len(rows))
    assert node["error"] is None and node["finishedAt"] is not None
    assert {scope["outcome"] for scope in node["scopes"]} == {"NEW"}
    assert sum(scope["rows"] for scope in node["scopes"]) == len(rows)


async def test_a_refused_delivery_ends_failed_with_its_reason_and_writes_no_cost(client, world, worker):
    header, rows = sample_rows()
    rows[10]["BilledCost"] = "12,34"
    parts = [("good.csv", to_csv(header, rows[:5])), ("bad.csv", to_csv(header, rows[5:20]))]
    queued = (await send(client, world.tokens["owner"], parts))["data"]["importCosts"]
    done = await _done(_database_id(queued["costImport"]["id"]))
    assert done.state == "FAILED"
    assert (done.error_file, done.error_line, done.error_column) == ("bad.csv", 7, "BilledCost")
    assert await CostRecord.all().count() == 0
    listed = await gql(client, IMPORTS, token=world.tokens["owner"])
    error = listed["data"]["costImports"]["edges"][0]["node"]["error"]
    assert error["column"] == "BilledCost" and "12,34" in error["message"]


async def test_the_cap_counts_the_whole_delivery_and_keeps_nothing(client, world, settings, monkeypatch):
    data = SAMPLE.read_bytes()
    monkeypatch.setattr(settings, "max_upload_bytes", len(data) + 10)
    result = await send(client, world.tokens["owner"], [("a.csv", data), ("b.csv", data)])
    payload = result["data"]["importCosts"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("ValidationError", "INVALID", "files")
    assert await CostImport.all().count() == 0
    assert not list((settings.storage_path / "cost-deliveries").glob(f"{world.org.id}/*/*"))


async def test_an_import_without_a_file_is_refused(client, world):
    result = await gql(client, "mutation { importCosts { __typename ... on UserError { code field } } }",
                       token=world.tokens["owner"])
    assert result["data"]["importCosts"] == {"__typename": "ValidationError", "code": "INVALID", "field": "file"}


async def test_progress_is_pushed_until_the_import_ends(live_server, client, world, worker):
    header, rows = sample_rows()
    queued = (await send(client, world.tokens["owner"], [("focus.csv", to_csv(header, rows))]))["data"]["importCosts"]
    async with LiveClient(live_server, world.tokens["viewer"]) as viewer:
        operation = await viewer.subscribe(WATCH, {"id": queued["costImport"]["id"]})
        events = []
        while not events or events[-1]["state"] not in ("DONE", "FAILED"):
            message = await viewer.next(operation, timeout=60)
            events.append(message["payload"]["data"]["costImportChanged"])
    assert events[-1] == {"id": queued["costImport"]["id"], "state": "DONE", "rowsDone": len(rows),
                          "rows": len(rows), "inserted": len(rows)}
    assert len({(event["state"], event["rowsDone"]) for event in events}) == len(events), "each event is a change"


@pytest.mark.parametrize("role", ROLES)
async def test_imports_are_the_msp_users_own(client, live_server, world, role):
    header, rows = sample_rows()
    queued = (await send(client, world.tokens["owner"], [("focus.csv", to_csv(header, rows[:3]))]))["data"]["importCosts"]
    token = world.tokens[role]
    listed = await gql(client, IMPORTS, token=token)
    node = await gql(client, "query($id: ID!) { node(id: $id) { ... on CostImport { state } } }",
                     {"id": queued["costImport"]["id"]}, token=token)
    sent = await send(client, token, [("focus.csv", to_csv(header, rows[:3]))])
    if role in ("owner", "viewer"):
        assert listed["data"]["costImports"]["totalCount"] == 1
        assert node["data"]["node"] == {"state": "QUEUED"}
    elif role == "customer":
        assert error_codes(listed) == ["FORBIDDEN"]
        assert node["data"]["node"] is None
    else:
        assert listed["data"]["costImports"]["totalCount"] == 0, "another organization sees none of them"
        assert node["data"]["node"] is None
    if role in ("owner", "foreign_owner"):
        assert sent["data"]["importCosts"]["__typename"] == "CostImportQueued"
    else:
        assert error_codes(sent) == ["FORBIDDEN"]
    if role == "customer":
        return
    async with LiveClient(live_server, token) as live:
        operation = await live.subscribe(WATCH, {"id": queued["costImport"]["id"]})
        message = await live.next(operation)
    if role == "foreign_owner":
        assert message["payload"]["data"]["costImportChanged"] is None, "answered like a missing import"
    else:
        assert message["payload"]["data"]["costImportChanged"]["state"] == "QUEUED"


async def test_a_malformed_import_id_is_answered_like_a_missing_one(live_server, world):
    async with LiveClient(live_server, world.tokens["owner"]) as live:
        for bad in ("nope", to_base64("Invoice", "8d8ac610-566d-4ef0-9c22-186b2a5ed793")):
            operation = await live.subscribe(WATCH, {"id": bad})
            assert (await live.next(operation))["payload"]["data"]["costImportChanged"] is None


async def test_the_command_line_imports_an_aws_export_named_by_its_manifest(tmp_path, world, capsys):
    from invoicing.cli import data as cli

    header, rows = sample_rows()
    folder = tmp_path / "focus-2024-09"
    folder.mkdir()
    (folder / "part-00001.csv.gz").write_bytes(gzip.compress(to_csv(header, rows[:400])))
    (folder / "part-00002.csv.gz").write_bytes(gzip.compress(to_csv(header, rows[400:])))
    manifest = folder / "focus-Manifest.json"
    manifest.write_text(json.dumps({"dataFiles": [
        "s3://bucket/focus/focus-2024-09/part-00001.csv.gz", "s3://bucket/focus/focus-2024-09/part-00002.csv.gz",
    ]}))
    report, names = await cli._import_costs([manifest], world.org.name, cli.CostOrigin.MSP_DELEGATED, None)
    assert (report.rows, report.inserted) == (len(rows), len(rows))
    assert await CostRecord.filter(organization_id=world.org.id).count() == len(rows)
    cli._print_report(report, names)
    assert f"{len(rows):,} rows: {len(rows):,} now current" in capsys.readouterr().out
