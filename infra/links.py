"""Short-lived signed download links, `GET /files/<token>`: a browser's `<a href>` cannot send
an `Authorization` header, so the link itself carries who may download what, for a few
minutes (`LINK_TTL_SECONDS`). Every kind of link is signed, checked and served here
(`signed_download`), each kind through the domain's own scoped query.

A token is an itsdangerous `URLSafeTimedSerializer` value (payload, timestamp, HMAC-SHA256
keyed by `SECRET_KEY` with a salt of its own): readable by whoever holds it, but any change
breaks the signature. The payload names the file (an invoice's PDF or CSV, or an export in
storage), the requester's scope at signing time and the id of the token the requester
presented; the download checks them all again, so a sign-out or a revoked token ends its links.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from infra import storage
from infra.settings import Settings
from models.audit import AUDIT_COLUMNS, audit_rows, parse_filter, visible_entries
from models.base import Scope
from models.costs.usage import usage_account, usage_by_category, usage_csv
from models.credit_notes.queries import visible_credit_notes
from models.einvoicing.document import EDocument
from models.einvoicing.files import UBL_TYPE, credit_note_document, frozen_document
from models.einvoicing.ubl import ubl_xml
from models.exports import CSV_TYPE, DETAILED_COLUMNS, EXPORTS_FOLDER, detailed_rows, load_exported, safe_filename, write_csv
from models.invoices import InvoiceStatus
from models.invoices.queries import visible_invoices
from models.invoices.reconciliation import reconcile, reconciliation_csv
from models.organizations import Organization
from models.statements import STATEMENTS_FOLDER, account_of_path, readable_account

# A salt of their own: a value signed with the same key for another purpose is no link.
SALT = "invoicing.files.v1"
CONTENT_TYPES = {"csv": CSV_TYPE, "zip": "application/zip", "pdf": "application/pdf"}


def clock() -> datetime:
    """The time links are signed and checked at (tests move it)."""
    return datetime.now(UTC)


class _Signer(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(clock().timestamp())


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        settings.signing_key, salt=SALT, signer=_Signer, signer_kwargs={"digest_method": hashlib.sha256}
    )


@dataclass(frozen=True)
class Link:
    url: str
    expires_at: datetime


def _scope(principal) -> dict[str, Any]:
    """Who asked, as it stood when the link was made, and with which token: signing out or
    revoking that token ends its links too."""
    account = principal.managed_account_id
    return {
        "o": str(principal.organization_id), "u": str(principal.user.id), "s": principal.scope.value,
        "a": str(account) if account else None, "tk": str(principal.presented_token.id),
    }


def requester(claims: dict[str, Any]) -> dict[str, Any]:
    """Who a link was made for, as keyword arguments of `models.auth.principal_of_link`."""
    return {
        "user_id": claims["u"], "organization_id": claims["o"], "scope": claims["s"],
        "managed_account_id": claims["a"], "token_id": claims.get("tk"),
    }


def sign(settings: Settings, principal, kind: str, target: str, filename: str = "") -> Link:
    """A link to `target` (an invoice id for kind "pdf" or "csv", a storage path for
    "export") for `principal`."""
    token = _serializer(settings).dumps({"k": kind, "t": target, "f": filename, **_scope(principal)})
    expires_at = clock().replace(microsecond=0) + timedelta(seconds=settings.link_ttl_seconds)
    return Link(url=f"{settings.public_url.rstrip('/')}/files/{token}", expires_at=expires_at)


def verify(settings: Settings, token: str) -> dict[str, Any] | None:
    """The payload of a genuine, unexpired link, else None (expired, altered and forged
    links are not told apart)."""
    try:
        claims = _serializer(settings).loads(token, max_age=settings.link_ttl_seconds)
    except BadData:
        return None
    return claims if isinstance(claims, dict) else None


def publish_export(settings: Settings, principal, filename: str, data: bytes) -> Link:
    """Keep an export in storage (under the organization's folder) and link to it."""
    relative = f"{EXPORTS_FOLDER}/{principal.organization_id}/{uuid.uuid4()}/{filename}"
    storage.save(settings, relative, data)
    return sign(settings, principal, "export", relative, filename)


def purge_exports(settings: Settings) -> int:
    """Delete stored exports whose links can no longer be valid, and the statements of accounts
    none was printed for in a day (printed again when asked for); returns how many."""
    removed = storage.purge(
        settings, EXPORTS_FOLDER, older_than=clock() - timedelta(seconds=settings.link_ttl_seconds + 60)
    )
    return removed + storage.purge(settings, STATEMENTS_FOLDER, older_than=clock() - timedelta(days=1))


@dataclass(frozen=True)
class Download:
    """What a signed link serves: a file in storage (`stored`) or bytes made now (`data`)."""

    filename: str
    content_type: str
    stored: str | None = None
    data: bytes | None = None
    # The stored PDF is served as Factur-X, with this document embedded.
    embed: EDocument | None = None


async def signed_download(principal, kind: str, target: str, filename: str) -> Download | None:
    """The file of a signed link, checked again against what `principal` may see now:
    - "pdf": the stored PDF of the current revision of invoice `target` (its VOID copy once voided);
    - "csv": the DETAILED export of invoice `target`, made now;
    - "export": a stored export at `target`, only for the organization's MSP users;
    - "usage": an account's usage by service category (`account/from/to`), made now, for whoever may read it;
    - "audit": the audit log as CSV (`target` its filter), made now, for owners;
    - "reconciliation": the reconciliation of month `target` as CSV, made now, for MSP users.
    - "credit_note_pdf": the stored PDF of credit note `target`; "credit_note_facturx" and
      "credit_note_ubl": its e-invoice files (type 381), made now;
    - "facturx" and "ubl": the e-invoice files of approved invoice `target`'s frozen revision;
    - "statement": a printed statement of account at `target`, for whoever may read its account.
    None when there is nothing (any longer) to serve."""
    if kind == "credit_note_pdf":
        note = await visible_credit_notes(principal).filter(id=target, pdf_path__isnull=False).first()
        if note is None or note.pdf_path is None:
            return None
        return Download(safe_filename(note.number, "pdf"), CONTENT_TYPES["pdf"], stored=note.pdf_path)
    if kind in ("credit_note_facturx", "credit_note_ubl"):
        note = await visible_credit_notes(principal).filter(id=target, pdf_path__isnull=False).first()
        credited = await credit_note_document(note) if note is not None and note.pdf_path else None
        if note is None or credited is None or note.pdf_path is None:
            return None
        if kind == "credit_note_ubl":
            return Download(safe_filename(f"{note.number}-ubl", "xml"), UBL_TYPE, data=ubl_xml(credited))
        return Download(safe_filename(f"{note.number}-facturx", "pdf"), CONTENT_TYPES["pdf"], stored=note.pdf_path, embed=credited)
    if kind == "statement":
        named = account_of_path(target)
        if named is None or named[0] != str(principal.organization_id) or await readable_account(principal, named[1]) is None:
            return None
        return Download(safe_filename(filename.removesuffix(".pdf") or "statement", "pdf"), CONTENT_TYPES["pdf"], stored=target)
    if kind == "export":
        mine = principal.is_msp_user and target.startswith(f"{EXPORTS_FOLDER}/{principal.organization_id}/")
        return Download(filename, CONTENT_TYPES[filename.rsplit(".", 1)[-1]], stored=target) if mine else None
    if kind == "usage":
        account_id, month_from, month_to = target.split("/")
        account = await usage_account(principal, account_id)
        if account is None:
            return None
        rows = await usage_by_category(account, date.fromisoformat(month_from), date.fromisoformat(month_to))
        return Download(safe_filename(f"usage-{account.name}-{month_from[:7]}-{month_to[:7]}", "csv"), CSV_TYPE,
                        data=usage_csv(account, rows))
    if kind == "audit":
        entries = await visible_entries(principal, parse_filter(target)).order_by("at", "id")
        return Download(filename, CSV_TYPE, data=write_csv(AUDIT_COLUMNS, audit_rows(entries))) if principal.scope == Scope.OWNER else None
    if kind == "reconciliation":
        if not principal.is_msp_user:
            return None
        month = date.fromisoformat(target)
        data = reconciliation_csv(await reconcile(principal.organization_id, month))
        return Download(f"reconciliation-{month:%Y-%m}.csv", CSV_TYPE, data=data)
    query = visible_invoices(principal).filter(id=target, current_revision_id__isnull=False)
    if kind in ("facturx", "ubl"):
        invoice = await query.first()
        frozen = await frozen_document(invoice) if invoice is not None else None
        if frozen is None or not frozen[0].pdf_path:
            return None
        revision, document = frozen
        if kind == "ubl":
            return Download(safe_filename(f"{document.number}-ubl", "xml"), UBL_TYPE, data=ubl_xml(document))
        return Download(safe_filename(f"{document.number}-facturx", "pdf"), CONTENT_TYPES["pdf"], stored=revision.pdf_path, embed=document)
    if kind == "pdf":
        invoice = await query.select_related("current_revision").first()
        if invoice is None or not invoice.current_revision.pdf_path:
            return None
        filename = safe_filename(invoice.number or "invoice", "pdf")
        # A voided invoice is served as its copy marked VOID once that is printed.
        void_copy = invoice.void_pdf_path if invoice.status == InvoiceStatus.VOIDED else None
        return Download(filename, CONTENT_TYPES["pdf"], stored=void_copy or invoice.current_revision.pdf_path)
    items = await load_exported(query) if kind == "csv" else []
    if not items:
        return None
    organization = await Organization.get(id=principal.organization_id)
    data = write_csv(DETAILED_COLUMNS, detailed_rows(items[0], organization.export_date_format))
    return Download(safe_filename(items[0].invoice.number or "invoice", "csv"), CSV_TYPE, data=data)
