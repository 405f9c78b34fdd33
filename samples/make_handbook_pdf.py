"""Writes samples/documents/handbook.pdf, the demo's PDF (2 pages, fpdf2).  Run it from anywhere."""

from pathlib import Path

from fpdf import FPDF

PAGES = [
    ("Operating the task layer",
     "This handbook explains how to run the EasyRAG task layer in production. Workers are ordinary "
     "Celery workers: start one per machine with a name of its own, and start more when the queues "
     "grow. Each worker takes tasks in priority order, URGENT first and LOW last. A task that fails "
     "with a temporary error is retried with a growing pause, up to its retry limit. A task that "
     "fails for good, such as a parse of a corrupt file, fails at once and says why.\n\n"
     "Redis holds everything the layer knows: the broker lists, the task records, the locks and the "
     "counters. Give it enough memory, turn eviction off and keep append-only persistence on. Then a "
     "restart of Redis loses no task that was accepted."),
    ("Documents and chunks",
     "A document is a file in Django storage with a status: uploaded, parsing, parsed or failed. "
     "Parsing turns it into chunks of text for retrieval. The parser reads plain text, Markdown, "
     "HTML and PDF files. It works in stages. INIT loads the document and checks its owner. EXTRACT "
     "saves the text of the file. CHUNK splits the text into overlapping chunks on sentence or word "
     "boundaries. STORE replaces the document's chunks in one transaction.\n\n"
     "Each stage saves its output, so a parse that stopped can resume from the stage that failed. "
     "The chunk size and the overlap are settings, counted in characters."),
]


def main() -> None:
    pdf = FPDF()
    pdf.set_title("EasyRAG task layer handbook")
    for title, text in PAGES:
        pdf.add_page()
        pdf.set_font("helvetica", "B", 16)
        pdf.multi_cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    target = Path(__file__).resolve().parent / "documents" / "handbook.pdf"
    pdf.output(str(target))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
