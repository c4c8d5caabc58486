"""Enqueueing background work, used by resolvers and the CLI after their changes commit.

Job ids are derived from the invoice, so a job that is already queued or running for an
invoice is never queued twice (arq refuses a second job with the same id)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arq import ArqRedis

GENERATE = "generate_invoice"
SEND = "send_invoice"
NOTIFY = "notify_customer"
COST_IMPORT = "run_cost_import"


def generate_job_id(invoice_id: Any) -> str:
    return f"{GENERATE}:{invoice_id}"


def send_job_id(invoice_id: Any, attempt: str = "approval") -> str:
    return f"{SEND}:{invoice_id}:{attempt}"


async def enqueue_generation(redis: ArqRedis, invoice_ids: Iterable[Any]) -> None:
    for invoice_id in invoice_ids:
        await redis.enqueue_job(GENERATE, str(invoice_id), _job_id=generate_job_id(invoice_id))


async def enqueue_send(redis: ArqRedis, invoice_id: Any, attempt: str = "approval") -> None:
    await redis.enqueue_job(SEND, str(invoice_id), _job_id=send_job_id(invoice_id, attempt))


async def enqueue_notification(redis: ArqRedis, invoice_id: Any, notice: str, refund_id: Any = None) -> None:
    """Queue a notice to the customer (`voided`, or `refunded` with the refund's id): one job
    per void and per refund."""
    key = f"{NOTIFY}:{invoice_id}:{notice}" + (f":{refund_id}" if refund_id else "")
    await redis.enqueue_job(NOTIFY, str(invoice_id), notice, str(refund_id) if refund_id else None, _job_id=key)


async def enqueue_cost_import(redis: ArqRedis, cost_import_id: Any) -> None:
    """Queue a registered cost delivery's import, once (the job id is the import's)."""
    await redis.enqueue_job(COST_IMPORT, str(cost_import_id), _job_id=f"{COST_IMPORT}:{cost_import_id}")
