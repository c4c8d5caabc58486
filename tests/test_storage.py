"""The product's files in each kind of store, with the same assertions: the local folder, an S3
bucket (moto's server), an Azure container (Azurite) and a Cloud Storage bucket
(fake-gcs-server), each a real server on loopback. Writes are whole or nothing (a stream that
fails midway leaves nothing), reads stream, folders are counted, removed and purged; a delivery
uploaded through the API is kept in the store and imported from it, an export is downloaded
through `/files`; `invoicing storage copy` copies a local storage into a bucket and checks it.

Cloud Storage's writes are not tested here: obstore writes through Cloud Storage's XML API (an
object is `PUT /<bucket>/<object>`; a large one goes up as an XML multipart upload,
`POST ...?uploads`, `PUT ...?partNumber=&uploadId=`, `POST ...?uploadId=`), and no emulator on
a package registry takes either. fake-gcs-server answers both with 400 "invalid uploadType" (its
XML API takes only signed-URL uploads; XML support is its open issues #331 and #852), and
gcp-storage-emulator stores a PUT but answers without the `ETag` header that obstore requires,
and has no XML multipart upload, XML list or XML delete (501). Everything else obstore does in
a bucket, reading, streaming, listing, zipping, removing and purging, is tested against
fake-gcs-server with the same assertions as the other stores, its files put through its JSON
upload API (docs/operators/deployment.md says so too)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from infra import storage
from models import CostImport, CostRecord
from models.costs import PartTooLarge
from models.managed_accounts import SubAccount
from tests.conftest import AZURITE_ACCOUNT, AZURITE_KEY
from tests.graphql import client_of, gql
from tests.test_costs_import import AWS_BIG, sample_rows, to_csv
from tests.test_exports import EXPORT, SEPTEMBER, _path, _september

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def s3_settings(moto: dict, bucket: str, prefix: str = "files") -> dict:
    """The settings of a STORAGE_URL in moto's server (a bucket made for it)."""
    moto["s3"].create_bucket(Bucket=bucket)
    return {
        "storage_url": f"s3://{bucket}/{prefix}",
        "storage_endpoint_url": moto["endpoint"],
        "storage_access_key_id": moto["key_id"],
        "storage_secret_access_key": SecretStr(moto["secret"]),
        "storage_region": "us-east-1",
    }


def _azure(request) -> dict:
    from azure.storage.blob import BlobServiceClient

    azurite = request.getfixturevalue("azurite")
    container = f"files-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={azurite['endpoint']}/{AZURITE_ACCOUNT};"
    ).create_container(container)
    return {
        "storage_url": f"az://{container}/files",
        "storage_endpoint_url": azurite["endpoint"],
        "storage_azure_account": AZURITE_ACCOUNT,
        "storage_azure_account_key": SecretStr(AZURITE_KEY),
    }


@pytest.fixture(params=["local", "s3", "azure"])
def kept(request, settings, tmp_path):
    """Settings whose files are kept in the parametrised kind of store (a fresh one each test).
    Cloud Storage has tests of their own, its files put by the emulator's JSON API (obstore's
    XML API writes are taken by no emulator: see above)."""
    local = {"storage_dir": tmp_path / "storage"}
    if request.param == "local":
        return settings.model_copy(update=local)
    if request.param == "s3":
        changes = s3_settings(request.getfixturevalue("moto_s3"), f"files-{uuid.uuid4().hex[:12]}")
    else:
        changes = _azure(request)
    return settings.model_copy(update={**local, **changes})


def nothing_local(settings) -> bool:
    """Whether no file was written in the local folder (always true of a local store's own files)."""
    return not settings.storage_url or not any(path.is_file() for path in settings.storage_path.rglob("*"))


async def chunks_of(data: bytes, size: int = MiB, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise PartTooLarge(1)
        yield data[start : start + size]


async def test_a_file_is_saved_whole_read_back_and_streamed(kept):
    data = os.urandom(300_000)
    assert storage.save(kept, "invoices/org/a.pdf", data) == hashlib.sha256(data).hexdigest()
    assert storage.load(kept, "invoices/org/a.pdf") == data
    size, chunks = await storage.stream(kept, "invoices/org/a.pdf")
    assert size == len(data) and b"".join([chunk async for chunk in chunks]) == data
    storage.save(kept, "invoices/org/a.pdf", b"%PDF-second")
    assert storage.load(kept, "invoices/org/a.pdf") == b"%PDF-second"
    assert [file.path for file in storage.listed(kept, "invoices")] == ["invoices/org/a.pdf"]
    with pytest.raises(FileNotFoundError):
        storage.load(kept, "invoices/org/missing.pdf")
    with pytest.raises(FileNotFoundError):
        await storage.stream(kept, "invoices/org/missing.pdf")
    for outside in ("../escape.pdf", "/etc/passwd", "invoices/../../escape.pdf"):
        with pytest.raises(ValueError):
            storage.save(kept, outside, b"x")
    assert nothing_local(kept)


async def test_a_large_stream_goes_up_in_parts_and_a_failed_one_leaves_nothing(kept, tmp_path, request):
    data = os.urandom(2 * storage.CHUNK_BYTES + 3 * MiB)  # three parts of a multipart upload
    size, sha = await storage.save_stream(kept, "cost-deliveries/org/d1/1/big.parquet", chunks_of(data))
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
    copy = await storage.local_copy(kept, "cost-deliveries/org/d1/1/big.parquet", tmp_path / "fetched")
    assert copy.read_bytes() == data
    assert storage.used_bytes(kept, "cost-deliveries/org") == len(data)

    with pytest.raises(PartTooLarge):
        await storage.save_stream(kept, "cost-deliveries/org/d2/1/cut.csv", chunks_of(data, fail_after=18 * MiB))
    assert storage.listed(kept, "cost-deliveries/org/d2") == []
    with pytest.raises(FileNotFoundError):
        storage.load(kept, "cost-deliveries/org/d2/1/cut.csv")
    if kept.storage_url.startswith("s3://"):
        uploads = request.getfixturevalue("moto_s3")["s3"].list_multipart_uploads(Bucket=kept.storage_url.split("/")[2])
        assert uploads.get("Uploads", []) == [], "a failed upload's parts are not left in the bucket"
    assert nothing_local(kept)


async def test_folders_are_counted_zipped_removed_and_purged(kept):
    _folders_are_counted_zipped_removed_and_purged(kept, lambda relative, data: storage.save(kept, relative, data))


def _folders_are_counted_zipped_removed_and_purged(kept, put) -> None:
    files = {"exports/org1/item1/a.csv": b"a" * 10, "exports/org1/item2/b.pdf": b"b" * 20, "exports/org2/item3/c.csv": b"c" * 30}
    for relative, data in files.items():
        put(relative, data)
    assert storage.used_bytes(kept, "exports/org1") == 30 and storage.used_bytes(kept, "exports/none") == 0
    archive = zipfile.ZipFile(
        io.BytesIO(storage.zipped(kept, [("one.csv", "exports/org1/item1/a.csv"), ("two.pdf", "exports/org1/item2/b.pdf")]))
    )
    assert {name: archive.read(name) for name in archive.namelist()} == {"one.csv": b"a" * 10, "two.pdf": b"b" * 20}

    now = datetime.now(UTC)
    assert storage.purge(kept, "exports", older_than=now - timedelta(hours=1)) == 0
    storage.remove(kept, "exports/org1/item2")
    storage.remove(kept, "exports/org1/item2")  # nothing there: nothing done
    assert sorted(file.path for file in storage.listed(kept, "exports")) == ["exports/org1/item1/a.csv", "exports/org2/item3/c.csv"]
    assert storage.purge(kept, "exports", older_than=now + timedelta(minutes=5)) == 2
    assert storage.listed(kept, "exports") == []
    assert nothing_local(kept)


@pytest.fixture
def gcs_files(fake_gcs) -> str:
    bucket = f"files{uuid.uuid4().hex[:12]}"
    httpx.post(f"{fake_gcs['endpoint']}/storage/v1/b?project=msp", json={"name": bucket}).raise_for_status()
    return bucket


@pytest.fixture
def gcs_kept(settings, fake_gcs, gcs_files, tmp_path):
    """Settings whose files are kept in a fresh Cloud Storage bucket of fake-gcs-server."""
    from tests.test_cost_sources_clouds import service_account_key

    return settings.model_copy(
        update={
            "storage_dir": tmp_path / "storage",
            "storage_url": f"gs://{gcs_files}/files",
            "storage_endpoint_url": fake_gcs["endpoint"],
            "storage_gcs_service_account_key": SecretStr(service_account_key()),
        }
    )


async def test_a_cloud_storage_bucket_is_read_streamed_listed_and_fetched(gcs_kept, fake_gcs, gcs_files, tmp_path):
    from tests.test_cost_sources_clouds import gcs_put

    bucket, kept = gcs_files, gcs_kept
    data = os.urandom(storage.CHUNK_BYTES + 5000)
    gcs_put(fake_gcs, bucket, "files/invoices/org/a.pdf", data)
    gcs_put(fake_gcs, bucket, "files/invoices/org/b.pdf", b"%PDF-b")
    assert storage.load(kept, "invoices/org/a.pdf") == data
    size, chunks = await storage.stream(kept, "invoices/org/a.pdf")
    assert size == len(data) and b"".join([chunk async for chunk in chunks]) == data
    assert sorted(file.path for file in storage.listed(kept, "invoices")) == ["invoices/org/a.pdf", "invoices/org/b.pdf"]
    assert storage.used_bytes(kept, "invoices/org") == len(data) + 6
    assert (await storage.local_copy(kept, "invoices/org/b.pdf", tmp_path / "fetched")).read_bytes() == b"%PDF-b"
    with pytest.raises(FileNotFoundError):
        storage.load(kept, "invoices/org/missing.pdf")
    assert nothing_local(kept)


async def test_a_cloud_storage_bucket_s_folders_are_counted_zipped_removed_and_purged(gcs_kept, fake_gcs, gcs_files):
    from tests.test_cost_sources_clouds import gcs_put

    _folders_are_counted_zipped_removed_and_purged(gcs_kept, lambda relative, data: gcs_put(fake_gcs, gcs_files, f"files/{relative}", data))
    assert nothing_local(gcs_kept)


UPLOAD = """mutation($file: Upload!) { importCosts(file: $file, wait: true) {
  __typename ... on CostsImported { rows inserted } ... on UserError { code message field } } }"""


async def _upload(client, token: str, name: str, data: bytes) -> dict:
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps({"query": UPLOAD, "variables": {"file": None}}), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, "text/csv")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["importCosts"]


@pytest.mark.parametrize("kept", ["local", "s3"], indirect=True)
async def test_an_upload_is_kept_in_the_store_imported_from_it_and_an_export_downloaded(kept, world, redis):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    header, rows = sample_rows()
    async with client_of(kept, redis) as client:
        done = await _upload(client, world.tokens["owner"], "costs.csv", to_csv(header, rows))
        assert done == {"__typename": "CostsImported", "rows": len(rows), "inserted": len(rows)}
        cost_import = await CostImport.get()
        (part,) = cost_import.parts
        assert not part[0].startswith("/") and part[1] == "costs.csv", "the part is named by its path in storage"
        assert storage.load(kept, part[0]) == to_csv(header, rows)
        assert await CostRecord.filter(cost_import_id=cost_import.id).count() == len(rows)

        await _september(world)
        export = await gql(client, EXPORT, {"format": "XERO", "filter": SEPTEMBER}, token=world.tokens["owner"])
        link = export["data"]["exportInvoices"]
        response = await client.get(_path(link["url"]))
        assert response.status_code == 200 and response.headers["content-length"] == str(len(response.content))
        assert response.content.startswith(b"*ContactName")
        (stored,) = storage.listed(kept, "exports")
        assert storage.load(kept, stored.path) == response.content
        missing = await client.get(_path(link["url"]).replace("/files/", "/files/x"))
        assert missing.status_code == 404
    assert nothing_local(kept)


def test_storage_copy_moves_a_local_storage_into_a_bucket_and_checks_every_file(settings, moto_s3, tmp_path):
    folder = tmp_path / "storage"
    files = {
        "invoices/o/r1.pdf": os.urandom(5000),
        "exports/o/x/e.csv": b"a,b\n",
        "cost-deliveries/o/d/1/big.csv": os.urandom(storage.CHUNK_BYTES + 1000),
    }
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    changes = s3_settings(moto_s3, f"copy-{uuid.uuid4().hex[:8]}", prefix="prod")
    env = {
        **os.environ,
        **{name.upper(): value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in changes.items()},
    }
    command = [str(ROOT / ".venv" / "bin" / "invoicing"), "storage", "copy", "--from", str(folder)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Copied 3 files ({sum(map(len, files.values())):,} bytes); 3 verified by SHA-256, 0 differ." in " ".join(done.stdout.split())
    bucket = settings.model_copy(update=changes)
    assert {relative: storage.load(bucket, relative) for relative in files} == files
    assert moto_s3["secret"] not in done.stdout + done.stderr

    unset = {name: value for name, value in env.items() if name != "STORAGE_URL"}
    refused = subprocess.run(command, env=unset, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Set STORAGE_URL" in refused.stdout
