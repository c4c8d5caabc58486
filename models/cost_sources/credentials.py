"""A cost source's credentials: checked against its kind of store, sealed at rest under a label
of their own (`models.sealing`), unsealed only for the one place that reaches object stores
(`infra.object_stores`); the API shows a hint of them only."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

from infra.settings import Settings
from models import sealing
from models.cost_sources.tables import S3_KINDS, CostSource, CostSourceKind, CostSourceUnreadable, SourceProblem
from models.errors import ValidationFailed
from models.text import camel

_SEAL_LABEL = b"invoicing cost source credentials"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


@dataclass(frozen=True)
class Credentials:
    """What reaches the store, one kind of it set: S3's access key and/or a role to assume
    (with its external id), Azure's SAS token, service principal or account key, or a
    Google service account's key (its JSON). Used only to reach the store, never shown or logged."""

    access_key_id: str = ""
    secret_access_key: str = ""
    role_arn: str = ""
    external_id: str = ""
    sas_token: str = ""
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    account_key: str = ""
    service_account_key: str = ""

    def __repr__(self) -> str:
        return "Credentials(…)"


CREDENTIAL_FIELDS = tuple(field.name for field in dataclass_fields(Credentials))
# The input field an error about a kind's credentials points at.
CREDENTIAL_FIELD = {
    CostSourceKind.AWS_S3: "accessKeyId", CostSourceKind.S3_COMPATIBLE: "accessKeyId",
    CostSourceKind.AZURE_BLOB: "sasToken", CostSourceKind.GCS: "serviceAccountKey",
}


def _sealer(settings: Settings):
    return sealing.fernet(settings, _SEAL_LABEL)


def seal_credentials(settings: Settings, credentials: Credentials) -> str:
    """The credentials as the `credentials` column holds them (their empty parts left out)."""
    return sealing.seal(_sealer(settings), {name: value for name, value in vars(credentials).items() if value})


def credentials_of(settings: Settings, source: CostSource) -> Credentials:
    """The source's credentials; refused as unreadable when they cannot be unsealed (the
    server's key changed): the owner enters them again."""
    value = sealing.unseal(_sealer(settings), source.credentials)
    if value is None:
        raise CostSourceUnreadable(
            "The source's credentials cannot be read with this server's key; enter them again.",
            SourceProblem.ACCESS_DENIED, field=CREDENTIAL_FIELD[source.kind],
        )
    return Credentials(**{name: str(value[name]) for name in CREDENTIAL_FIELDS if value.get(name)})


def checked_credentials(kind: CostSourceKind, parts: dict[str, str]) -> Credentials:
    """The credentials given (`parts`: each part given, by its `Credentials` name), checked
    against the kind of store: each kind takes its own and no other, each part within bounds."""
    allowed = {
        CostSourceKind.AWS_S3: ("access_key_id", "secret_access_key", "role_arn", "external_id"),
        CostSourceKind.S3_COMPATIBLE: ("access_key_id", "secret_access_key"),
        CostSourceKind.AZURE_BLOB: ("sas_token", "tenant_id", "client_id", "client_secret", "account_key"),
        CostSourceKind.GCS: ("service_account_key",),
    }[kind]
    foreign = [name for name in CREDENTIAL_FIELDS if name in parts and name not in allowed]
    if foreign:
        raise ValidationFailed(f"A {kind.value} source does not take {camel(foreign[0])}.", field=camel(foreign[0]))
    given = {name: parts[name].strip() for name in allowed if name in parts}
    for name, value in given.items():
        if len(value) > (8192 if name == "service_account_key" else 2048):
            raise ValidationFailed("This is longer than such a credential can be.", field=camel(name))
    if kind in S3_KINDS:
        return _s3_credentials(given)
    if kind == CostSourceKind.AZURE_BLOB:
        return _azure_credentials(given)
    return _gcs_credentials(given)


def _s3_credentials(given: dict[str, str]) -> Credentials:
    key_id, secret = given.get("access_key_id", ""), given.get("secret_access_key", "")
    if bool(key_id) != bool(secret):
        raise ValidationFailed("Give the access key id and its secret together.", field="secretAccessKey")
    role, external_id = given.get("role_arn", ""), given.get("external_id", "")
    if not key_id and not role:
        raise ValidationFailed("Give an access key id and its secret, or a role to assume.", field="accessKeyId")
    if role and not _ROLE_ARN.match(role):
        raise ValidationFailed("Give the role as arn:aws:iam::<account>:role/<name>.", field="roleArn")
    if external_id and not role:
        raise ValidationFailed("An external id goes with a role to assume.", field="externalId")
    if external_id and not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", external_id):
        raise ValidationFailed("The external id holds characters AWS does not take.", field="externalId")
    return Credentials(access_key_id=key_id, secret_access_key=secret, role_arn=role, external_id=external_id)


def _azure_credentials(given: dict[str, str]) -> Credentials:
    principal = {name: given.get(name, "") for name in ("tenant_id", "client_id", "client_secret")}
    ways = [bool(given.get("sas_token")), any(principal.values()), bool(given.get("account_key"))]
    if sum(ways) != 1:
        raise ValidationFailed(
            "Give one of: a SAS token, a service principal (tenant id, client id and secret), or the account key.",
            field="sasToken",
        )
    if any(principal.values()) and not all(principal.values()):
        missing = next(name for name, value in principal.items() if not value)
        raise ValidationFailed("Give the service principal's tenant id, client id and secret together.",
                               field=camel(missing))
    return Credentials(sas_token=given.get("sas_token", "").lstrip("?"), account_key=given.get("account_key", ""),
                       **principal)


def _gcs_credentials(given: dict[str, str]) -> Credentials:
    refused = ValidationFailed(
        "Give the service account's key as the JSON file Google Cloud made for it (type service_account, "
        "with its client_email and private_key).", field="serviceAccountKey",
    )
    try:
        key = json.loads(given.get("service_account_key", ""))
    except ValueError:
        raise refused from None
    if not isinstance(key, dict) or key.get("type") != "service_account" or not all(
        isinstance(key.get(name), str) and key[name] for name in ("client_email", "private_key")
    ):
        raise refused
    # Only what identifies the account is kept: a key's other fields (a base URL, a switch that
    # turns signing off) would send the credentials, or the requests, elsewhere.
    kept = {name: key[name] for name in ("type", "project_id", "private_key_id", "private_key", "client_email")
            if isinstance(key.get(name), str)}
    return Credentials(service_account_key=json.dumps(kept))


def key_hint(credentials: Credentials) -> str:
    """What tells the credentials apart without giving any secret away."""
    if credentials.access_key_id:
        return f"…{credentials.access_key_id[-4:]}"
    if credentials.role_arn:
        return f"role …{credentials.role_arn[-9:]}"
    if credentials.sas_token:
        return "SAS token"
    if credentials.client_id:
        return f"app …{credentials.client_id[-4:]}"
    if credentials.account_key:
        return "account key"
    return f"…{json.loads(credentials.service_account_key)['client_email'].split('@')[0][-15:]}"
