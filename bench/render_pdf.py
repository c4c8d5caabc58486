"""Warm PDF throughput: the sample invoice printed by one warm Chromium through its page pool.

Starts the renderer once, warms every page of the pool, then prints `--count` invoices with
as many in flight as the pool has pages. This is the floor of the generation job (the
browser alone, without database or storage); other benches import `raw_throughput`. The last
line is `pdf_per_s <value>`.

    .venv/bin/python bench/render_pdf.py [--count 200] [--pool 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.settings import get_settings  # noqa: E402
from jobs.pdf import PdfRenderer  # noqa: E402
from jobs.rendering import render_invoice_html, sample_view  # noqa: E402


async def raw_throughput(html: str, n: int, pool_size: int) -> float:
    """PDFs per second for `n` warm renders of `html`, `pool_size` at a time."""
    async with PdfRenderer(get_settings(), pool_size=pool_size) as renderer:
        await asyncio.gather(*(renderer.render(html) for _ in range(2 * pool_size)))
        started = time.perf_counter()
        await asyncio.gather(*(renderer.render(html) for _ in range(n)))
        return n / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="renders to time")
    parser.add_argument("--pool", type=int, default=2, help="pages in the pool (renders in flight)")
    args = parser.parse_args()

    view = sample_view()
    html = render_invoice_html(view)  # the first call also compiles the template
    started = time.perf_counter()
    render_invoice_html(view)
    html_ms = (time.perf_counter() - started) * 1000
    per_second = await raw_throughput(html, args.count, args.pool)
    print(f"sample invoice: {len(view['lines'])} lines, {len(html):,} bytes of HTML ({html_ms:.1f} ms from view to HTML)")
    print(f"pool {args.pool}, {args.count} warm renders: {per_second:.1f} invoices/s, {1000 / per_second:.1f} ms per invoice")
    print(f"pdf_per_s {per_second:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
