"""An organization's own invoice template: uploaded, previewed on a real invoice, activated, then
printed by generation (read back from the PDF with pdftotext); refused with the line and the
reason when it is broken; hostile text refused or harmless (no file, no network, no Python
internals, no endless loop); an old revision printed again byte for byte after another version
became the active one; and who may do what."""

from __future__ import annotations

import asyncio
import re

import pytest
from strawberry.relay import to_base64
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError

from infra import storage
from jobs.generate import generate_invoices
from jobs.invoice_templates import check_template, render_invoice, render_own
from jobs.locales import page_label
from jobs.pdf import PdfRenderer
from jobs.rendering import render_invoice_html, sample_view
from models import AuditEntry, Invoice, InvoiceRevision, InvoiceTemplate
from models.actors import Actor
from models.billing_periods import close_period
from models.invoice_templates import TemplateRejected, printed_with
from models.invoices.lifecycle import transition
from tests.graphql import error_codes, gql
from tests.test_invoice_generation import SEPT
from tests.test_invoice_generation import _costs as costs
from tests.test_languages import squeezed, text_of

SYSTEM = Actor.system("test")
# Changes two blocks of the product's invoice: everything else prints as the product prints it.
CUSTOM = """{% extends "invoice/v1.html" %}
{% block heading %}Northwind invoice{% endblock %}
{% block footer %}Printed with the Northwind layout · {{ number }} · {{ _("Total") }} {{ total | amount(currency) }}{% endblock %}
"""
SECOND = CUSTOM.replace("Northwind layout", "Northwind layout, second edition")

UPLOAD = """mutation($input: UploadInvoiceTemplateInput!) { uploadInvoiceTemplate(input: $input) { __typename
  ... on InvoiceTemplateUploaded { invoiceTemplate { id version name active size sha256 } }
  ... on TemplateRejectedError { code line reason message field } ... on UserError { code message field } } }"""
PREVIEW = """mutation($input: PreviewInvoiceTemplateInput!) { previewInvoiceTemplate(input: $input) { __typename
  ... on InvoiceTemplatePreview { html } ... on TemplateRejectedError { line reason } ... on UserError { code } } }"""
ACTIVATE = """mutation($id: ID) { activateInvoiceTemplate(id: $id) { __typename
  ... on InvoiceTemplateActivated { invoiceTemplate { id version active } } ... on UserError { code } } }"""
LIST = "{ invoiceTemplates { totalCount edges { node { version name active source } } } }"


@pytest.fixture(scope="module")
async def renderer(settings):
    async with PdfRenderer(settings, pool_size=2) as pdf:
        yield pdf


async def _generate(settings, redis, renderer, invoice_id) -> InvoiceRevision:
    outcome = await generate_invoices({"settings": settings, "redis": redis, "pdf": renderer, "job_try": 1}, [str(invoice_id)])
    assert outcome == {str(invoice_id): "generated"}, outcome
    invoice = await Invoice.get(id=invoice_id)
    return await InvoiceRevision.get(id=invoice.current_revision_id)


async def _generated_invoice(world, settings, redis, renderer) -> tuple[Invoice, InvoiceRevision]:
    await costs(world.org, world.account, [("AWS", "Amazon EC2", "Compute", "1234.5678", "Hrs", "744")])
    await close_period(world.org.id, SEPT, SYSTEM)
    invoice = await Invoice.get(managed_account_id=world.account.id)
    await transition(invoice.id, "GENERATE", SYSTEM)
    return invoice, await _generate(settings, redis, renderer, invoice.id)


async def _upload(client, token, source, name="Northwind layout") -> dict:
    result = await gql(client, UPLOAD, {"input": {"name": name, "source": source}}, token=token)
    return result["data"]["uploadInvoiceTemplate"] if result.get("data") else result


async def test_upload_preview_activate_and_generated_invoices_print_with_it(client, world, settings, redis, renderer):
    invoice, first = await _generated_invoice(world, settings, redis, renderer)
    assert first.template_version == "1"
    owner = world.tokens["owner"]

    uploaded = await _upload(client, owner, CUSTOM)
    assert uploaded["__typename"] == "InvoiceTemplateUploaded", uploaded
    template = uploaded["invoiceTemplate"]
    assert (template["version"], template["active"], template["size"]) == (1, False, len(CUSTOM.encode()))

    # Tried on the real invoice before it is used: its number and total, in the custom blocks.
    preview = await gql(
        client,
        PREVIEW,
        {"input": {"templateId": template["id"], "invoiceId": to_base64("Invoice", str(invoice.id))}},
        token=world.tokens["viewer"],
    )
    html = preview["data"]["previewInvoiceTemplate"]["html"]
    assert "Northwind invoice" in html and f"Printed with the Northwind layout · {invoice.number or first.snapshot['number']}" in html
    assert "Amazon EC2" in html  # the product's blocks it did not change

    # Not used until activated: a regeneration now still prints with the product's template.
    activated = await gql(client, ACTIVATE, {"id": template["id"]}, token=owner)
    assert activated["data"]["activateInvoiceTemplate"]["invoiceTemplate"] == {"id": template["id"], "version": 1, "active": True}
    await transition(invoice.id, "REGENERATE", SYSTEM)
    second = await _generate(settings, redis, renderer, invoice.id)
    assert second.template_version == "org-1"
    pdf = storage.load(settings, second.pdf_path)
    text = text_of(pdf)
    # (a heading's letter spacing reads back as spaces between some letters)
    assert "Northwindinvoice" in squeezed(text) and "Printed with the Northwind layout" in text
    assert "Printed with" not in text_of(storage.load(settings, first.pdf_path))

    # The audit log has the upload and the activation.
    entries = await AuditEntry.filter(entity="INVOICE_TEMPLATE").order_by("at")
    assert [entry.action for entry in entries] == ["CREATED", "UPDATED"]
    assert entries[1].changes["active"] == {"before": False, "after": True}
    assert "source" not in entries[0].changes and entries[0].changes["sha256"]["after"] == template["sha256"]

    # A second version becomes the active one: the revision printed with the first prints again
    # byte for byte (HTML and PDF), with the first version's text.
    before_html = await render_invoice(second.snapshot, (await printed_with(world.org.id, "org-1")).source)
    again = await _upload(client, owner, SECOND, name="Second edition")
    assert again["invoiceTemplate"]["version"] == 2
    await gql(client, ACTIVATE, {"id": again["invoiceTemplate"]["id"]}, token=owner)
    stored = await InvoiceRevision.get(id=second.id)
    own = await printed_with(world.org.id, stored.template_version)
    assert own is not None and own.version == 1 and not own.active
    after_html = await render_invoice(stored.snapshot, own.source)
    assert after_html.encode() == before_html.encode() and "second edition" not in after_html
    label = page_label(stored.locale)
    assert await renderer.render(after_html, page_label=label) == await renderer.render(before_html, page_label=label)
    assert text_of(await renderer.render(after_html, page_label=label)) == text
    # The revision printed with the product's template still prints with it.
    assert await printed_with(world.org.id, first.template_version) is None

    # Versions are frozen: the database refuses changing a text, or deleting one that printed.
    conn = connections.get("default")
    for statement in (
        "UPDATE invoice_templates SET source = 'x', size = 1 WHERE version = 1",
        "DELETE FROM invoice_templates WHERE version = 1",
    ):
        with pytest.raises((IntegrityError, OperationalError), match="invoice template version 1"):
            await conn.execute_query(statement)
    assert (await InvoiceTemplate.get(organization_id=world.org.id, version=1)).source == CUSTOM

    # Back to the product's template.
    cleared = await gql(client, ACTIVATE, {"id": None}, token=owner)
    assert cleared["data"]["activateInvoiceTemplate"]["invoiceTemplate"] is None
    assert not await InvoiceTemplate.filter(active=True).exists()


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("<p>Invoice {{ number }}</p>\n{% if total %}\n<p>due</p>\n", 3, "Unexpected end of template"),
        ("<p>{{ number }}</p>\n<p>{{ total | no_such_filter }}</p>", 2, "No filter named 'no_such_filter'"),
        ("<p>{{ number }}</p>\n\n<p>{{ customer.nickname.upper() }}</p>", 3, "has no attribute 'nickname'"),
        ('{% extends "invoice/v1.html" %}\n{% block footer %}{{ 1 / 0 }}{% endblock %}', 2, "division by zero"),
    ],
)
async def test_a_broken_template_is_refused_with_its_line_and_reason_and_nothing_is_stored(client, world, source, line, reason):
    refused = await _upload(client, world.tokens["owner"], source)
    assert refused["__typename"] == "TemplateRejectedError" and refused["code"] == "TEMPLATE_REJECTED"
    assert refused["line"] == line and reason in refused["reason"], refused
    assert refused["message"] == f"line {line}: {refused['reason']}" and refused["field"] == "source"
    assert not await InvoiceTemplate.exists() and not await AuditEntry.filter(entity="INVOICE_TEMPLATE").exists()


HOSTILE = [
    # Python internals through the sandbox.
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "__class__"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "unsafe"),
    ("{{ cycler.__init__.__globals__.os.environ }}", "unsafe"),
    ("{{ self._TemplateReference__context }}", "unsafe"),
    ("{{ range.__self__ }}", "unsafe|no attribute"),
    ("{{ '{:>1000000000}'.format(1) }}", "unsafe"),
    ("{{ number.format.__globals__ }}", "unsafe"),
    # Files: only the product's base templates can be named.
    ('{% include "/etc/passwd" %}', "cannot be extended or included"),
    ('{% extends "../../../../etc/passwd" %}', "cannot be extended or included"),
    ('{% import "email/invoice.txt" as mail %}', "cannot be extended or included"),
    # Texts blown up to gigabytes.
    ("{{ 'x'.ljust(1000000000) }}", "unsafe"),
    ("{{ 'x' * 1000000000 }}", "limited to"),
    ("{{ '%1000000000s' % 'x' }}", "not available"),
    ("{{ _('%(n)1000000000s', n=1) }}", "memory|larger than"),
]


@pytest.mark.parametrize(("source", "reason"), HOSTILE)
async def test_a_hostile_template_is_refused(source, reason):
    with pytest.raises(TemplateRejected) as refused:
        await check_template(source)
    assert re.search(reason, refused.value.reason), refused.value.reason


async def test_a_template_that_would_run_for_ever_or_eat_the_memory_is_stopped():
    doubling = "{% set s = 'x' * 1000 %}" + "{% set s = s ~ s %}" * 40 + "{{ s | length }}"
    with pytest.raises(TemplateRejected, match="memory|time"):
        await check_template(doubling)
    # Loops that print nothing: only the time limit can stop them (printing would fill memory first).
    loops = "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateRejected, match="time|longer"):
        await check_template(loops)
    # The child that ran it is gone, and the next template prints.
    assert "Printed with" in (await render_own(CUSTOM, [sample_view()]))[0]


async def test_a_template_that_asks_for_the_network_prints_without_reaching_it(renderer):
    """Markup may name addresses: Chromium prints with every request that is not data: aborted."""
    hits: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(1024))
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = (
        f'<link rel="stylesheet" href="http://127.0.0.1:{port}/style.css">'
        f'<img src="http://127.0.0.1:{port}/pixel.png"><iframe src="http://127.0.0.1:{port}/frame"></iframe>'
        f'<iframe src="file:///etc/passwd"></iframe><script>fetch("http://127.0.0.1:{port}/js")</script>'
        "<p>Invoice {{ number }}</p>"
    )
    await check_template(source)
    (html,) = await render_own(source, [sample_view()])
    pdf = await renderer.render(html, page_label=page_label("en"))
    await asyncio.sleep(0.5)
    server.close()
    assert "Invoice INV-2024-0042" in text_of(pdf) and "root:" not in text_of(pdf)
    assert hits == []


async def test_translations_and_formatters_work_in_an_own_template():
    source = '<p>{{ _("Total") }}: {{ total | amount(currency) }} · {{ issue_date | date }}</p>'
    english, german = await render_own(source, [sample_view(), {**sample_view(), "locale": "de"}])
    assert "Total: EUR 1,483.91 · 1 October 2024" in english, english
    assert "Gesamtbetrag: 1.483,91\xa0€" in german and "1. Oktober 2024" in german, german
    # The product's invoice, extended without a change, prints exactly as the product prints it.
    view = sample_view()
    assert (await render_own('{% extends "invoice/v1.html" %}', [view]))[0] == render_invoice_html(view)


async def test_a_template_too_large_or_empty_is_refused(client, world):
    big = await _upload(client, world.tokens["owner"], "x" * (64 * 1024 + 1))
    assert big["__typename"] == "ValidationError" and big["field"] == "source" and "65536" in big["message"]
    empty = await _upload(client, world.tokens["owner"], "  \n")
    assert empty["__typename"] == "ValidationError" and empty["field"] == "source"
    unnamed = await _upload(client, world.tokens["owner"], "ok", name=" ")
    assert unnamed["__typename"] == "ValidationError" and unnamed["field"] == "name"
    assert not await InvoiceTemplate.exists()


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "foreign_owner"])
async def test_owners_upload_and_activate_viewers_read_and_preview_customers_never(client, world, settings, redis, renderer, role):
    invoice, _ = await _generated_invoice(world, settings, redis, renderer)
    mine = await InvoiceTemplate.create(
        organization=world.org, version=1, name="Mine", source=CUSTOM, sha256="0" * 64, size=len(CUSTOM.encode())
    )
    token = world.tokens[role]
    template_id = to_base64("InvoiceTemplate", str(mine.id))
    listed = await gql(client, LIST, token=token)
    uploaded = await gql(client, UPLOAD, {"input": {"name": "Theirs", "source": "<p>{{ number }}</p>"}}, token=token)
    activated = await gql(client, ACTIVATE, {"id": template_id}, token=token)
    preview = await gql(
        client, PREVIEW, {"input": {"templateId": template_id, "invoiceId": to_base64("Invoice", str(invoice.id))}}, token=token
    )
    node = await gql(client, "query($id: ID!) { node(id: $id) { ... on InvoiceTemplate { source } } }", {"id": template_id}, token=token)
    await mine.refresh_from_db()
    if role == "owner":
        assert listed["data"]["invoiceTemplates"]["totalCount"] == 1
        assert uploaded["data"]["uploadInvoiceTemplate"]["__typename"] == "InvoiceTemplateUploaded"
        assert activated["data"]["activateInvoiceTemplate"]["invoiceTemplate"] == {"id": template_id, "version": 1, "active": True}
        assert mine.active
        assert "Northwind invoice" in preview["data"]["previewInvoiceTemplate"]["html"]
        assert node["data"]["node"] == {"source": CUSTOM}
    elif role == "viewer":
        assert listed["data"]["invoiceTemplates"]["edges"][0]["node"]["source"] == CUSTOM
        assert error_codes(uploaded) == ["FORBIDDEN"] and error_codes(activated) == ["FORBIDDEN"] and not mine.active
        assert "Northwind invoice" in preview["data"]["previewInvoiceTemplate"]["html"]
        assert node["data"]["node"] == {"source": CUSTOM}
    elif role == "customer":
        for refused in (listed, uploaded, activated, preview):
            assert error_codes(refused) == ["FORBIDDEN"]
        assert node["data"]["node"] is None and not mine.active
    else:  # another organization's owner: sees only its own (none), cannot reach ours
        assert listed["data"]["invoiceTemplates"]["totalCount"] == 0
        assert activated["data"]["activateInvoiceTemplate"]["__typename"] == "NotFoundError" and not mine.active
        assert preview["data"]["previewInvoiceTemplate"]["__typename"] == "NotFoundError"
        assert node["data"]["node"] is None
        # Its upload is its own organization's, numbered from 1 there.
        assert uploaded["data"]["uploadInvoiceTemplate"]["invoiceTemplate"]["version"] == 1
        assert await InvoiceTemplate.filter(organization_id=world.foreign_org.id).count() == 1
    assert await InvoiceTemplate.filter(organization_id=world.org.id).count() == (2 if role == "owner" else 1)


def test_the_command_line_checks_a_template_before_it_is_uploaded(tmp_path):
    from typer.testing import CliRunner

    from invoicing.cli import app

    good, bad, out = tmp_path / "good.html", tmp_path / "bad.html", tmp_path / "sample.html"
    good.write_text(CUSTOM, encoding="utf-8")
    bad.write_text("<p>{{ number }}</p>\n{% for line in lines %}\n", encoding="utf-8")
    runner = CliRunner()
    printed = runner.invoke(app, ["check-template", str(good), "--locale", "de", "--html", str(out)])
    assert printed.exit_code == 0, printed.output
    assert "Printed with the Northwind layout · INV-2024-0042 · Gesamtbetrag 1.483,91\xa0€" in out.read_text(encoding="utf-8")
    refused = runner.invoke(app, ["check-template", str(bad)])
    assert refused.exit_code == 1 and "line 2" in refused.output and "endfor" in refused.output, refused.output
