"""Whether a month's cost data is complete: per cost source and provider, read from the
deliveries its syncs imported.

- MISSING: the source imported no delivery with costs of the month;
- PARTIAL: its latest such delivery (of that provider) was written before the month ended, or
  less than the organization's settle time after its end (AWS refreshes a month daily while it
  runs and for days after it ends);
- COMPLETE: written at least the settle time after the month's end.

Months are FOCUS's: UTC calendar months, whatever the organization's time zone. The sources
counted are those the scheduled sync reads (`AVAILABLE_KINDS`); an organization without one has
nothing to wait for, and its months close as scheduled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

from tortoise import connections

from models.cost_sources import AVAILABLE_KINDS


class DataCompleteness(str, Enum):
    MISSING = "MISSING"
    PARTIAL = "PARTIAL"
    COMPLETE = "COMPLETE"


@dataclass(frozen=True)
class MonthSource:
    """One source's data for a month, of one provider (None while nothing was delivered)."""

    source_id: UUID
    source_name: str
    # The managed account of an account's own integration; None: the MSP's.
    account_id: UUID | None
    provider: str | None
    state: DataCompleteness
    # When the store wrote its latest delivery with costs of the month (of that provider).
    written_at: datetime | None

    def stored(self) -> dict[str, Any]:
        """As the period keeps it when it closes before complete (JSON)."""
        return {
            "sourceId": str(self.source_id),
            "source": self.source_name,
            "accountId": str(self.account_id) if self.account_id else None,
            "provider": self.provider,
            "state": self.state.value,
            "writtenAt": self.written_at.isoformat() if self.written_at else None,
        }


def month_end(month: date) -> datetime:
    """The instant the (UTC) month ends: the next month's first midnight."""
    start = month.replace(day=1)
    return datetime.combine((start + timedelta(days=32)).replace(day=1), time(), tzinfo=UTC)


def state_of(written_at: datetime | None, month: date, settle_hours: int) -> DataCompleteness:
    if written_at is None:
        return DataCompleteness.MISSING
    if written_at < month_end(month) + timedelta(hours=settle_hours):
        return DataCompleteness.PARTIAL
    return DataCompleteness.COMPLETE


async def month_sources(organization_id: Any, month: date, settle_hours: int) -> list[MonthSource]:
    """Each source of the organization with the month's state of each provider it delivered
    (one MISSING line when it delivered nothing), by source name then provider."""
    return (await months_sources(organization_id, [month], settle_hours))[month.replace(day=1)]


async def months_sources(organization_id: Any, months: list[date], settle_hours: int) -> dict[date, list[MonthSource]]:
    """`month_sources` of several months in one query. A delivery counts once its import is
    DONE; one imported before the store's write times were kept counts from when it was
    imported."""
    firsts = sorted({month.replace(day=1) for month in months})
    rows = await connections.get("default").execute_query_dict(
        """SELECT m.month, s.id, s.name, s.managed_account_id, d.provider_name,
                  max(COALESCE(i.source_written_at, i.created_at)) AS written_at
           FROM cost_sources s CROSS JOIN unnest($2::date[]) AS m(month)
           LEFT JOIN (cost_imports i JOIN cost_delivery_scopes d ON d.cost_import_id = i.id)
             ON i.cost_source_id = s.id AND i.state = 'DONE' AND d.billing_month = m.month
           WHERE s.organization_id = $1 AND s.kind = ANY($3::text[])
           GROUP BY m.month, s.id, s.name, s.managed_account_id, d.provider_name
           ORDER BY m.month, s.name, d.provider_name""",
        [str(organization_id), firsts, [kind.value for kind in AVAILABLE_KINDS]],
    )
    found: dict[date, list[MonthSource]] = {month: [] for month in firsts}
    for row in rows:
        found[row["month"]].append(
            MonthSource(
                row["id"],
                row["name"],
                row["managed_account_id"],
                row["provider_name"],
                state_of(row["written_at"], row["month"], settle_hours),
                row["written_at"],
            )
        )
    return found


def overall(sources: list[MonthSource]) -> DataCompleteness | None:
    """The month's state: the least complete of its sources'; None without sources."""
    if not sources:
        return None
    order = (DataCompleteness.MISSING, DataCompleteness.PARTIAL, DataCompleteness.COMPLETE)
    return min((source.state for source in sources), key=order.index)


def incomplete(sources: list[MonthSource]) -> list[MonthSource]:
    return [source for source in sources if source.state != DataCompleteness.COMPLETE]
