"""`models.base.fetch` and `Prepared` make the very instances the ORM's own reads make: they
build rows their own way (values set at once; a query built once), and these tests fail when
an upgrade of the ORM changes how it makes them."""

from __future__ import annotations

from datetime import date

from tortoise.expressions import Subquery

from models import Invoice, ManagedAccount, User
from models.auth import Token
from models.base import Prepared, fetch
from tests import factories as f


def _state(rows: list) -> list[dict]:
    return [dict(row.__dict__) for row in rows]


async def test_fetch_makes_the_instances_the_orm_makes(world):
    period = await f.billing_period(world.org, date(2024, 7, 1))
    await f.generated_invoice(world.account, period, number="INV-1", status="APPROVED")
    await f.generated_invoice(world.other_account, period, number="INV-2")
    # An approved invoice (its approval's time set) and one with a memo and a provider.
    await Invoice.filter(number="INV-2").update(memo="Thanks", provider_name="AWS")
    await ManagedAccount.filter(id=world.account.id).update(
        billing_emails=["ap@contoso.example"], business_fields=[{"key": "VAT", "value": "GB1"}], po_number="PO-7"
    )
    queries = [
        Invoice.filter(organization_id=world.org.id).order_by("number"),
        ManagedAccount.all().order_by("name"),
        User.filter(organization_id=world.org.id).order_by("email"),
    ]
    for query in queries:
        made = await fetch(query)
        assert made and _state(made) == _state(await query)
        assert all(type(row) is query.model for row in made)
    counted = Invoice.all()
    counted = counted.annotate(list_size=Subquery(counted.count())).order_by("number")
    assert [(row.number, row.list_size) for row in await fetch(counted)] == [("INV-1", 2), ("INV-2", 2)]
    assert _state(await fetch(counted)) == _state(await counted)


async def test_fetch_leaves_partial_and_related_reads_to_the_orm(world):
    only = await fetch(ManagedAccount.filter(id=world.account.id).only("id", "name"))
    assert only[0]._partial and only[0].name == "Contoso"
    related = await fetch(User.filter(id=world.users["owner"].id).select_related("organization"))
    assert related[0].organization.name == "Northwind"


async def test_a_prepared_query_reads_as_the_query_itself(world):
    prepared = Prepared(Token, lambda user_id: Token.filter(user_id=user_id).select_related("user").order_by("id"))
    for role in ("owner", "customer"):
        user = world.users[role]
        tokens = await prepared.run(user.id)
        expected = await Token.filter(user_id=user.id).select_related("user").order_by("id")
        assert _state(tokens) == _state(expected) and len(tokens) == 1
        assert tokens[0].user.email == user.email
    assert await prepared.run(world.foreign_account.id) == []
