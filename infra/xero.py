"""Talking to Xero with its official SDK (`xero-python`): the token endpoint (authorization
code with PKCE, refresh, revocation), the connections endpoint and the Accounting API.

The SDK is synchronous (urllib3): every call runs in a thread, so the event loop goes on.
Every endpoint comes from the settings (the real Xero by default; the tests' local server).
Failures become three kinds: `XeroUnavailable` (the network, Xero's rate limit or a 5xx: try
again later), `XeroUnauthorized` (the access token was refused: refresh, then try again) and
`XeroRefused` (Xero will not take it as it is; its validation messages say why)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import urllib3
from xero_python.accounting import AccountingApi, Allocation, Allocations, CreditNote, CreditNotes, Invoice, Invoices
from xero_python.api_client import ApiClient
from xero_python.api_client.configuration import Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import ApiException
from xero_python.identity import IdentityApi

from infra.settings import Settings
from models.xero.payments import XeroPaymentSeen
from models.xero.tokens import TokenSet

T = TypeVar("T")
# Seconds to connect, then to read an answer.
TIMEOUT = (10, 60)
PAGE_SIZE = 100


class XeroError(Exception):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class XeroUnavailable(XeroError):
    """Xero could not be reached, or asked us to slow down, or failed on its side."""


class XeroUnauthorized(XeroError):
    """Xero refused the access token (expired, or the connection was removed in Xero)."""


class XeroRefused(XeroError):
    """Xero will not take the request as it is (a validation error, a refused grant)."""


@dataclass(frozen=True)
class Found:
    """A document Xero holds under our number."""

    xero_id: str
    status: str
    total: Decimal | None
    contact_name: str


@dataclass(frozen=True)
class Balance:
    """What is left of a document in Xero: an invoice's amount due, a credit note's credit."""

    status: str
    remaining: Decimal


def _client(settings: Settings, access_token: str | None = None) -> ApiClient:
    """An SDK client carrying `access_token`. It never refreshes by itself: our caller keeps
    the token fresh under a lock (Xero rotates refresh tokens; two refreshes would race)."""
    client = ApiClient(Configuration(oauth2_token=OAuth2Token(client_id=settings.xero_client_id)))
    token = {"access_token": access_token, "token_type": "Bearer", "expires_in": None, "scope": None}
    client.oauth2_token_getter(lambda: token)
    return client


def _message_of(exc: ApiException) -> str:
    """Xero's own words: the validation messages of a refused document, the `error` of a
    refused grant, else its status and reason."""
    body = exc.body
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if isinstance(data, dict):
        messages = [
            error.get("Message", "") for element in data.get("Elements") or [] for error in element.get("ValidationErrors") or []
        ]
        if messages:
            # One message per line at fault: the same one for several lines is said once.
            return "; ".join(dict.fromkeys(m for m in messages if m))
        if data.get("Detail") or data.get("Message"):
            return str(data.get("Detail") or data.get("Message"))
        if data.get("error"):
            return str(data["error"])
    return f"Xero answered {exc.status} {exc.reason or ''}".strip()


def _translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except ApiException as exc:
        status = exc.status if isinstance(exc.status, int) else getattr(exc.http_resp, "status", None)
        message = _message_of(exc)
        if status == 429 or (status or 0) >= 500 or not status:
            headers = exc.headers or {}
            retry_after = headers.get("Retry-After") if hasattr(headers, "get") else None
            raise XeroUnavailable(
                f"Xero is unavailable for now ({message}).", status=status,
                retry_after=float(retry_after) if retry_after and str(retry_after).isdigit() else None,
            ) from exc
        if status in (401, 403):
            raise XeroUnauthorized(message, status=status) from exc
        raise XeroRefused(message, status=status) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise XeroUnavailable(f"Xero could not be reached: {exc}") from exc


async def _run(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(_translated, call)


def _token_request(settings: Settings, form: dict[str, str]) -> TokenSet:
    """POST the form to Xero's token endpoint, as a confidential client (HTTP Basic) when the
    app has a secret, else as a public one (the client id in the form; PKCE proves the rest)."""
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    if settings.xero_client_secret:
        credentials = f"{settings.xero_client_id}:{settings.xero_client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    sent_at = time.time()
    response, _, _ = _client(settings).call_api(
        settings.xero_token_url, "POST", header_params=headers,
        post_params={**form, "client_id": settings.xero_client_id}, auth_settings=None,
        _preload_content=False, _return_http_data_only=False, _request_timeout=TIMEOUT,
    )
    data = json.loads(response.data.decode("utf-8"))
    return TokenSet(
        access_token=data["access_token"], refresh_token=data.get("refresh_token") or form.get("refresh_token", ""),
        expires_at=sent_at + float(data.get("expires_in") or 1800), scope=str(data.get("scope") or ""),
    )


async def exchange_code(settings: Settings, code: str, code_verifier: str) -> TokenSet:
    return await _run(lambda: _token_request(settings, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": settings.xero_callback_url,
        "code_verifier": code_verifier,
    }))


async def refresh(settings: Settings, refresh_token: str) -> TokenSet:
    return await _run(lambda: _token_request(settings, {"grant_type": "refresh_token", "refresh_token": refresh_token}))


async def revoke(settings: Settings, refresh_token: str) -> None:
    """Revoke the refresh token (and so the app's connections made with it)."""
    def call() -> None:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if settings.xero_client_secret:
            credentials = f"{settings.xero_client_id}:{settings.xero_client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        _client(settings).call_api(
            settings.xero_revocation_url, "POST", header_params=headers,
            post_params={"token": refresh_token, "client_id": settings.xero_client_id}, auth_settings=None,
            _preload_content=False, _request_timeout=TIMEOUT,
        )

    await _run(call)


async def connections(settings: Settings, access_token: str, auth_event_id: str | None = None) -> list[dict[str, Any]]:
    """The tenants the token may reach, as the connections endpoint lists them; with
    `auth_event_id`, those one authorization connected."""
    def call() -> list[dict[str, Any]]:
        api = IdentityApi(_client(settings, access_token), base_url=settings.xero_identity_api_url)
        event = {"auth_event_id": auth_event_id} if auth_event_id else {}
        return [
            {"id": c.id, "tenantId": c.tenant_id, "tenantType": c.tenant_type, "tenantName": c.tenant_name,
             "authEventId": str(c.auth_event_id) if c.auth_event_id else None,
             "createdDateUtc": c.created_date_utc.isoformat() if isinstance(c.created_date_utc, datetime) else c.created_date_utc}
            for c in api.get_connections(_request_timeout=TIMEOUT, **event)
        ]

    return await _run(call)


def _accounting(settings: Settings, access_token: str) -> AccountingApi:
    return AccountingApi(_client(settings, access_token), base_url=settings.xero_accounting_api_url)


async def short_code(settings: Settings, access_token: str, tenant_id: str) -> str:
    """The organisation's short code, which Xero's deep links need."""
    def call() -> str:
        found = _accounting(settings, access_token).get_organisations(tenant_id, _request_timeout=TIMEOUT)
        return (found.organisations[0].short_code or "") if found.organisations else ""

    return await _run(call)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def find_invoice(settings: Settings, access_token: str, tenant_id: str, number: str) -> Found | None:
    """The sales invoice numbered `number` in Xero (deleted ones aside), if any."""
    def call() -> Found | None:
        found = _accounting(settings, access_token).get_invoices(
            tenant_id, invoice_numbers=[number], unitdp=4, _request_timeout=TIMEOUT)
        for invoice in found.invoices or []:
            if invoice.type == "ACCREC" and invoice.invoice_number == number and invoice.status != "DELETED":
                return Found(invoice.invoice_id, invoice.status, _decimal(invoice.total),
                             invoice.contact.name if invoice.contact else "")
        return None

    return await _run(call)


async def find_credit_note(settings: Settings, access_token: str, tenant_id: str, number: str) -> Found | None:
    def call() -> Found | None:
        where = 'Type=="ACCRECCREDIT" AND CreditNoteNumber=="{}"'.format(number.replace('"', ""))
        found = _accounting(settings, access_token).get_credit_notes(tenant_id, where=where, unitdp=4, _request_timeout=TIMEOUT)
        for note in found.credit_notes or []:
            if note.credit_note_number == number and note.status != "DELETED":
                return Found(note.credit_note_id, note.status, _decimal(note.total), note.contact.name if note.contact else "")
        return None

    return await _run(call)


async def create_document(
    settings: Settings, access_token: str, tenant_id: str, document: Invoice | CreditNote, idempotency_key: str,
) -> Found:
    """Create the invoice or credit note; Xero's idempotency key makes a retried request
    (an answer lost on the way) create it once."""
    def call() -> Found:
        api = _accounting(settings, access_token)
        if isinstance(document, CreditNote):
            notes = api.create_credit_notes(
                tenant_id, CreditNotes(credit_notes=[document]), summarize_errors=True, unitdp=4,
                idempotency_key=idempotency_key, _request_timeout=TIMEOUT,
            ).credit_notes
            return Found(notes[0].credit_note_id, notes[0].status, _decimal(notes[0].total), document.contact.name)
        invoices = api.create_invoices(
            tenant_id, Invoices(invoices=[document]), summarize_errors=True, unitdp=4,
            idempotency_key=idempotency_key, _request_timeout=TIMEOUT,
        ).invoices
        return Found(invoices[0].invoice_id, invoices[0].status, _decimal(invoices[0].total), document.contact.name)

    return await _run(call)


async def invoice_balance(settings: Settings, access_token: str, tenant_id: str, xero_id: str) -> Balance:
    def call() -> Balance:
        (invoice,) = _accounting(settings, access_token).get_invoice(tenant_id, xero_id, unitdp=4, _request_timeout=TIMEOUT).invoices
        return Balance(invoice.status, _decimal(invoice.amount_due) or Decimal(0))

    return await _run(call)


async def credit_note_balance(settings: Settings, access_token: str, tenant_id: str, xero_id: str) -> Balance:
    def call() -> Balance:
        (note,) = _accounting(settings, access_token).get_credit_note(tenant_id, xero_id, unitdp=4, _request_timeout=TIMEOUT).credit_notes
        return Balance(note.status, _decimal(note.remaining_credit) or Decimal(0))

    return await _run(call)


async def allocate_credit_note(
    settings: Settings, access_token: str, tenant_id: str, credit_note_id: str, invoice_id: str, amount: Decimal,
    on: date, idempotency_key: str,
) -> None:
    """Allocate `amount` of the credit note to the invoice (Xero's credit note Allocations,
    which lower the invoice's amount due); the idempotency key makes a retried request
    allocate once."""
    def call() -> None:
        allocation = Allocation(invoice=Invoice(invoice_id=invoice_id), amount=amount, date=on)
        _accounting(settings, access_token).create_credit_note_allocation(
            tenant_id, credit_note_id, Allocations(allocations=[allocation]), summarize_errors=True,
            idempotency_key=idempotency_key, _request_timeout=TIMEOUT,
        )

    await _run(call)


async def void_document(settings: Settings, access_token: str, tenant_id: str, document: Invoice | CreditNote, xero_id: str) -> None:
    """Void in Xero a document we voided (Xero voids an authorised one without payments)."""
    def call() -> None:
        api = _accounting(settings, access_token)
        if isinstance(document, CreditNote):
            api.update_credit_note(tenant_id, xero_id, CreditNotes(credit_notes=[CreditNote(status="VOIDED")]),
                                   _request_timeout=TIMEOUT)
        else:
            api.update_invoice(tenant_id, xero_id, Invoices(invoices=[Invoice(status="VOIDED")]), _request_timeout=TIMEOUT)

    await _run(call)


async def payments(settings: Settings, access_token: str, tenant_id: str, since: datetime | None) -> list[XeroPaymentSeen]:
    """Authorised payments on sales invoices modified since `since` (all when None), every page."""
    def call() -> list[XeroPaymentSeen]:
        api, page = _accounting(settings, access_token), 1
        seen: list[XeroPaymentSeen] = []
        modified = {"if_modified_since": since} if since else {}
        while True:
            found = api.get_payments(
                tenant_id, where='PaymentType=="ACCRECPAYMENT" AND Status=="AUTHORISED"', page=page,
                page_size=PAGE_SIZE, _request_timeout=TIMEOUT, **modified,
            ).payments or []
            seen.extend(
                XeroPaymentSeen(p.payment_id, p.invoice.invoice_id, Decimal(str(p.amount)), p.date, p.reference or "")
                for p in found if p.invoice is not None and p.invoice.invoice_id
            )
            if len(found) < PAGE_SIZE:
                return seen
            page += 1

    return await _run(call)
