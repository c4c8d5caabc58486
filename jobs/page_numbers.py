"""Every page of a printed document says "Page n of m", written once the document stands alone
(jobs/pdf.py says why not by Chromium): in the bottom margin, in PDF's own Helvetica, so that
nothing is embedded and the text reads back as it was written."""

from __future__ import annotations

from typing import Any

# Where a page's number goes: in the bottom margin (PDF_OPTIONS' 12 mm), at the left margin.
_LABEL_AT = (34.0, 16.0)
_LABEL_SIZE = 7.5


def _pdf_text(text: str) -> bytes:
    """A PDF string literal of `text` in WinAnsiEncoding (Latin-1 and more: every supported
    language's page label)."""
    encoded = text.encode("cp1252", "replace")
    return b"(" + encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def number_pages(pdf: Any, label: str) -> None:
    """Write `label` ("Page {page} of {pages}") into each page of `pdf` (a pikepdf.Pdf)."""
    import pikepdf

    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font,
            Subtype=pikepdf.Name.Type1,
            BaseFont=pikepdf.Name.Helvetica,
            Encoding=pikepdf.Name.WinAnsiEncoding,
        )
    )
    total = len(pdf.pages)
    for number, page in enumerate(pdf.pages, start=1):
        # A fixed name (Chromium's fonts are /F1, /F2...): the same document prints the same bytes.
        name = page.add_resource(font, pikepdf.Name.Font, pikepdf.Name("/InvoicingPageNumber"))
        text = _pdf_text(label.format(page=number, pages=total))
        # The page's own drawing is wrapped in q/Q so that the label starts from the page's
        # untransformed coordinates.
        page.contents_add(pikepdf.Stream(pdf, b"q\n"), prepend=True)
        page.contents_add(
            pikepdf.Stream(
                pdf,
                b"\nQ\nq 0.42 0.47 0.52 rg BT "
                + str(name).encode()
                + b" %.1f Tf %.1f %.1f Td " % (_LABEL_SIZE, *_LABEL_AT)
                + text
                + b" Tj ET Q\n",
            )
        )
