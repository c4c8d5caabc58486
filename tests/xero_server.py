"""A local server that speaks the parts of Xero's documented API the product uses, and checks
the shape of every request it gets: the identity token endpoint (authorization code with PKCE,
refresh with rotating refresh tokens, revocation), the connections endpoint, and the
Accounting API's Organisation, Invoices (GET, PUT, POST), CreditNotes (GET, PUT) with their
Allocations (PUT), and Payments (GET), each with `Authorization: Bearer` and `xero-tenant-id`. The tests run the real SDK
against it: there is no internet here."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"
TENANT_ID = "a3b2c1d0-0000-4000-8000-00000000feed"
SHORT_CODE = "!Tst42"


def xero_date(day: date) -> str:
    """Xero's JSON date: milliseconds since the epoch, in `/Date(...)/`."""
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def parse_xero_date(value: str) -> date:
    millis = int(re.match(r"/Date\((-?\d+)", value).group(1))
    return datetime.fromtimestamp(millis / 1000, UTC).date()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeXero:
    """The server's state, which tests read and arrange."""

    redirect_uri: str = ""
    access_token_seconds: int = 1800
    codes: dict[str, dict] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    revoked: list[str] = field(default_factory=list)
    invoices: dict[str, dict] = field(default_factory=dict)
    credit_notes: dict[str, dict] = field(default_factory=dict)
    payments: list[dict] = field(default_factory=list)
    idempotency: dict[str, dict] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The app's connections to tenants, as /connections lists them (tests add other tenants').
    connected: list[dict] = field(default_factory=list)
    events: dict[str, str] = field(default_factory=dict)
    # Arranged failures: the next PUT /Invoices answers each of these (status, body) in turn.
    invoice_put_failures: list[tuple[int, dict]] = field(default_factory=list)

    # -- the browser's part: Xero's authorize page, where the owner says yes ------------------

    def authorize(self, authorize_url: str) -> dict[str, str]:
        """What Xero does when the owner allows the app: check the request, issue a code bound
        to its PKCE challenge, and answer the callback's query."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        expected = {"response_type": "code", "client_id": CLIENT_ID, "code_challenge_method": "S256"}
        for key, value in expected.items():
            assert query.get(key) == value, (key, query)
        assert query["redirect_uri"] == self.redirect_uri
        assert "offline_access" in query["scope"].split()
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"]), "S256 challenge: 43 base64url characters"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": query["redirect_uri"]}
        return {"code": code, "state": query["state"], "scope": query["scope"]}

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (Xero's last 30 minutes)."""
        self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    def add_payment(self, invoice_id: str, amount: str, paid_on: date, reference: str = "") -> str:
        payment_id = str(uuid.uuid4())
        self.payments.append({
            "PaymentID": payment_id, "Invoice": {"InvoiceID": invoice_id}, "Amount": float(amount),
            "Date": xero_date(paid_on), "Reference": reference, "Status": "AUTHORISED", "PaymentType": "ACCRECPAYMENT",
            "UpdatedDateUTC": f"/Date({int(time.time() * 1000)}+0000)/",
        })
        return payment_id

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- the endpoints -------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/identity/connect/token", self.token, methods=["POST"]),
            Route("/identity/connect/revocation", self.revocation, methods=["POST"]),
            # Xero documents /connections; the SDK asks for /Connections (paths are case-insensitive there).
            Route("/connections", self.connections, methods=["GET"]),
            Route("/Connections", self.connections, methods=["GET"]),
            Route("/api.xro/2.0/Organisation", self.organisation, methods=["GET"]),
            Route("/api.xro/2.0/Invoices", self.invoices_endpoint, methods=["GET", "PUT"]),
            Route("/api.xro/2.0/Invoices/{invoice_id}", self.invoice_update, methods=["GET", "POST"]),
            Route("/api.xro/2.0/CreditNotes", self.credit_notes_endpoint, methods=["GET", "PUT"]),
            Route("/api.xro/2.0/CreditNotes/{credit_note_id}", self.credit_note_get, methods=["GET"]),
            Route("/api.xro/2.0/CreditNotes/{credit_note_id}/Allocations", self.allocations, methods=["PUT"]),
            Route("/api.xro/2.0/Payments", self.payments_endpoint, methods=["GET"]),
        ])

    async def _record(self, request: Request) -> Recorded:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            body: Any = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        elif raw:
            body = json.loads(raw)
        else:
            body = None
        recorded = Recorded(request.method, request.url.path, parse_qs(request.url.query), dict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    def _check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def _client_authenticated(self, seen: Recorded) -> bool:
        basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        return seen.headers.get("authorization") == basic and seen.body.get("client_id") == CLIENT_ID

    def _issue(self, event_id: str) -> dict:
        """Tokens of one authorization: the access token is a JWT whose `authentication_event_id`
        names it (as Xero's do; the signature is not checked by its users), the refresh token
        keeps it."""
        claims = {"authentication_event_id": event_id, "jti": secrets.token_hex(8), "exp": int(time.time()) + self.access_token_seconds}
        part = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()  # noqa: E731
        access = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(24)}"
        refresh = secrets.token_urlsafe(24)
        self.access_tokens[access] = time.time() + self.access_token_seconds
        self.refresh_tokens.add(refresh)
        self.events[refresh] = event_id
        return {"access_token": access, "refresh_token": refresh, "expires_in": self.access_token_seconds,
                "token_type": "Bearer", "scope": "offline_access accounting.transactions"}

    async def token(self, request: Request) -> Response:
        seen = await self._record(request)
        if not seen.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if not self._client_authenticated(seen):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = seen.body
        if form.get("grant_type") == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if issued is None or issued["challenge"] != challenge or form.get("redirect_uri") != issued["redirect_uri"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            # Each authorization connects our tenant anew, under an authEventId of its own.
            event_id = str(uuid.uuid4())
            self.connected.append({
                "id": "0d1e2f30-0000-4000-8000-000000000001", "authEventId": event_id, "tenantId": TENANT_ID,
                "tenantType": "ORGANISATION", "tenantName": "Northwind Cloud (Xero)",
                "createdDateUtc": "2026-12-01T10:00:00.0000000", "updatedDateUtc": "2026-12-01T10:00:00.0000000",
            })
            return JSONResponse(self._issue(event_id))
        if form.get("grant_type") == "refresh_token":
            refresh = form.get("refresh_token", "")
            if refresh not in self.refresh_tokens:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            # Xero rotates refresh tokens: the one used is spent.
            self.refresh_tokens.discard(refresh)
            return JSONResponse(self._issue(self.events.get(refresh, "")))
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    async def revocation(self, request: Request) -> Response:
        seen = await self._record(request)
        if not self._client_authenticated(seen):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.refresh_tokens.discard(seen.body.get("token", ""))
        self.revoked.append(seen.body.get("token", ""))
        return Response(status_code=200)

    def _authorized(self, seen: Recorded, *, tenant: bool = True) -> Response | None:
        """A 401 unless the bearer token is live; with `tenant`, a 403 unless xero-tenant-id names ours."""
        header = seen.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer ") or self.access_tokens.get(token, 0) <= time.time():
            return JSONResponse({"Type": None, "Title": "Unauthorized", "Status": 401, "Detail": "TokenExpired"}, status_code=401)
        if tenant and seen.headers.get("xero-tenant-id") != TENANT_ID:
            return JSONResponse({"Title": "Forbidden", "Status": 403, "Detail": "AuthenticationUnsuccessful"}, status_code=403)
        self._check(seen.headers.get("accept", "").startswith("application/json"), f"{seen.path}: Accept is not JSON")
        return None

    async def connections(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen, tenant=False):
            return refused
        # One entry per tenant, its latest authorization's; `authEventId` narrows to one authorization's.
        latest = {c["tenantId"]: c for c in self.connected}
        event_id = seen.query.get("authEventId", [None])[0]
        return JSONResponse([c for c in latest.values() if event_id is None or c["authEventId"] == event_id])

    async def organisation(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        return JSONResponse({"Organisations": [{"Name": "Northwind Cloud (Xero)", "ShortCode": SHORT_CODE}]})

    async def invoices_endpoint(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        if request.method == "GET":
            numbers = ",".join(seen.query.get("InvoiceNumbers", [])).split(",")
            found = [i for i in self.invoices.values() if i["InvoiceNumber"] in numbers]
            return JSONResponse({"Invoices": found})
        return self._create(seen, "Invoices", self.invoices, "InvoiceID", "InvoiceNumber", "ACCREC")

    async def credit_notes_endpoint(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        if request.method == "GET":
            where = seen.query.get("where", [""])[0]
            number = re.search(r'CreditNoteNumber=="([^"]*)"', where)
            found = [n for n in self.credit_notes.values() if number and n["CreditNoteNumber"] == number.group(1)]
            return JSONResponse({"CreditNotes": found})
        return self._create(seen, "CreditNotes", self.credit_notes, "CreditNoteID", "CreditNoteNumber", "ACCRECCREDIT")

    def _create(self, seen: Recorded, key: str, store: dict, id_key: str, number_key: str, kind: str) -> Response:
        self._check(seen.headers.get("content-type", "").startswith("application/json"), f"{key}: body is not JSON")
        idempotency_key = seen.headers.get("idempotency-key", "")
        self._check(0 < len(idempotency_key) <= 128, f"{key}: no Idempotency-Key")
        if idempotency_key in self.idempotency:
            return JSONResponse(self.idempotency[idempotency_key])
        if key == "Invoices" and self.invoice_put_failures:
            status, body = self.invoice_put_failures.pop(0)
            return JSONResponse(body, status_code=status)
        documents = (seen.body or {}).get(key) or []
        self._check(len(documents) == 1, f"{key}: one document per request")
        document = dict(documents[0])
        errors = self._validate(document, kind, number_key)
        if errors:
            return JSONResponse({
                "ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
                "Elements": [{**document, "ValidationErrors": [{"Message": m} for m in errors]}],
            }, status_code=400)
        total = sum(
            (Decimal(str(line["Quantity"])) * Decimal(str(line["UnitAmount"]))).quantize(Decimal("0.01"))
            for line in document["LineItems"]
        )
        document.update({id_key: str(uuid.uuid4()), "Total": float(total), "SubTotal": float(total), "TotalTax": 0.0,
                         "Allocations": []})
        # What is left: an invoice's amount due, a credit note's credit (allocations lower both).
        document["AmountDue" if key == "Invoices" else "RemainingCredit"] = float(total)
        store[document[id_key]] = document
        answer = {"Id": str(uuid.uuid4()), "Status": "OK", key: [document]}
        self.idempotency[idempotency_key] = answer
        return JSONResponse(answer)

    def _validate(self, document: dict, kind: str, number_key: str) -> list[str]:
        """Xero's rules that matter here, and the request's shape."""
        errors = []
        self._check(document.get("Type") == kind, f"Type is {document.get('Type')}, not {kind}")
        self._check(document.get("Status") == "AUTHORISED", "not AUTHORISED")
        self._check(document.get("LineAmountTypes") == "Exclusive", "LineAmountTypes is not Exclusive")
        self._check(re.fullmatch(r"/Date\(\d+\)/", document.get("Date", "")) is not None, "Date is not /Date(ms)/")
        self._check(bool(document.get(number_key)), f"no {number_key}")
        self._check(bool(document.get("CurrencyCode")), "no CurrencyCode")
        if not (document.get("Contact") or {}).get("Name"):
            errors.append("A Contact must be specified for this type of transaction")
        for line in document.get("LineItems") or []:
            for name in ("Description", "Quantity", "UnitAmount", "AccountCode", "TaxType"):
                self._check(name in line, f"a line without {name}")
            if line.get("AccountCode") == "999":
                errors.append("Account code '999' is not a valid code for this document.")
        if not document.get("LineItems"):
            errors.append("At least one line item is required.")
        if any(n == document.get(number_key) for n in (d.get(number_key) for d in [*self.invoices.values(), *self.credit_notes.values()])):
            errors.append(f"{number_key} must be unique.")
        return errors

    async def invoice_update(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        invoice = self.invoices.get(request.path_params["invoice_id"])
        if invoice is None:
            return JSONResponse({"Title": "Not Found"}, status_code=404)
        if request.method == "GET":
            return JSONResponse({"Invoices": [invoice]})
        change = ((seen.body or {}).get("Invoices") or [{}])[0]
        invoice.update({k: v for k, v in change.items() if k == "Status"})
        return JSONResponse({"Invoices": [invoice]})

    async def credit_note_get(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        note = self.credit_notes.get(request.path_params["credit_note_id"])
        if note is None:
            return JSONResponse({"Title": "Not Found"}, status_code=404)
        return JSONResponse({"CreditNotes": [note]})

    async def allocations(self, request: Request) -> Response:
        """Xero's credit note allocation: part of the credit note's remaining credit pays the
        invoice, whose amount due goes down by as much (PAID at nothing due), as does the
        credit note's remaining credit. Never more than either, only between authorised
        documents of one contact."""
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        idempotency_key = seen.headers.get("idempotency-key", "")
        self._check(0 < len(idempotency_key) <= 128, "Allocations: no Idempotency-Key")
        if idempotency_key in self.idempotency:
            return JSONResponse(self.idempotency[idempotency_key])
        note = self.credit_notes.get(request.path_params["credit_note_id"])
        if note is None:
            return JSONResponse({"Title": "Not Found"}, status_code=404)
        allocations = (seen.body or {}).get("Allocations") or []
        self._check(len(allocations) == 1, "Allocations: one allocation per request")
        allocation = allocations[0]
        invoice = self.invoices.get((allocation.get("Invoice") or {}).get("InvoiceID", ""))
        self._check(re.fullmatch(r"/Date\(\d+\)/", allocation.get("Date", "")) is not None, "Allocation Date is not /Date(ms)/")
        amount = Decimal(str(allocation.get("Amount", 0)))
        errors = []
        if invoice is None:
            errors.append("Invoice could not be found")
        elif invoice["Status"] != "AUTHORISED" or note["Status"] != "AUTHORISED":
            errors.append("Only authorised documents can be allocated")
        elif invoice["Contact"]["Name"] != note["Contact"]["Name"]:
            errors.append("The credit note and the invoice must belong to the same contact")
        elif not 0 < amount <= min(Decimal(str(invoice["AmountDue"])), Decimal(str(note["RemainingCredit"]))):
            errors.append("The amount allocated must not be more than the remaining credit or the amount due")
        if errors:
            return JSONResponse({"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
                                 "Elements": [{**allocation, "ValidationErrors": [{"Message": m} for m in errors]}]}, status_code=400)
        record = {"AllocationID": str(uuid.uuid4()), "Amount": float(amount), "Date": allocation["Date"]}
        invoice["AmountDue"] = float(Decimal(str(invoice["AmountDue"])) - amount)
        invoice["AmountCredited"] = float(Decimal(str(invoice.get("AmountCredited", 0))) + amount)
        note["RemainingCredit"] = float(Decimal(str(note["RemainingCredit"])) - amount)
        invoice["Allocations"].append({**record, "CreditNote": {"CreditNoteID": note["CreditNoteID"]}})
        note["Allocations"].append({**record, "Invoice": {"InvoiceID": invoice["InvoiceID"]}})
        for document, left in ((invoice, "AmountDue"), (note, "RemainingCredit")):
            if document[left] == 0:
                document["Status"] = "PAID"
        answer = {"Allocations": [{**record, "Invoice": {"InvoiceID": invoice["InvoiceID"]}}]}
        self.idempotency[idempotency_key] = answer
        return JSONResponse(answer)

    async def payments_endpoint(self, request: Request) -> Response:
        seen = await self._record(request)
        if refused := self._authorized(seen):
            return refused
        where = seen.query.get("where", [""])[0]
        self._check('PaymentType=="ACCRECPAYMENT"' in where, "payments not filtered to sales")
        page = int(seen.query.get("page", ["1"])[0])
        size = int(seen.query.get("pageSize", ["100"])[0])
        return JSONResponse({"Payments": self.payments[(page - 1) * size: page * size]})
