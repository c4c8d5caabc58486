"""Cost sources end to end against moto's S3 in server mode (started here on loopback, with IAM
checking every request), driven only through the S3 API: an AWS Data Exports delivery of two
billing periods written as AWS lays it out, synced and imported; a second sync with nothing new;
a re-delivery with a restated row; a delivery still being written; a role assumed through moto's
STS; credentials refused, a
missing bucket and a refused endpoint; one sync at a time; the scheduled sync; and who may see
and do what."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import dispatch
from jobs.cost_sources import lock_key, sync_cost_source, sync_due_cost_sources
from models import CostImport, CostRecord, CostSource
from models.cost_sources import CostSourceState, credentials_of
from tests.graphql import client_of, error_codes, gql
from tests.test_cost_delivery_layout import PERIODS, period_rows, thirds
from tests.test_costs_import import database_totals, expected_totals, sample_rows

EXPORT = "focus"
PREFIX = "cur"

SOURCE = """fragment S on CostSource { id name kind location region endpoint keyHint state lastSyncAt
  lastDeliveryKey lastDeliveryAt lastError imports { totalCount edges { node { state rows filename } } } }"""
CREATE = SOURCE + """ mutation($input: CreateCostSourceInput!) { createCostSource(input: $input) { __typename
  ... on CostSourceSaved { costSource { ...S } }
  ... on CostSourceUnreadableError { code field message problem } ... on UserError { code field message } } }"""
UPDATE = SOURCE + """ mutation($id: ID!, $input: UpdateCostSourceInput!) { updateCostSource(id: $id, input: $input) {
  __typename ... on CostSourceSaved { costSource { ...S } } ... on UserError { code field message } } }"""
DELETE = """mutation($id: ID!) { deleteCostSource(id: $id) { __typename ... on CostSourceDeleted { deletedId }
  ... on UserError { code } } }"""
TEST = """mutation($id: ID!) { testCostSource(id: $id) { __typename
  ... on CostSourceTested { months { month deliveries imported latestAt } }
  ... on CostSourceUnreadableError { code field message problem } ... on UserError { code message } } }"""
SYNC = """mutation($id: ID!) { syncCostSource(id: $id) { __typename
  ... on CostSourceSyncQueued { alreadyQueued costSource { id } } ... on UserError { code } } }"""
LIST = SOURCE + " { costSources { totalCount edges { node { ...S } } } }"
NODE = """query($id: ID!) { node(id: $id) { __typename ... on CostSource { name } } }"""


# ---------------------------------------------------------------- the S3 emulator


@pytest.fixture
def s3_settings(settings, moto_s3):
    return settings.model_copy(update={
        "cost_source_private_endpoints": True, "aws_s3_endpoint_url": moto_s3["endpoint"],
        "cost_source_timeout_seconds": 10,
    })


@pytest.fixture
async def s3_client(s3_settings, redis):
    async with client_of(s3_settings, redis) as http:
        yield http


@pytest.fixture
def bucket(moto_s3):
    name = f"exports-{uuid.uuid4().hex[:12]}"
    moto_s3["s3"].create_bucket(Bucket=name)
    return name


def parquet(rows: list[dict[str, str]]) -> bytes:
    header, _ = sample_rows()
    sink = io.BytesIO()
    pq.write_table(pa.table({name: pa.array([row[name] for row in rows], pa.string()) for name in header}), sink)
    return sink.getvalue()


def deliver(s3, bucket: str, period: str, rows: list[dict[str, str]], *, execution: str, skip_part: int | None = None,
            create_new: bool = False) -> None:
    """One refresh of a billing period as AWS Data Exports writes it: its data files under
    data/BILLING_PERIOD=... (in "create new" mode, in a folder of the run's own), then its
    manifest under metadata/ naming them."""
    run = f"{execution}/" if create_new else ""
    keys = []
    for number, chunk in enumerate(thirds(rows), start=1):
        key = f"{PREFIX}/{EXPORT}/data/BILLING_PERIOD={period}/{run}{EXPORT}-{number:05d}.snappy.parquet"
        if number != skip_part:
            s3.put_object(Bucket=bucket, Key=key, Body=parquet(chunk))
        keys.append(f"s3://{bucket}/{key}")
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD={period}/{run}{EXPORT}-Manifest.json",
                  Body=json.dumps({
                      "executionId": execution, "dataFiles": keys,
                      "exportArn": "arn:aws:bcm-data-exports:us-east-1:123456789012:export/focus-1a2b",
                      "columns": [{"name": "BilledCost", "type": "decimal"}],
                  }).encode())


def source_input(bucket: str, moto_s3: dict, **changes) -> dict:
    return {"name": "AWS billing", "kind": "AWS_S3", "location": f"s3://{bucket}/{PREFIX}", "region": "us-east-1",
            "accessKeyId": moto_s3["key_id"], "secretAccessKey": moto_s3["secret"], **changes}


async def create(client, token: str, data: dict) -> dict:
    result = await gql(client, CREATE, {"input": data}, token)
    return result["data"]["createCostSource"]


async def sync(redis, settings, source_id: str) -> dict:
    """The worker's job, as arq runs it."""
    return await sync_cost_source({"redis": redis, "settings": settings}, str(uuid.UUID(_raw(source_id))))


def _raw(global_id: str) -> str:
    from strawberry import relay

    return relay.from_base64(global_id)[1]


def totals_of(rows) -> dict:
    return expected_totals(rows, {})


# ---------------------------------------------------------------- syncing


async def test_an_aws_export_syncs_imports_once_and_a_redelivery_supersedes(s3_client, world, redis, s3_settings,
                                                                               moto_s3, bucket):
    s3, owner = moto_s3["s3"], world.tokens["owner"]
    current = {period: period_rows(period) for period in PERIODS}
    for period in PERIODS:
        deliver(s3, bucket, period, current[period], execution=f"run-1-{period}")
    created = await create(s3_client, owner, source_input(bucket, moto_s3))
    assert created["__typename"] == "CostSourceSaved", created
    source = created["costSource"]
    assert source["state"] == "NEW" and source["keyHint"] == "…" + moto_s3["key_id"][-4:]

    tested = (await gql(s3_client, TEST, {"id": source["id"]}, owner))["data"]["testCostSource"]
    assert [(m["month"], m["deliveries"], m["imported"]) for m in tested["months"]] == [
        ("2024-09", 1, 0), ("2024-10", 1, 0)]
    assert await CostImport.all().count() == 0

    outcome = await sync(redis, s3_settings, source["id"])
    assert outcome["state"] == "OK" and len(outcome["imported"]) == 2, outcome
    all_rows = [row for period in PERIODS for row in current[period]]
    assert await database_totals(world.org.id) == totals_of(all_rows)
    assert sum(totals_of(all_rows).values()) == sum(
        (Decimal(row["BilledCost"]) for row in all_rows), Decimal(0))
    listed = (await gql(s3_client, LIST, token=owner))["data"]["costSources"]["edges"][0]["node"]
    assert listed["state"] == "OK" and listed["lastSyncAt"] and listed["lastError"] is None
    assert listed["lastDeliveryKey"].endswith(f"{EXPORT}-Manifest.json")
    assert listed["imports"]["totalCount"] == 2
    assert {node["node"]["state"] for node in listed["imports"]["edges"]} == {"DONE"}
    tested = (await gql(s3_client, TEST, {"id": source["id"]}, owner))["data"]["testCostSource"]
    assert [(m["deliveries"], m["imported"]) for m in tested["months"]] == [(1, 1), (1, 1)]

    # Nothing new: the manifests are skipped by key and ETag, their data never read (it is gone).
    for period in PERIODS:
        for number in (1, 2, 3):
            s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{EXPORT}/data/BILLING_PERIOD={period}/{EXPORT}-{number:05d}.snappy.parquet")
    again = await sync(redis, s3_settings, source["id"])
    assert again == {"state": "OK", "imported": [], "waiting": [], "refused": []}
    assert await CostImport.all().count() == 2
    assert await database_totals(world.org.id) == totals_of(all_rows)

    # AWS refreshes October with a restated row: the new delivery supersedes the old one.
    restated = [dict(row) for row in current["2024-10"]]
    restated[0]["BilledCost"] = str(Decimal(restated[0]["BilledCost"]) + Decimal("12.3456"))
    deliver(s3, bucket, "2024-10", restated, execution="run-2-2024-10")
    third = await sync(redis, s3_settings, source["id"])
    assert third["state"] == "OK" and len(third["imported"]) == 1, third
    assert await CostImport.all().count() == 3
    assert await database_totals(world.org.id) == totals_of(current["2024-09"] + restated)
    assert await CostRecord.filter(organization_id=world.org.id).count() == len(all_rows)


async def test_a_refused_delivery_is_not_read_again_but_one_stopped_by_an_internal_error_is(
    s3_client, world, redis, s3_settings, moto_s3, bucket,
):
    from models.costs.importer import INTERNAL_ERROR

    s3, owner = moto_s3["s3"], world.tokens["owner"]
    manifest = f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD=2024-09/{EXPORT}-Manifest.json"
    s3.put_object(Bucket=bucket, Key=manifest, Body=b"not json")
    source = (await create(s3_client, owner, source_input(bucket, moto_s3)))["costSource"]
    first = await sync(redis, s3_settings, source["id"])
    assert first["state"] == "OK" and first["refused"] == [manifest]
    refused = await CostImport.get()
    assert refused.state == "FAILED" and "not an export manifest" in refused.error_message
    assert (await sync(redis, s3_settings, source["id"]))["refused"] == []

    rows = period_rows("2024-09")
    deliver(s3, bucket, "2024-09", rows, execution="run-1")
    etag = s3.head_object(Bucket=bucket, Key=manifest)["ETag"].strip('"')
    await CostImport.create(
        organization_id=world.org.id, cost_source_id=_raw(source["id"]), source_key=manifest, source_etag=etag,
        state="FAILED", error_message=INTERNAL_ERROR,
    )
    again = await sync(redis, s3_settings, source["id"])
    assert again["imported"] == [manifest]
    assert await database_totals(world.org.id) == totals_of(rows)


async def test_sync_cost_source_runs_on_the_worker(s3_client, world, redis, s3_settings, moto_s3, bucket):
    from tests.workers import running

    rows = period_rows("2024-09")
    deliver(moto_s3["s3"], bucket, "2024-09", rows, execution="run-1")
    source = (await create(s3_client, world.tokens["owner"], source_input(bucket, moto_s3)))["costSource"]
    ctx = {"settings": s3_settings, "imports": asyncio.Semaphore(2)}
    async with running(redis, ctx):
        queued = (await gql(s3_client, SYNC, {"id": source["id"]}, world.tokens["owner"]))["data"]["syncCostSource"]
        assert queued["__typename"] == "CostSourceSyncQueued"
        async with asyncio.timeout(60):
            while (await CostSource.get()).state == CostSourceState.NEW:  # noqa: ASYNC110 (the worker signals nothing)
                await asyncio.sleep(0.1)
    assert (await CostSource.get()).state == CostSourceState.OK
    assert await database_totals(world.org.id) == totals_of(rows)
    assert await CostImport.filter(cost_source_id=_raw(source["id"]), state="DONE").count() == 1


async def test_in_create_new_mode_the_latest_run_of_a_period_is_imported(s3_client, world, redis, s3_settings,
                                                                         moto_s3, bucket):
    s3 = moto_s3["s3"]
    deliver(s3, bucket, "2024-09", period_rows("2024-09", scale=2), execution="b-older-run", create_new=True)
    await asyncio.sleep(1.1)  # S3 times objects to the second: the newer run's manifest is written a second later
    rows = period_rows("2024-09")
    deliver(s3, bucket, "2024-09", rows, execution="a-newer-run", create_new=True)
    source = (await create(s3_client, world.tokens["owner"], source_input(bucket, moto_s3)))["costSource"]
    outcome = await sync(redis, s3_settings, source["id"])
    assert outcome["imported"] == [f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD=2024-09/a-newer-run/{EXPORT}-Manifest.json"]
    assert await database_totals(world.org.id) == totals_of(rows)


async def test_a_delivery_still_being_written_waits_for_the_next_sync(s3_client, world, redis, s3_settings, moto_s3,
                                                                      bucket):
    s3, owner = moto_s3["s3"], world.tokens["owner"]
    rows = period_rows("2024-09")
    deliver(s3, bucket, "2024-09", rows, execution="run-1", skip_part=3)
    source = (await create(s3_client, owner, source_input(bucket, moto_s3)))["costSource"]

    first = await sync(redis, s3_settings, source["id"])
    assert first["state"] == "WAITING" and first["imported"] == [] and len(first["waiting"]) == 1
    assert await CostImport.all().count() == 0 and await CostRecord.all().count() == 0
    assert (await CostSource.get(organization_id=world.org.id)).state == CostSourceState.WAITING

    deliver(s3, bucket, "2024-09", rows, execution="run-1")
    second = await sync(redis, s3_settings, source["id"])
    assert second["state"] == "OK" and len(second["imported"]) == 1
    assert await database_totals(world.org.id) == totals_of(rows)


async def test_one_sync_per_source_at_a_time_and_the_schedule_queues_due_sources(s3_client, world, redis, s3_settings,
                                                                                 moto_s3, bucket):
    owner = world.tokens["owner"]
    source = (await create(s3_client, owner, source_input(bucket, moto_s3)))["costSource"]
    source_id = _raw(source["id"])
    await redis.set(lock_key(source_id), "another-sync")
    assert await sync(redis, s3_settings, source["id"]) == {"state": "BUSY"}
    assert await redis.get(lock_key(source_id)) == b"another-sync"
    await redis.delete(lock_key(source_id))

    first = (await gql(s3_client, SYNC, {"id": source["id"]}, owner))["data"]["syncCostSource"]
    second = (await gql(s3_client, SYNC, {"id": source["id"]}, owner))["data"]["syncCostSource"]
    assert (first["__typename"], first["alreadyQueued"], second["alreadyQueued"]) == ("CostSourceSyncQueued", False, True)
    assert await dispatch.is_held(redis, dispatch.cost_source_sync_job_id(source_id))

    await redis.flushdb()
    ctx = {"redis": redis, "settings": s3_settings}
    assert await sync_due_cost_sources(ctx) == 1  # never synced
    await redis.flushdb()
    await sync(redis, s3_settings, source["id"])
    assert await sync_due_cost_sources(ctx) == 0  # synced just now


async def test_a_running_syncs_lock_is_renewed_and_a_lock_taken_over_is_left_alone(redis, monkeypatch):
    from jobs import cost_sources as job

    monkeypatch.setattr(job, "LOCK_SECONDS", 1)
    await redis.set("cost-source-sync:held", "mine", ex=1)
    renewal = asyncio.create_task(job._keep_lock(redis, "cost-source-sync:held", "mine"))
    await asyncio.sleep(2.5)  # more than twice the lock's life: only renewals keep it
    assert await redis.get("cost-source-sync:held") == b"mine"
    await redis.set("cost-source-sync:held", "another", ex=30)
    async with asyncio.timeout(10):
        await renewal  # ends once the lock is no longer its own
    assert await redis.ttl("cost-source-sync:held") > 20


async def test_cost_sources_are_listed_in_the_order_asked(client, world, moto_s3):
    for name in ("b", "c", "a"):
        await create(client, world.tokens["owner"], source_input("exports", moto_s3, name=name))
    query = "query($o: CostSourceOrder) { costSources(orderBy: $o) { edges { node { name } } } }"
    names = [
        [edge["node"]["name"] for edge in (await gql(client, query, {"o": order}, world.tokens["viewer"]))["data"]["costSources"]["edges"]]
        for order in (None, {"field": "NAME", "direction": "DESC"}, {"field": "CREATED_AT"})
    ]
    assert names == [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]]


@pytest.mark.parametrize("state, failures, minutes_ago, due", [
    ("OK", 0, 20, False), ("OK", 0, 6 * 60, True),
    ("WAITING", 0, 10, False), ("WAITING", 0, 16, True),
    ("FAILING", 1, 16, True), ("FAILING", 2, 16, False), ("FAILING", 2, 31, True), ("FAILING", 3, 59, False),
    ("FAILING", 30, 5 * 60, False), ("FAILING", 30, 6 * 60, True),
])
async def test_a_failing_source_is_retried_sooner_then_backs_off_to_the_schedule(
    client, world, redis, settings, moto_s3, state, failures, minutes_ago, due,
):
    source = (await create(client, world.tokens["owner"], source_input("exports", moto_s3)))["costSource"]
    now = datetime.now(UTC)
    await CostSource.filter(id=_raw(source["id"])).update(
        state=state, failures=failures, last_sync_at=now - timedelta(minutes=minutes_ago, seconds=1),
    )
    ctx = {"redis": redis, "settings": settings.model_copy(update={"cost_source_sync_hours": 6, "cost_source_retry_minutes": 15})}
    assert await sync_due_cost_sources(ctx) == int(due)
    assert await dispatch.is_held(redis, dispatch.cost_source_sync_job_id(_raw(source["id"]))) == due


# ---------------------------------------------------------------- an S3 role to assume


@pytest.fixture
def s3_role(moto_s3):
    """A role in moto's IAM that the reader may assume, allowed to read S3 (or not)."""
    iam = moto_s3["iam"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/billing-reader"}, "Action": "sts:AssumeRole"}]})
    name = f"billing-{uuid.uuid4().hex[:8]}"
    reader = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    blind = iam.create_role(RoleName=f"{name}-blind", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return {"reader": reader, "blind": blind}


async def test_an_s3_source_reads_through_a_role_assumed_with_its_access_key(client, world, redis, settings, moto_s3,
                                                                             s3_role, caplog):
    caplog.set_level(logging.DEBUG)
    s3_settings = settings.model_copy(update={"aws_s3_endpoint_url": moto_s3["endpoint"],
                                              "aws_sts_endpoint_url": moto_s3["endpoint"], "cost_source_timeout_seconds": 10})
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    moto_s3["s3"].create_bucket(Bucket=bucket)
    rows = period_rows("2024-09")
    deliver(moto_s3["s3"], bucket, "2024-09", rows, execution="run-1")
    owner = world.tokens["owner"]
    async with client_of(s3_settings, redis) as http:
        saved = await create(http, owner, source_input(bucket, moto_s3, roleArn=s3_role["reader"], externalId="msp-4242"))
        assert saved["__typename"] == "CostSourceSaved", saved
        assert saved["costSource"]["keyHint"] == "…" + moto_s3["key_id"][-4:]
        outcome = await sync(redis, s3_settings, saved["costSource"]["id"])
        assert outcome["state"] == "OK" and outcome["imported"] == [
            f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD=2024-09/{EXPORT}-Manifest.json"], outcome
        assert await database_totals(world.org.id) == totals_of(rows)

        blind = await create(http, owner, source_input(bucket, moto_s3, name="blind", roleArn=s3_role["blind"]))
        tested = (await gql(http, TEST, {"id": blind["costSource"]["id"]}, owner))["data"]["testCostSource"]
        assert (tested["__typename"], tested["problem"]) == ("CostSourceUnreadableError", "ACCESS_DENIED"), tested
        assert await sync(redis, s3_settings, blind["costSource"]["id"]) == {"state": "FAILING", "problem": "ACCESS_DENIED"}
        for changes, field in (({"roleArn": "role/billing"}, "roleArn"), ({"externalId": "msp-4242"}, "externalId"),
                               ({"kind": "S3_COMPATIBLE", "endpoint": "https://s3.example.com", "roleArn": s3_role["reader"]},
                                "roleArn")):
            answer = await create(http, owner, source_input(bucket, moto_s3, name="bad", **changes))
            assert (answer["__typename"], answer["field"]) == ("ValidationError", field), answer
        fixed = (await gql(http, UPDATE, {"id": blind["costSource"]["id"], "input": {
            "accessKeyId": moto_s3["key_id"], "secretAccessKey": moto_s3["secret"], "roleArn": s3_role["reader"]}},
            owner))["data"]["updateCostSource"]
        assert fixed["costSource"]["state"] == "NEW"
    assert await CostImport.filter(state="DONE").count() == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert moto_s3["secret"] not in logged


# ---------------------------------------------------------------- refusals


async def test_refused_credentials_and_a_missing_bucket_are_typed_and_change_nothing(s3_client, world, redis,
                                                                                    s3_settings, moto_s3, bucket, caplog):
    caplog.set_level(logging.DEBUG)
    s3, owner = moto_s3["s3"], world.tokens["owner"]
    deliver(s3, bucket, "2024-09", period_rows("2024-09"), execution="run-1")
    wrong_secret = "wRoNg" + moto_s3["secret"][5:]
    wrong = (await create(s3_client, owner, source_input(bucket, moto_s3, secretAccessKey=wrong_secret)))["costSource"]
    unknown = (await create(s3_client, owner, source_input(bucket, moto_s3, name="unknown key",
                                                         accessKeyId="AKIAUNKNOWNKEY000000")))["costSource"]
    missing = (await create(s3_client, owner, source_input(f"{bucket}-gone", moto_s3, name="gone")))["costSource"]

    for source, problem, field in ((wrong, "ACCESS_DENIED", "accessKeyId"), (unknown, "ACCESS_DENIED", "accessKeyId"),
                                   (missing, "BUCKET_NOT_FOUND", "location")):
        response = await s3_client.post("/graphql", json={"query": TEST, "variables": {"id": source["id"]}},
                                        headers={"Authorization": f"Bearer {owner}"})
        tested = response.json()["data"]["testCostSource"]
        assert (tested["__typename"], tested["code"], tested["problem"], tested["field"]) == (
            "CostSourceUnreadableError", "COST_SOURCE_UNREADABLE", problem, field)
        assert moto_s3["secret"] not in response.text and wrong_secret not in response.text
        assert "http" not in tested["message"] and "RequestId" not in tested["message"]
        outcome = await sync(redis, s3_settings, source["id"])
        assert outcome == {"state": "FAILING", "problem": problem}
        await sync(redis, s3_settings, source["id"])
        assert (await CostSource.get(id=_raw(source["id"]))).failures == 2
    assert await CostImport.all().count() == 0 and await CostRecord.all().count() == 0
    listed = (await gql(s3_client, LIST, token=owner))["data"]["costSources"]["edges"]
    for edge in listed:
        assert edge["node"]["state"] == "FAILING" and edge["node"]["lastError"]
        assert moto_s3["secret"] not in json.dumps(edge) and moto_s3["endpoint"] not in edge["node"]["lastError"]
    fixed = (await gql(s3_client, UPDATE, {"id": wrong["id"], "input": {
        "accessKeyId": moto_s3["key_id"], "secretAccessKey": moto_s3["secret"]}}, owner))["data"]["updateCostSource"]
    assert (fixed["costSource"]["state"], fixed["costSource"]["lastError"]) == ("NEW", None)
    assert (await CostSource.get(id=_raw(wrong["id"]))).failures == 0
    assert (await sync(redis, s3_settings, wrong["id"]))["state"] == "OK"
    assert await CostImport.filter(state="DONE").count() == 1
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith(("infra", "jobs", "models")))
    assert "unreadable" in logged
    assert moto_s3["secret"] not in logged and wrong_secret not in logged and moto_s3["key_id"] not in logged


async def test_a_delivery_past_the_storage_room_is_refused_and_leaves_nothing(s3_client, world, redis, s3_settings,
                                                                             moto_s3, bucket):
    from infra import storage

    deliver(moto_s3["s3"], bucket, "2024-09", period_rows("2024-09"), execution="run-1")
    source = (await create(s3_client, world.tokens["owner"], source_input(bucket, moto_s3)))["costSource"]
    cramped = s3_settings.model_copy(update={"max_stored_delivery_bytes": 2000})
    assert await sync(redis, cramped, source["id"]) == {"state": "FAILING", "problem": "TOO_LARGE"}
    assert await CostImport.all().count() == 0 and await CostRecord.all().count() == 0
    assert storage.used_bytes(cramped, storage.delivery_folder(world.org.id)) == 0
    assert "room left" in (await CostSource.get()).last_error
    assert (await sync(redis, s3_settings, source["id"]))["state"] == "OK"


async def test_a_private_endpoint_and_other_locations_are_refused_before_anything_is_saved(client, world, moto_s3):
    owner = world.tokens["owner"]
    local = source_input("exports", moto_s3, kind="S3_COMPATIBLE", region="", endpoint=moto_s3["endpoint"])
    refused = await create(client, owner, local)
    assert (refused["__typename"], refused["problem"], refused["field"]) == (
        "CostSourceUnreadableError", "ENDPOINT_REFUSED", "endpoint")
    link_local = await create(client, owner, dict(local, endpoint="http://169.254.169.254"))
    assert link_local["problem"] == "ENDPOINT_REFUSED"
    for changes, field in (
        ({"location": "gs://exports/cur"}, "location"), ({"location": "https://exports/cur"}, "location"),
        ({"kind": "AZURE_BLOB"}, "location"), ({"kind": "GCS", "location": "gs://exports/cur"}, "accessKeyId"),
        ({"endpoint": "https://s3.example.com"}, "endpoint"), ({"region": ""}, "region"),
        ({"endpoint": "file:///etc", "kind": "S3_COMPATIBLE"}, "endpoint"),
    ):
        answer = await create(client, owner, source_input("exports", moto_s3, **changes))
        assert (answer["__typename"], answer["field"]) == ("ValidationError", field), (changes, answer)
    assert await CostSource.all().count() == 0


# ---------------------------------------------------------------- who may do what


@pytest.mark.parametrize("role, expected", [
    ("owner", "CostSourceSaved"), ("viewer", "FORBIDDEN"), ("customer", "FORBIDDEN"), ("foreign_owner", "NotFoundError"),
])
async def test_writes_by_scope(client, world, moto_s3, role, expected, redis):
    source = (await create(client, world.tokens["owner"], source_input("exports", moto_s3)))["costSource"]
    token = world.tokens[role]
    created = await gql(client, CREATE, {"input": source_input("exports", moto_s3, name="second")}, token)
    updated = await gql(client, UPDATE, {"id": source["id"], "input": {"name": "renamed"}}, token)
    tested = await gql(client, TEST, {"id": source["id"]}, token)
    synced = await gql(client, SYNC, {"id": source["id"]}, token)
    deleted = await gql(client, DELETE, {"id": source["id"]}, token)
    if expected == "FORBIDDEN":
        for result in (created, updated, tested, synced, deleted):
            assert error_codes(result) == ["FORBIDDEN"]
        assert await CostSource.all().count() == 1
        assert (await CostSource.get()).name == "AWS billing"
        return
    if expected == "NotFoundError":
        assert created["data"]["createCostSource"]["__typename"] == "CostSourceSaved"  # its own organization's
        for result, name in ((updated, "updateCostSource"), (tested, "testCostSource"), (synced, "syncCostSource"),
                             (deleted, "deleteCostSource")):
            assert result["data"][name]["__typename"] == "NotFoundError"
        assert (await CostSource.get(organization_id=world.org.id)).name == "AWS billing"
        assert not await dispatch.is_held(redis, dispatch.cost_source_sync_job_id(_raw(source["id"])))
        return
    assert created["data"]["createCostSource"]["__typename"] == expected
    assert updated["data"]["updateCostSource"]["costSource"]["name"] == "renamed"
    assert synced["data"]["syncCostSource"]["__typename"] == "CostSourceSyncQueued"
    assert deleted["data"]["deleteCostSource"]["__typename"] == "CostSourceDeleted"
    assert await CostSource.filter(organization_id=world.org.id).count() == 1


@pytest.mark.parametrize("role, sees", [
    ("owner", 1), ("viewer", 1), ("customer", None), ("other_customer", None), ("foreign_owner", 0),
])
async def test_reads_by_scope_never_show_the_credentials(client, world, moto_s3, role, sees):
    source = (await create(client, world.tokens["owner"], source_input("exports", moto_s3)))["costSource"]
    response = await client.post("/graphql", json={"query": LIST}, headers={"Authorization": f"Bearer {world.tokens[role]}"})
    node = await gql(client, NODE, {"id": source["id"]}, world.tokens[role])
    assert moto_s3["secret"] not in response.text and moto_s3["key_id"] not in response.text
    if sees is None:
        assert error_codes(response.json()) == ["FORBIDDEN"]
    else:
        assert response.json()["data"]["costSources"]["totalCount"] == sees
    assert (node["data"]["node"] is not None) == bool(sees)


async def test_credentials_are_sealed_at_rest(client, world, moto_s3, settings):
    await create(client, world.tokens["owner"], source_input("exports", moto_s3))
    row = await CostSource.get()
    assert moto_s3["secret"] not in row.credentials and moto_s3["key_id"] not in row.credentials
    assert credentials_of(settings, row).secret_access_key == moto_s3["secret"]
    assert moto_s3["secret"] not in repr(credentials_of(settings, row))
