"""GraphQL types of cost records (imported FOCUS rows) and of the cost import."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import CostRecord as CostRecordModel
from models import ManagedAccount as ManagedAccountModel
from models import costs as domain
from models.costs import AccountMonthTotal, CostQuery, ImportReport, billed_totals, is_invoiced, visible_costs
from schema.core.context import Info
from schema.core.errors import ConflictError, CostFileRejectedError, NotFoundError, ValidationError
from schema.core.nodes import filter_uuids, scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.scalars import Month, plain
from schema.managed_accounts import ManagedAccount

# Cost records have BIGINT keys; an id that cannot be one is simply not found.
_BIGINT = re.compile(r"0|[1-9][0-9]{0,17}")


def _decimal(value: Decimal | None) -> Decimal | None:
    return None if value is None else plain(value)


async def account_of(info: Info, account_id: Any) -> ManagedAccount | None:
    """The managed account of an id that may be null, through the request's loader."""
    if account_id is None:
        return None
    row = await info.context.loaders.by_id(ManagedAccountModel).load(account_id)
    return ManagedAccount.from_model(row) if row else None


# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
CostOrigin = domain.CostOrigin
strawberry.enum(
    CostOrigin,
    description="Whose integration exported the costs: MSP_DELEGATED, the MSP's own (always "
    "invoiced); ACCOUNT_INTEGRATION, one the managed account added itself (invoiced only when "
    "the account's includeAccountIntegrations is true).",
)


@strawberry.type(
    name="CostRecord",
    description="One imported cost row, with the FOCUS columns as the cloud exported them.",
)
class CostRecord(relay.Node):
    id: relay.NodeID[str]
    origin: CostOrigin = strawberry.field(
        description="Whose integration the row came from; the account's invoice counts an "
        "ACCOUNT_INTEGRATION row only when the account includes its integrations."
    )
    billing_month: Month = strawberry.field(description="The invoice month: the month of BillingPeriodStart.")
    billing_period_start: datetime = strawberry.field(description="FOCUS BillingPeriodStart.")
    billing_period_end: datetime = strawberry.field(description="FOCUS BillingPeriodEnd (exclusive).")
    charge_period_start: datetime | None = strawberry.field(description="FOCUS ChargePeriodStart.")
    charge_period_end: datetime | None = strawberry.field(description="FOCUS ChargePeriodEnd (exclusive).")
    provider_name: str = strawberry.field(description="FOCUS ProviderName (AWS, Microsoft...).")
    publisher_name: str | None = strawberry.field(description="FOCUS PublisherName.")
    invoice_issuer_name: str | None = strawberry.field(description="FOCUS InvoiceIssuerName.")
    billing_account_id: str | None = strawberry.field(description="FOCUS BillingAccountId.")
    billing_account_name: str | None = strawberry.field(description="FOCUS BillingAccountName.")
    sub_account_id: str = strawberry.field(description="FOCUS SubAccountId; empty when the row had none.")
    sub_account_name: str | None = strawberry.field(description="FOCUS SubAccountName.")
    billed_cost: Decimal = strawberry.field(description="FOCUS BilledCost, in the billing currency.")
    billing_currency: str = strawberry.field(description="FOCUS BillingCurrency (ISO 4217).")
    effective_cost: Decimal | None = strawberry.field(description="FOCUS EffectiveCost.")
    list_cost: Decimal | None = strawberry.field(description="FOCUS ListCost.")
    list_unit_price: Decimal | None = strawberry.field(description="FOCUS ListUnitPrice.")
    contracted_cost: Decimal | None = strawberry.field(description="FOCUS ContractedCost.")
    contracted_unit_price: Decimal | None = strawberry.field(description="FOCUS ContractedUnitPrice.")
    consumed_quantity: Decimal | None = strawberry.field(description="FOCUS ConsumedQuantity.")
    consumed_unit: str | None = strawberry.field(description="FOCUS ConsumedUnit.")
    pricing_quantity: Decimal | None = strawberry.field(description="FOCUS PricingQuantity.")
    pricing_unit: str | None = strawberry.field(description="FOCUS PricingUnit.")
    pricing_category: str | None = strawberry.field(description="FOCUS PricingCategory.")
    service_name: str | None = strawberry.field(description="FOCUS ServiceName.")
    service_category: str | None = strawberry.field(description="FOCUS ServiceCategory.")
    charge_category: str = strawberry.field(description="FOCUS ChargeCategory (Usage, Purchase, Tax...).")
    charge_class: str | None = strawberry.field(description="FOCUS ChargeClass (Correction or empty).")
    charge_description: str | None = strawberry.field(description="FOCUS ChargeDescription.")
    charge_frequency: str | None = strawberry.field(description="FOCUS ChargeFrequency.")
    region_id: str | None = strawberry.field(description="FOCUS RegionId.")
    region_name: str | None = strawberry.field(description="FOCUS RegionName.")
    availability_zone: str | None = strawberry.field(description="FOCUS AvailabilityZone.")
    resource_id: str | None = strawberry.field(description="FOCUS ResourceId.")
    resource_name: str | None = strawberry.field(description="FOCUS ResourceName.")
    resource_type: str | None = strawberry.field(description="FOCUS ResourceType.")
    sku_id: str | None = strawberry.field(description="FOCUS SkuId.")
    sku_price_id: str | None = strawberry.field(description="FOCUS SkuPriceId.")
    tags: JSON | None = strawberry.field(description="FOCUS Tags, as a JSON object.")
    extra: JSON = strawberry.field(
        description="Every other column of the row (commitment discounts, x_ provider columns), verbatim."
    )
    model: strawberry.Private[CostRecordModel]

    @classmethod
    def from_model(cls, row: CostRecordModel) -> CostRecord:
        decimals = (
            "billed_cost", "effective_cost", "list_cost", "list_unit_price", "contracted_cost",
            "contracted_unit_price", "consumed_quantity", "pricing_quantity",
        )
        texts = (
            "origin", "billing_month", "billing_period_start", "billing_period_end", "charge_period_start",
            "charge_period_end", "provider_name", "publisher_name", "invoice_issuer_name",
            "billing_account_id", "billing_account_name", "sub_account_id", "sub_account_name",
            "billing_currency", "consumed_unit", "pricing_unit", "pricing_category", "service_name",
            "service_category", "charge_category", "charge_class", "charge_description",
            "charge_frequency", "region_id", "region_name", "availability_zone", "resource_id",
            "resource_name", "resource_type", "sku_id", "sku_price_id", "tags", "extra",
        )
        decimal_values: dict[str, Any] = {name: _decimal(getattr(row, name)) for name in decimals}
        return cls(
            id=str(row.id), model=row,
            **{name: getattr(row, name) for name in texts},
            **decimal_values,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_costs, is_key=_BIGINT.fullmatch)

    @strawberry.field(
        description="The managed account the row's sub-account belongs to; null while no "
        "account claims it (nobody is invoiced for it yet)."
    )
    async def account(self, info: Info) -> ManagedAccount | None:
        return await account_of(info, self.model.managed_account_id)

    @strawberry.field(
        description="Whether the account's invoice counts the row: a managed account claims it, and it "
        "came from the MSP's delegated integration (MSP_DELEGATED), or from the account's own while the "
        "account includes its integrations (includeAccountIntegrations). The `invoiced` filter asks for "
        "these rows only, so that their totals are what the invoice bills."
    )
    async def invoiced(self, info: Info) -> bool:
        account_id = self.model.managed_account_id
        account = await info.context.loaders.by_id(ManagedAccountModel).load(account_id) if account_id else None
        return is_invoiced(self.model.origin, account)


@strawberry.type(description="The BilledCost of a set of cost rows in one currency.")
class CostTotal:
    currency: str = strawberry.field(description="The billing currency (ISO 4217).")
    billed_cost: Decimal = strawberry.field(description="Sum of BilledCost, exact.")
    rows: int = strawberry.field(description="How many rows.")


@strawberry.type(description="A page of cost records.")
class CostRecordConnection(CountedConnection[CostRecord]):
    # The whole filtered query, for totals; not part of the schema.
    query: strawberry.Private[Any] = None

    @strawberry.field(
        description="BilledCost per currency of the whole filtered list (every page), in "
        "currency order."
    )
    async def totals(self) -> list[CostTotal]:
        return [
            CostTotal(currency=currency, billed_cost=plain(total), rows=rows)
            for currency, total, rows in await billed_totals(self.query)
        ]


@strawberry.enum(description="What cost records can be sorted by.")
class CostRecordOrderField(Enum):
    BILLED_COST = "billed_cost"
    CHARGE_PERIOD_START = "charge_period_start"
    SERVICE_NAME = "service_name"


@strawberry.input(description="Sort order of cost records.")
class CostRecordOrder:
    field: CostRecordOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.input(description="Narrow the list of cost records; all conditions combine.")
class CostRecordFilter:
    providers: list[str] | None = strawberry.field(
        default=None, description="Any of these FOCUS ProviderNames (exact)."
    )
    service_categories: list[str] | None = strawberry.field(
        default=None, description="Any of these FOCUS ServiceCategories (exact)."
    )
    unassigned: bool | None = strawberry.field(
        default=None,
        description="Only rows no managed account claims (true), or only claimed rows (false).",
    )
    invoiced: bool | None = strawberry.field(
        default=None,
        description="Only the rows the account's invoice counts (true: see CostRecord.invoiced), or only "
        "those it leaves out (false: unclaimed rows, and an account's own integration's rows while the "
        "account does not include its integrations).",
    )


def cost_query(account_id: strawberry.ID | None, period, where: CostRecordFilter | None) -> CostQuery:
    return CostQuery(
        account_ids=filter_uuids([account_id] if account_id is not None else None, "ManagedAccount"),
        period=period,
        providers=where.providers if where else None,
        service_categories=where.service_categories if where else None,
        unassigned=where.unassigned if where else None,
        invoiced=where.invoiced if where else None,
    )


@strawberry.type(description="A sub-account of the file that no managed account claims.")
class UnmatchedSubAccount:
    sub_account_id: str = strawberry.field(description="FOCUS SubAccountId; empty for rows without one.")
    sub_account_name: str | None = strawberry.field(description="FOCUS SubAccountName.")
    provider_name: str = strawberry.field(description="FOCUS ProviderName.")
    currency: str = strawberry.field(description="The billing currency of these rows.")
    rows: int = strawberry.field(description="How many rows of the file.")
    billed_cost: Decimal = strawberry.field(description="Their BilledCost sum.")


@strawberry.type(description="BilledCost of the file per managed account, month and currency.")
class ImportedCostTotal:
    billing_month: Month = strawberry.field(description="The invoice month.")
    currency: str = strawberry.field(description="The billing currency.")
    rows: int = strawberry.field(description="How many rows of the file (duplicates included).")
    billed_cost: Decimal = strawberry.field(description="Their BilledCost sum.")
    account_id: strawberry.Private[Any]

    @strawberry.field(description="The managed account; null for rows no account claims.")
    async def account(self, info: Info) -> ManagedAccount | None:
        return await account_of(info, self.account_id)

    @classmethod
    def from_total(cls, total: AccountMonthTotal) -> ImportedCostTotal:
        return cls(
            billing_month=Month(total.billing_month), currency=total.currency, rows=total.rows,
            billed_cost=plain(total.billed_cost), account_id=total.managed_account_id,
        )


CostImportState = domain.CostImportState
strawberry.enum(
    CostImportState,
    description="Where a cost import is: QUEUED (stored, waiting for a worker), RUNNING (rows are "
    "being read, checked and loaded; `rowsDone` grows), DONE (its costs are current), FAILED "
    "(refused whole; nothing was written; `error` says why).",
)


@strawberry.type(description="Why a cost import was refused; nothing of it was written.")
class CostImportError:
    message: str = strawberry.field(description="What is wrong, for a person.")
    file: str | None = strawberry.field(description="The part of the delivery at fault, when there are several.")
    line: int | None = strawberry.field(description="The CSV line (the header is line 1), when one is at fault.")
    row: int | None = strawberry.field(description="The Parquet row (from 1), when one is at fault.")
    column: str | None = strawberry.field(description="The FOCUS column concerned, when one is.")


@strawberry.type(description="BilledCost in one currency.")
class CurrencyAmount:
    currency: str = strawberry.field(description="The billing currency (ISO 4217).")
    billed_cost: Decimal = strawberry.field(description="Sum of BilledCost, exact.")


@strawberry.type(description="What a delivery did to one scope: one provider's billing account in one month.")
class DeliveredScope:
    provider_name: str = strawberry.field(description="FOCUS ProviderName.")
    billing_account_id: str = strawberry.field(description="FOCUS BillingAccountId.")
    billing_month: Month = strawberry.field(description="The invoice month.")
    outcome: str = strawberry.field(
        description="NEW (no earlier delivery named it), REPLACED (an earlier delivery's rows were "
        "replaced) or UNCHANGED (the current delivery is byte-identical)."
    )
    rows: int = strawberry.field(description="Rows of the delivery in this scope.")
    # The delivery's report keeps rows per scope, not per currency: no row count here.
    totals: list[CurrencyAmount] = strawberry.field(description="Their BilledCost per currency.")
    rows_removed: int = strawberry.field(description="Rows of the superseded delivery removed.")
    superseded_import_id: strawberry.ID | None = strawberry.field(
        description="The import this delivery superseded in the scope (a CostImport id)."
    )


@strawberry.type(description="Costs delivered for a month already invoiced and approved: kept apart, to bill later.")
class LateCostDifference:
    billing_month: Month = strawberry.field(description="The invoiced month.")
    currency: str = strawberry.field(description="The billing currency.")
    invoiced_cost: Decimal = strawberry.field(description="BilledCost the approved invoice was made of.")
    delivered_cost: Decimal = strawberry.field(description="BilledCost the delivery says now.")
    difference: Decimal = strawberry.field(description="Delivered less invoiced.")
    account_id: strawberry.Private[Any]

    @strawberry.field(description="The managed account invoiced.")
    async def account(self, info: Info) -> ManagedAccount | None:
        return await account_of(info, self.account_id)


@strawberry.type(
    name="CostImport",
    description="One cost delivery (a file, or parts imported as one unit) and its import, run in the background.",
)
class CostImport(relay.Node):
    id: relay.NodeID[str]
    filename: str = strawberry.field(description="The delivery's file names.")
    origin: CostOrigin = strawberry.field(description="Whose integration exported it.")
    state: CostImportState = strawberry.field(description="Where the import is.")
    rows_done: int = strawberry.field(description="Rows read and checked so far (progress while RUNNING).")
    rows: int = strawberry.field(description="Rows of the delivery, once DONE.")
    inserted: int = strawberry.field(description="Rows now current costs.")
    duplicates: int = strawberry.field(description="Rows of scopes whose current delivery was byte-identical: unchanged.")
    late: int = strawberry.field(description="Rows of months already approved: kept apart as late costs.")
    replaced: int = strawberry.field(description="Rows of earlier deliveries this one superseded (removed).")
    created_at: datetime = strawberry.field(description="When the delivery was received.")
    started_at: datetime | None = strawberry.field(description="When a worker started it.")
    finished_at: datetime | None = strawberry.field(description="When it ended (DONE or FAILED).")
    error: CostImportError | None = strawberry.field(description="Why it FAILED; null otherwise.")
    model: strawberry.Private[Any]

    @strawberry.field(description="What the delivery did per scope (provider, billing account, month), once DONE.")
    def scopes(self) -> list[DeliveredScope]:
        return [
            DeliveredScope(
                provider_name=s["providerName"], billing_account_id=s["billingAccountId"],
                billing_month=Month(date.fromisoformat(s["billingMonth"])), outcome=s["outcome"], rows=s["rows"],
                totals=[CurrencyAmount(currency=c, billed_cost=plain(Decimal(t))) for c, t in s["totals"].items()],
                rows_removed=s["rowsRemoved"],
                superseded_import_id=(
                    strawberry.ID(relay.to_base64("CostImport", s["supersededImportId"]))
                    if s["supersededImportId"] else None
                ),
            )
            for s in (self.model.report or {}).get("scopes", [])
        ]

    @strawberry.field(description="Per account, approved month and currency: how the delivery differs from what was invoiced.")
    def late_costs(self) -> list[LateCostDifference]:
        return [
            LateCostDifference(
                billing_month=Month(date.fromisoformat(entry["billingMonth"])), currency=entry["currency"],
                invoiced_cost=plain(Decimal(entry["invoicedCost"])), delivered_cost=plain(Decimal(entry["deliveredCost"])),
                difference=plain(Decimal(entry["difference"])),
                # The report is JSON: its account id is text, the loader's keys are UUIDs.
                account_id=UUID(entry["accountId"]),
            )
            for entry in (self.model.report or {}).get("lateCosts", [])
        ]

    @classmethod
    def from_model(cls, row: domain.CostImport) -> CostImport:
        failed = row.error_message is not None
        return cls(
            id=str(row.id), filename=row.filename, origin=row.origin, state=row.state, rows_done=row.rows_done,
            rows=row.row_count, inserted=row.inserted_count, duplicates=row.duplicate_count, late=row.late_count,
            replaced=row.replaced_count, created_at=row.created_at, started_at=row.started_at,
            finished_at=row.finished_at, model=row,
            error=CostImportError(
                message=row.error_message or "", file=row.error_file, line=row.error_line, row=row.error_row,
                column=row.error_column,
            ) if failed else None,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False) -> list[Any]:
        return await scoped_nodes(cls, info, node_ids, required, domain.visible_imports)


@strawberry.type(description="A page of cost imports.")
class CostImportConnection(CountedConnection[CostImport]):
    pass


@strawberry.enum(description="What cost imports can be sorted by.")
class CostImportOrderField(Enum):
    CREATED_AT = "created_at"


@strawberry.input(description="Sort order of cost imports.")
class CostImportOrder:
    field: CostImportOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.DESC, description="Direction.")


@strawberry.type(description="The delivery is stored and queued: a worker imports it; follow it with `costImportChanged`.")
class CostImportQueued:
    cost_import: CostImport = strawberry.field(description="The import, QUEUED.")


@strawberry.type(description="The cost file was imported.")
class CostsImported:
    origin: CostOrigin = strawberry.field(description="Whose integration the file came from.")
    rows: int = strawberry.field(description="Rows in the file.")
    inserted: int = strawberry.field(description="Rows new to the organization, now stored.")
    duplicates: int = strawberry.field(description="Rows of scopes whose current delivery was byte-identical: unchanged.")
    unmatched_sub_accounts: list[UnmatchedSubAccount] = strawberry.field(
        description="Sub-accounts no managed account claims: stored, but not invoiced until one does."
    )
    totals: list[ImportedCostTotal] = strawberry.field(
        description="What the file holds per account, month and currency."
    )
    cost_import: CostImport = strawberry.field(description="The import, DONE: its scopes and late costs.")
    account_id: strawberry.Private[Any]

    @strawberry.field(
        description="The managed account whose own integration the file came from; null for "
        "MSP_DELEGATED."
    )
    async def account(self, info: Info) -> ManagedAccount | None:
        return await account_of(info, self.account_id)

    @classmethod
    def from_report(cls, report: ImportReport, cost_import: domain.CostImport) -> CostsImported:
        return cls(
            cost_import=CostImport.from_model(cost_import),
            origin=report.origin, account_id=report.managed_account_id,
            rows=report.rows, inserted=report.inserted, duplicates=report.duplicates,
            unmatched_sub_accounts=[
                UnmatchedSubAccount(
                    sub_account_id=u.sub_account_id, sub_account_name=u.sub_account_name,
                    provider_name=u.provider_name, currency=u.currency, rows=u.rows,
                    billed_cost=plain(u.billed_cost),
                )
                for u in report.unmatched
            ],
            totals=[ImportedCostTotal.from_total(t) for t in report.totals],
        )


ImportCostsPayload = Annotated[
    CostImportQueued | CostsImported | CostFileRejectedError | ValidationError | NotFoundError | ConflictError,
    strawberry.union("ImportCostsPayload", description="The result of `importCosts`."),
]


@strawberry.type(description="An account's cost in one month, service category and currency.")
class UsageLine:
    month: Month = strawberry.field(description="The month.")
    service_category: str = strawberry.field(description="FOCUS ServiceCategory (Compute, Storage, Networking, ...); Other when none.")
    currency: str = strawberry.field(description="The billing currency (ISO 4217).")
    amount: Decimal = strawberry.field(description="Cost on the account's billing basis, before billing rules, exact.")
    rows: int = strawberry.field(description="Cost records it sums.")


@strawberry.type(description="An account's usage by service category over a range of months.")
class AccountUsage:
    account: ManagedAccount = strawberry.field(description="The account.")
    lines: list[UsageLine] = strawberry.field(description="Per month, service category and currency, in that order.")
    csv_url: str = strawberry.field(description="Signed link to the same as CSV, valid for a few minutes.")
