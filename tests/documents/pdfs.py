"""Real PDFs for tests, written with fpdf2 (one text block per page)."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF


def pdf_bytes(pages: list[str]) -> bytes:
    """A PDF with one page per string (latin-1 text, Helvetica 11 pt)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 5, text)
    return bytes(pdf.output())


def write_pdf(path: Path, pages: list[str]) -> Path:
    path.write_bytes(pdf_bytes(pages))
    return path
