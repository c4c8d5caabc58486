"""What an organization's own template costs to print: the sample invoice's HTML from the
product's template (in the worker's process) against an own template that extends it (in a
child interpreter with bounded time and memory, jobs/invoice_templates.py), printed one view per
child (a preview, a single generation) and a batch per child (a generation job's invoices of one
organization). The last line is `own_batch_ms_per_invoice <value>`.

    .venv/bin/python bench/own_templates.py [--count 5] [--batch 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.invoice_templates import render_own  # noqa: E402
from jobs.rendering import render_invoice_html, sample_view  # noqa: E402

OWN = '{% extends "invoice/v1.html" %}{% block footer %}Northwind layout · {{ number }}{% endblock %}'


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5, help="children started one view each")
    parser.add_argument("--batch", type=int, default=50, help="views printed by one child")
    args = parser.parse_args()

    view = sample_view()
    render_invoice_html(view)
    started = time.perf_counter()
    for _ in range(args.batch):
        render_invoice_html(view)
    product_ms = (time.perf_counter() - started) * 1000 / args.batch

    started = time.perf_counter()
    for _ in range(args.count):
        await render_own(OWN, [view])
    single_ms = (time.perf_counter() - started) * 1000 / args.count

    started = time.perf_counter()
    printed = await render_own(OWN, [view] * args.batch)
    batch_ms = (time.perf_counter() - started) * 1000 / args.batch
    assert len(printed) == args.batch and "Northwind layout" in printed[0]

    print(f"product template, in process: {product_ms:.2f} ms per invoice")
    print(f"own template, one view per child ({args.count} children): {single_ms:.0f} ms per invoice")
    print(f"own template, {args.batch} views in one child: {batch_ms:.1f} ms per invoice")
    print(f"own_batch_ms_per_invoice {batch_ms:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
