"""Azure Blob and Cloud Storage cost sources, each against
its real emulator started here on loopback: Azurite (Microsoft's, from the npm registry, installed
by scripts/setup.sh) written through Azure's own SDK as Cost Management writes an export (runs of
one export, each with its manifest.json); fake-gcs-server written through Cloud Storage's JSON
API as a BigQuery export writes Parquet parts. Each kind is
discovered and imported; a second sync with nothing new reads no data; a re-delivery supersedes;
a delivery still being written waits; refused credentials, a missing container or bucket and a
refused endpoint are typed errors that change nothing, with no credential in the answers or logs."""

from __future__ import annotations

import gzip
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from models import CostImport, CostRecord, CostSource
from models.cost_sources import CostSourceState, credentials_of
from tests.conftest import AZURITE_ACCOUNT as ACCOUNT
from tests.conftest import AZURITE_KEY as ACCOUNT_KEY
from tests.graphql import client_of, gql
from tests.test_cost_delivery_layout import period_rows
from tests.test_cost_sources import LIST, TEST, _raw, create, parquet, sync
from tests.test_costs_import import database_totals, expected_totals, sample_rows, to_csv

pytestmark = pytest.mark.slow

EXPORT = "focus-monthly"
DIRECTORY = "exports"


def totals_of(rows) -> dict:
    return expected_totals(rows, {})


# ---------------------------------------------------------------- Azurite


def blob_service(azurite):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={azurite['endpoint']}/{ACCOUNT};"
    )


@pytest.fixture
def container(azurite) -> str:
    name = f"costs-{uuid.uuid4().hex[:12]}"
    blob_service(azurite).create_container(name)
    return name


def sas_token(container: str, key: str = ACCOUNT_KEY) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=2),
    )


@pytest.fixture
def azure_settings(settings, azurite):
    return settings.model_copy(update={"cost_source_private_endpoints": True, "cost_source_timeout_seconds": 10})


@pytest.fixture
async def azure_client(azure_settings, redis):
    async with client_of(azure_settings, redis) as http:
        yield http


def azure_run(
    azurite, container: str, period: tuple[str, str], rows: list[dict[str, str]], run: str, *, submitted: str, skip_part: int | None = None
) -> str:
    """One run of an Azure Cost Management FOCUS export as it lands: gzip CSV parts under
    `<directory>/<export>/<from>-<to>/<run id>/`, then the run's manifest.json naming them
    (blob names from the container's root); the manifest's key."""
    service = blob_service(azurite).get_container_client(container)
    header, _ = sample_rows()
    folder = f"{DIRECTORY}/{EXPORT}/{period[0]}-{period[1]}/{run}"
    names = []
    for number, chunk in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :]), start=1):
        name = f"{folder}/part_0_{number:04d}.csv.gz"
        if number != skip_part:
            service.upload_blob(name, gzip.compress(to_csv(header, chunk)), overwrite=True)
        names.append(name)
    manifest = f"{folder}/manifest.json"
    service.upload_blob(
        manifest,
        json.dumps(
            {
                "manifestVersion": "2024-04-01",
                "byteCount": 0,
                "blobCount": len(names),
                "dataRowCount": len(rows),
                "exportConfig": {
                    "exportName": EXPORT,
                    "resourceId": "/providers/Microsoft.Billing/billingAccounts/1",
                    "dataVersion": "1.0",
                    "apiVersion": "2023-07-01-preview",
                    "type": "FocusCost",
                    "timeFrame": "MonthToDate",
                    "granularity": "Daily",
                },
                "deliveryConfig": {
                    "partitionData": True,
                    "dataOverwriteBehavior": "CreateNewReport",
                    "fileFormat": "Csv",
                    "compressionMode": "gzip",
                    "containerUri": f"/subscriptions/x/storageAccounts/{ACCOUNT}",
                    "rootFolderPath": DIRECTORY,
                },
                "runInfo": {
                    "executionType": "Scheduled",
                    "submittedTime": submitted,
                    "runId": run,
                    "startDate": f"{period[0][:4]}-{period[0][4:6]}-01T00:00:00",
                    "endDate": f"{period[1][:4]}-{period[1][4:6]}-{period[1][6:]}T00:00:00",
                },
                "blobs": [{"blobName": name, "byteCount": 0, "dataRowCount": 0} for name in names],
            }
        ).encode(),
        overwrite=True,
    )
    return manifest


def azure_input(azurite, container: str, **changes) -> dict:
    return {
        "name": "Azure billing",
        "kind": "AZURE_BLOB",
        "location": f"az://{ACCOUNT}.blob.core.windows.net/{container}/{DIRECTORY}",
        "endpoint": azurite["endpoint"],
        "sasToken": sas_token(container),
        **changes,
    }


def blob_reads(azurite, container: str) -> list[str]:
    """The container's blobs read so far: Azurite logs each request's blob, then its operation."""
    text = azurite["log"].read_text()
    blobs = dict(re.findall(rf" (\S+) info: BlobStorageContextMiddleware: Account=\S+ Container={container} Blob=(\S+)", text))
    return [blobs[request] for request in re.findall(r" (\S+) info: DispatchMiddleware: Operation=Blob_Download", text) if request in blobs]


SEPTEMBER = ("20240901", "20240930")


async def test_an_azure_export_syncs_its_latest_run_once_and_a_new_run_supersedes(
    azure_client,
    world,
    redis,
    azure_settings,
    azurite,
    container,
):
    owner = world.tokens["owner"]
    rows = period_rows("2024-09")
    azure_run(azurite, container, SEPTEMBER, period_rows("2024-09", scale=3), "run-a", submitted="2024-10-02T06:00:00Z")
    newest = azure_run(azurite, container, SEPTEMBER, rows, "run-b", submitted="2024-10-05T06:00:00Z")
    created = await create(azure_client, owner, azure_input(azurite, container))
    assert created["__typename"] == "CostSourceSaved", created
    source = created["costSource"]
    assert (source["kind"], source["keyHint"], source["location"]) == (
        "AZURE_BLOB",
        "SAS token",
        f"az://{ACCOUNT}.blob.core.windows.net/{container}/{DIRECTORY}",
    )

    tested = (await gql(azure_client, TEST, {"id": source["id"]}, owner))["data"]["testCostSource"]
    assert [(m["month"], m["deliveries"], m["imported"]) for m in tested["months"]] == [("2024-09", 1, 0)]

    outcome = await sync(redis, azure_settings, source["id"])
    assert outcome["state"] == "OK" and outcome["imported"] == [newest], outcome
    assert await database_totals(world.org.id) == totals_of(rows)

    # Nothing new: the manifest is skipped by its key and ETag, no blob is read again.
    reads = blob_reads(azurite, container)
    assert sorted(reads) == sorted([newest, *(newest.replace("manifest.json", f"part_0_000{n}.csv.gz") for n in (1, 2))])
    again = await sync(redis, azure_settings, source["id"])
    assert again == {"state": "OK", "imported": [], "waiting": [], "refused": []}
    assert blob_reads(azurite, container) == reads
    assert await CostImport.all().count() == 1

    # A later run restates a row: it supersedes the earlier run's costs.
    restated = [dict(row) for row in rows]
    restated[0]["BilledCost"] = str(Decimal(restated[0]["BilledCost"]) + Decimal("7.25"))
    third_run = azure_run(azurite, container, SEPTEMBER, restated, "run-c", submitted="2024-10-06T06:00:00Z")
    third = await sync(redis, azure_settings, source["id"])
    assert third["imported"] == [third_run], third
    assert await database_totals(world.org.id) == totals_of(restated)
    assert await CostRecord.filter(organization_id=world.org.id).count() == len(rows)


async def test_an_azure_run_still_being_written_waits_for_the_next_sync(azure_client, world, redis, azure_settings, azurite, container):
    rows = period_rows("2024-09")
    azure_run(azurite, container, SEPTEMBER, rows, "run-a", submitted="2024-10-02T06:00:00Z", skip_part=2)
    source = (await create(azure_client, world.tokens["owner"], azure_input(azurite, container)))["costSource"]
    first = await sync(redis, azure_settings, source["id"])
    assert first["state"] == "WAITING" and first["imported"] == [] and len(first["waiting"]) == 1
    assert await CostImport.all().count() == 0 and await CostRecord.all().count() == 0

    azure_run(azurite, container, SEPTEMBER, rows, "run-a", submitted="2024-10-02T06:00:00Z")
    second = await sync(redis, azure_settings, source["id"])
    assert second["state"] == "OK" and len(second["imported"]) == 1
    assert await database_totals(world.org.id) == totals_of(rows)


async def test_azure_refusals_are_typed_change_nothing_and_never_show_the_credentials(
    azure_client,
    world,
    redis,
    azure_settings,
    azurite,
    container,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    owner = world.tokens["owner"]
    azure_run(azurite, container, SEPTEMBER, period_rows("2024-09"), "run-a", submitted="2024-10-02T06:00:00Z")
    wrong_key = "A" * 86 + "=="
    forged = sas_token(container, wrong_key)
    cases = {
        "forged SAS": (azure_input(azurite, container, name="forged", sasToken=forged), "ACCESS_DENIED"),
        "wrong key": (azure_input(azurite, container, name="key", sasToken=None, accountKey=wrong_key), "ACCESS_DENIED"),
        "no container": (azure_input(azurite, f"{container}-gone", name="gone", sasToken=None, accountKey=ACCOUNT_KEY), "BUCKET_NOT_FOUND"),
    }
    secrets = [forged, wrong_key, ACCOUNT_KEY, sas_token(container)]
    for data, problem in cases.values():
        source = (await create(azure_client, owner, {k: v for k, v in data.items() if v is not None}))["costSource"]
        response = await azure_client.post(
            "/graphql", json={"query": TEST, "variables": {"id": source["id"]}}, headers={"Authorization": f"Bearer {owner}"}
        )
        tested = response.json()["data"]["testCostSource"]
        assert (tested["__typename"], tested["code"], tested["problem"]) == (
            "CostSourceUnreadableError",
            "COST_SOURCE_UNREADABLE",
            problem,
        ), tested
        assert not any(secret in response.text for secret in secrets)
        assert await sync(redis, azure_settings, source["id"]) == {"state": "FAILING", "problem": problem}
    assert await CostImport.all().count() == 0 and await CostRecord.all().count() == 0

    refused = await create(azure_client, owner, azure_input(azurite, container, name="private"))
    assert refused["__typename"] == "CostSourceSaved"  # the tests allow private endpoints; the server does not:
    strict = azure_settings.model_copy(update={"cost_source_private_endpoints": False})
    async with client_of(strict, redis) as http:
        answer = await create(http, owner, azure_input(azurite, container, name="private 2"))
        assert (answer["__typename"], answer["problem"], answer["field"]) == ("CostSourceUnreadableError", "ENDPOINT_REFUSED", "endpoint")
    assert await sync(redis, strict, refused["costSource"]["id"]) == {"state": "FAILING", "problem": "ENDPOINT_REFUSED"}
    assert await CostImport.all().count() == 0

    listed = await azure_client.post("/graphql", json={"query": LIST}, headers={"Authorization": f"Bearer {owner}"})
    assert not any(secret in listed.text for secret in secrets)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "unreadable" in logged and not any(secret in logged for secret in secrets)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"location": "s3://costs/exports"}, "location"),
        ({"location": "az://costs/exports"}, "location"),
        ({"location": "abfss://costs@devstoreaccount1.dfs.core.windows.net/exports", "sasToken": None}, "sasToken"),
        ({"tenantId": "t"}, "sasToken"),
        ({"sasToken": None, "tenantId": "t", "clientId": "c"}, "clientSecret"),
        ({"accessKeyId": "AKIA0000"}, "accessKeyId"),
        ({"kind": "GCS"}, "location"),
    ],
)
async def test_an_azure_source_takes_its_own_location_and_one_way_of_credentials(azure_client, world, azurite, changes, field):
    data = {k: v for k, v in azure_input(azurite, "costs", **changes).items() if v is not None}
    answer = await create(azure_client, world.tokens["owner"], data)
    assert (answer["__typename"], answer["field"]) == ("ValidationError", field), answer
    assert await CostSource.all().count() == 0


async def test_an_azure_service_principal_is_sealed_and_shown_by_its_client_id_only(azure_client, world, azure_settings, azurite):
    data = {
        k: v
        for k, v in azure_input(
            azurite,
            "costs",
            location=f"abfss://costs@{ACCOUNT}.dfs.core.windows.net/exports/",
            sasToken=None,
            tenantId="72f988bf-0000-0000-0000-2d7cd011db47",
            clientId="a1b2c3d4-0000-0000-0000-00000000beef",
            clientSecret="s3cr3t~value.from-entra",
        ).items()
        if v is not None
    }
    saved = (await create(azure_client, world.tokens["owner"], data))["costSource"]
    assert (saved["keyHint"], saved["location"]) == ("app …beef", f"az://{ACCOUNT}.blob.core.windows.net/costs/exports")
    row = await CostSource.get()
    assert "s3cr3t" not in row.credentials and credentials_of(azure_settings, row).client_secret == "s3cr3t~value.from-entra"


# ---------------------------------------------------------------- fake-gcs-server


@pytest.fixture
def gcs_bucket(fake_gcs) -> str:
    name = f"billing{uuid.uuid4().hex[:12]}"  # no dash: the emulator's log writes a dash %2D
    httpx.post(f"{fake_gcs['endpoint']}/storage/v1/b?project=msp", json={"name": name}).raise_for_status()
    return name


def gcs_put(fake_gcs, bucket: str, key: str, body: bytes) -> None:
    httpx.post(
        f"{fake_gcs['endpoint']}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": key}, content=body
    ).raise_for_status()


def gcs_delete(fake_gcs, bucket: str, key: str) -> None:
    httpx.delete(f"{fake_gcs['endpoint']}/storage/v1/b/{bucket}/o/{quote(key, safe='')}").raise_for_status()


def gcs_reads(fake_gcs, bucket: str) -> int:
    """Objects of the bucket read whole so far (fake-gcs-server logs each request)."""
    return len(re.findall(rf"GET /(?:download/storage/v1/b/)?{bucket}/(?:o/)?\S*part", fake_gcs["log"].read_text()))


def bigquery_export(fake_gcs, bucket: str, period: str, rows: list[dict[str, str]], *, parts: int = 3) -> list[str]:
    """A month exported from BigQuery with `EXPORT DATA OPTIONS(uri='gs://<bucket>/billing/focus/
    BILLING_PERIOD=<YYYY-MM>/part-*.parquet', format='PARQUET')`: numbered Parquet parts."""
    size = len(rows) // 3 + 1
    keys = []
    for number in range(parts):
        key = f"billing/focus/BILLING_PERIOD={period}/part-{number:012d}.parquet"
        gcs_put(fake_gcs, bucket, key, parquet(rows[number * size : (number + 1) * size]))
        keys.append(key)
    return keys


def service_account_key() -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "msp-billing",
            "private_key_id": uuid.uuid4().hex,
            "private_key": private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "client_email": "billing-reader@msp-billing.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


@pytest.fixture(scope="module")
def gcs_key() -> str:
    return service_account_key()


@pytest.fixture
def gcs_settings(settings, fake_gcs):
    return settings.model_copy(
        update={"cost_source_private_endpoints": True, "cost_source_timeout_seconds": 10, "cost_source_quiet_minutes": 0}
    )


@pytest.fixture
async def gcs_client(gcs_settings, redis):
    async with client_of(gcs_settings, redis) as http:
        yield http


def gcs_input(fake_gcs, bucket: str, key: str, **changes) -> dict:
    return {
        "name": "GCP billing",
        "kind": "GCS",
        "location": f"gs://{bucket}/billing",
        "endpoint": fake_gcs["endpoint"],
        "serviceAccountKey": key,
        **changes,
    }


async def test_a_cloud_storage_export_syncs_each_month_once_and_a_new_set_supersedes(
    gcs_client,
    world,
    redis,
    gcs_settings,
    fake_gcs,
    gcs_bucket,
    gcs_key,
):
    owner = world.tokens["owner"]
    current = {period: period_rows(period) for period in ("2024-09", "2024-10")}
    for period, rows in current.items():
        bigquery_export(fake_gcs, gcs_bucket, period, rows)
    gcs_put(fake_gcs, gcs_bucket, "billing/focus/README.txt", b"exported by the scheduled query")
    created = await create(gcs_client, owner, gcs_input(fake_gcs, gcs_bucket, gcs_key))
    assert created["__typename"] == "CostSourceSaved", created
    source = created["costSource"]
    assert (source["keyHint"], source["location"]) == ("…billing-reader", f"gs://{gcs_bucket}/billing")

    tested = (await gql(gcs_client, TEST, {"id": source["id"]}, owner))["data"]["testCostSource"]
    assert [(m["month"], m["deliveries"], m["imported"]) for m in tested["months"]] == [("2024-09", 1, 0), ("2024-10", 1, 0)]
    outcome = await sync(redis, gcs_settings, source["id"])
    assert outcome["state"] == "OK" and outcome["imported"] == [
        "billing/focus/BILLING_PERIOD=2024-09/",
        "billing/focus/BILLING_PERIOD=2024-10/",
    ], outcome
    all_rows = current["2024-09"] + current["2024-10"]
    assert await database_totals(world.org.id) == totals_of(all_rows)

    reads = gcs_reads(fake_gcs, gcs_bucket)
    again = await sync(redis, gcs_settings, source["id"])
    assert again == {"state": "OK", "imported": [], "waiting": [], "refused": []}
    assert gcs_reads(fake_gcs, gcs_bucket) == reads and reads >= 6
    assert await CostImport.all().count() == 2

    # October exported again with a restated row and fewer parts: the new set supersedes.
    restated = [dict(row) for row in current["2024-10"]]
    restated[0]["BilledCost"] = str(Decimal(restated[0]["BilledCost"]) + Decimal("3.5"))
    gcs_delete(fake_gcs, gcs_bucket, "billing/focus/BILLING_PERIOD=2024-10/part-000000000002.parquet")
    for key in bigquery_export(fake_gcs, gcs_bucket, "2024-10", restated, parts=2):
        assert key.endswith(("0.parquet", "1.parquet"))
    third = await sync(redis, gcs_settings, source["id"])
    assert third["imported"] == ["billing/focus/BILLING_PERIOD=2024-10/"], third
    assert await database_totals(world.org.id) == totals_of(current["2024-09"] + restated[: 2 * (len(restated) // 3 + 1)])


async def test_a_cloud_storage_month_still_being_written_waits_until_its_files_are_quiet(
    gcs_client,
    world,
    redis,
    gcs_settings,
    fake_gcs,
    gcs_bucket,
    gcs_key,
):
    rows = period_rows("2024-09")
    bigquery_export(fake_gcs, gcs_bucket, "2024-09", rows)
    source = (await create(gcs_client, world.tokens["owner"], gcs_input(fake_gcs, gcs_bucket, gcs_key)))["costSource"]
    writing = gcs_settings.model_copy(update={"cost_source_quiet_minutes": 10})
    first = await sync(redis, writing, source["id"])
    assert first == {"state": "WAITING", "imported": [], "waiting": ["billing/focus/BILLING_PERIOD=2024-09/"], "refused": []}
    assert await CostImport.all().count() == 0 and gcs_reads(fake_gcs, gcs_bucket) == 0
    assert (await CostSource.get()).state == CostSourceState.WAITING
    second = await sync(redis, gcs_settings, source["id"])
    assert second["state"] == "OK" and len(second["imported"]) == 1
    assert await database_totals(world.org.id) == totals_of(rows)


async def test_cloud_storage_refusals_are_typed_change_nothing_and_never_show_the_key(
    gcs_client,
    world,
    redis,
    gcs_settings,
    fake_gcs,
    gcs_bucket,
    gcs_key,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    owner = world.tokens["owner"]
    private_key = json.loads(gcs_key)["private_key"]
    body = private_key.splitlines()[5]
    for key in (
        "not json",
        json.dumps({"type": "authorized_user", "client_email": "a@b", "private_key": "k"}),
        json.dumps({"type": "service_account", "client_email": "a@b"}),
    ):
        answer = await create(gcs_client, owner, gcs_input(fake_gcs, gcs_bucket, key))
        assert (answer["__typename"], answer["field"]) == ("ValidationError", "serviceAccountKey")
    gone = (await create(gcs_client, owner, gcs_input(fake_gcs, f"{gcs_bucket}-gone", gcs_key)))["costSource"]
    response = await gcs_client.post(
        "/graphql", json={"query": TEST, "variables": {"id": gone["id"]}}, headers={"Authorization": f"Bearer {owner}"}
    )
    tested = response.json()["data"]["testCostSource"]
    # fake-gcs-server answers a missing bucket's listing with a 500 where Cloud Storage answers 404
    # (BUCKET_NOT_FOUND, as the Azure and S3 tests show): a store that fails, told as such.
    assert (tested["__typename"], tested["code"], tested["problem"]) == (
        "CostSourceUnreadableError",
        "COST_SOURCE_UNREADABLE",
        "UNREACHABLE",
    )
    assert await sync(redis, gcs_settings, gone["id"]) == {"state": "FAILING", "problem": "UNREACHABLE"}

    # A key whose private key is no key is refused when the store is made, as Google would refuse it.
    broken = json.dumps(dict(json.loads(gcs_key), private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
    unusable = await create(gcs_client, owner, gcs_input(fake_gcs, gcs_bucket, broken, name="broken", endpoint=""))
    assert unusable["__typename"] == "CostSourceSaved"
    outcome = await sync(redis, gcs_settings, unusable["costSource"]["id"])
    assert outcome == {"state": "FAILING", "problem": "ACCESS_DENIED"}
    assert await CostImport.all().count() == 0 and await CostRecord.all().count() == 0

    listed = await gcs_client.post("/graphql", json={"query": LIST}, headers={"Authorization": f"Bearer {owner}"})
    for text in (listed.text, response.text, "\n".join(record.getMessage() for record in caplog.records)):
        assert body not in text and "PRIVATE KEY" not in text
    row = await CostSource.get(id=_raw(gone["id"]))
    assert body not in row.credentials
