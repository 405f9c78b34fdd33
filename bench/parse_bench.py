"""Parsing a long PDF: time and peak memory of the parse stages, against loading it all at once.

    python3 scripts/dev.py run -- python bench/parse_bench.py [--pages 300] [--rounds 3]
                                  [--chunking-sizes 8,16,32] [--only pdf|chunking]

Writes a PDF of ``--pages`` pages of prose (fpdf2, ~2 500 characters a page; kept in .run/bench/),
then, in a fresh child process per round and variant, with a private SQLite database and
MEDIA_ROOT:

- ``stages``: what DocumentParseTaskHandler runs (easyrag.documents.pipeline: extract -> chunk
  -> store), which reads the PDF from storage as pages need it and streams text and chunks through
  temporary files;
- ``all-at-once``: the reference: pypdf given the path (it reads the whole file), the whole text
  joined in memory, split_text() on it, every Chunk row built before one bulk insert.

Each child times one parse (wall clock), then repeats it under tracemalloc for the peak of Python
allocations; ``peak_rss_growth`` is how far the process's peak RSS rose above its level after
set-up.  Medians are printed and written to bench/results/parse_bench.json.  Redis is not used:
progress writes are the task layer's, measured by bench/facade_bench.py.

Chunking (issue 14): a whitespace-heavy text of 8, 16 and 32 MiB ("start", then blank lines,
spaces and tabs, then "end"), fed in 64 KiB pieces through normalize() and iter_chunks() as the
EXTRACT and CHUNK stages do, each size in a fresh process; seconds per size and per MiB are
printed and written to the same JSON under "chunking" (linear: the seconds per MiB stay flat).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "parse_bench.json"
VARIANTS = ("stages", "all-at-once")
VOCABULARY = ["the", "task", "layer", "parses", "every", "document", "into", "chunks", "that", "overlap",
              "so", "retrieval", "finds", "whole", "sentences", "while", "workers", "report", "progress",
              "through", "each", "stage", "of", "pipeline", "and", "redis", "keeps", "records", "safe",
              "across", "restarts", "any", "machine"]


def make_pdf(path: Path, pages: int) -> None:
    from fpdf import FPDF

    rng = random.Random(pages)
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for number in range(1, pages + 1):
        sentences = []
        while sum(map(len, sentences)) < 2400:
            words = [rng.choice(VOCABULARY) for _ in range(rng.randint(6, 18))]
            sentences.append(" ".join(words).capitalize() + ".")
        pdf.add_page()
        pdf.multi_cell(0, 4.5, f"Page {number}. " + " ".join(sentences))
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))


def _kib_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def child(variant: str, pdf: Path) -> dict:
    """One parse of ``pdf`` by ``variant`` in this (fresh) process; figures as a dict."""
    work = Path(tempfile.mkdtemp(prefix="parse-bench-"))
    os.environ.update(DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}", MEDIA_ROOT=str(work / "media"),
                      DJANGO_SETTINGS_MODULE="easyrag.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.files import File
    from django.core.management import call_command

    from easyrag.config import get_config
    from easyrag.documents.models import Document

    call_command("migrate", verbosity=0)
    config = get_config()
    with pdf.open("rb") as source:
        document = Document(id="bench")
        document.file.save("long.pdf", File(source), save=True)
    run = {"stages": _stages, "all-at-once": _all_at_once}[variant]
    import pypdf  # noqa: F401 - loaded before the baseline, as in a worker that parsed before

    rss_before = _kib_rss()
    started = time.perf_counter()
    chunks, characters = run(document, config.chunk_size, config.chunk_overlap)
    seconds = time.perf_counter() - started
    rss_growth = _kib_rss() - rss_before
    tracemalloc.start()
    run(document, config.chunk_size, config.chunk_overlap)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": round(seconds, 3), "python_peak_mib": round(peak / 2**20, 2),
            "peak_rss_growth_mib": round(rss_growth / 1024, 2), "chunks": chunks, "characters": characters,
            "pdf_bytes": pdf.stat().st_size}


def _stages(document, size: int, overlap: int) -> tuple[int, int]:
    from easyrag.documents import pipeline

    pipeline.extract(document)
    pipeline.chunk(document, size, overlap)
    outcome = pipeline.store(document)
    return outcome.chunks, outcome.characters


def _all_at_once(document, size: int, overlap: int) -> tuple[int, int]:
    from django.db import transaction
    from pypdf import PdfReader

    from easyrag.documents.chunking import normalize, split_text
    from easyrag.documents.models import Chunk

    reader = PdfReader(document.file.path)  # a path: pypdf reads the whole file first
    raw = "".join(page.extract_text() + "\n\n" for page in reader.pages)
    text = "".join(normalize([raw]))
    chunks = split_text(text, size, overlap)
    rows = [Chunk(document=document, index=n, text=chunk) for n, chunk in enumerate(chunks)]
    with transaction.atomic():
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(rows)
    return len(rows), len(text)


def chunking_child(mib: int) -> dict:
    """normalize + iter_chunks over ``mib`` MiB of whitespace-heavy text, in 64 KiB pieces."""
    sys.path.insert(0, str(ROOT))
    from easyrag.documents.chunking import iter_chunks, normalize

    block = " \n\t " * (64 * 1024 // 4)
    pieces = ["start", *([block] * (mib * 16)), "end"]
    started = time.perf_counter()
    chunks = sum(1 for _ in iter_chunks(normalize(pieces), 1000, 100))
    return {"mib": mib, "seconds": round(time.perf_counter() - started, 3), "chunks": chunks}


def run_chunking(sizes: list[int]) -> list[dict]:
    results = []
    for mib in sizes:
        output = subprocess.run([sys.executable, __file__, "--chunking-child", str(mib)], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        figures = json.loads(output.strip().splitlines()[-1])
        figures["seconds_per_mib"] = round(figures["seconds"] / mib, 4)
        results.append(figures)
        print(f"chunking {mib:>3} MiB of whitespace-heavy text: {figures['seconds']:.3f} s "
              f"({figures['seconds_per_mib'] * 1000:.1f} ms/MiB)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--pdf", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--chunking-sizes", default="8,16,32", help="MiB of text to chunk, comma-separated")
    parser.add_argument("--only", choices=("pdf", "chunking"), help="run one of the two benchmarks")
    parser.add_argument("--chunking-child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        print(json.dumps(child(options.child, options.pdf)))
        return 0
    if options.chunking_child:
        print(json.dumps(chunking_child(options.chunking_child)))
        return 0
    sizes = [int(size) for size in options.chunking_sizes.split(",") if size.strip()]
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if options.only == "chunking":
        report = {**previous, "chunking": run_chunking(sizes)}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {RESULTS.relative_to(ROOT)}")
        return 0

    pdf = ROOT / ".run" / "bench" / f"parse-{options.pages}-pages.pdf"
    if not pdf.exists():
        started = time.perf_counter()
        make_pdf(pdf, options.pages)
        print(f"wrote {pdf.relative_to(ROOT)} ({pdf.stat().st_size / 2**20:.2f} MiB) in "
              f"{time.perf_counter() - started:.1f} s")
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(options.rounds):
        for variant in VARIANTS:  # alternating, so drift hits both alike
            output = subprocess.run([sys.executable, __file__, "--child", variant, "--pdf", str(pdf)],
                                    cwd=ROOT, capture_output=True, text=True, check=True).stdout
            runs[variant].append(json.loads(output.strip().splitlines()[-1]))
    medians = {variant: {key: statistics.median(run[key] for run in results) for key in results[0]}
               for variant, results in runs.items()}
    stages, reference = medians["stages"], medians["all-at-once"]
    print(f"{options.pages}-page PDF, {stages['pdf_bytes'] / 2**20:.2f} MiB, {stages['characters']:.0f} "
          f"characters -> {stages['chunks']:.0f} chunks; medians of {options.rounds} rounds")
    print(f"{'variant':<12} {'seconds':>8} {'pages/s':>8} {'python peak MiB':>16} {'RSS growth MiB':>15}")
    for variant, figures in medians.items():
        print(f"{variant:<12} {figures['seconds']:>8.2f} {options.pages / figures['seconds']:>8.1f} "
              f"{figures['python_peak_mib']:>16.2f} {figures['peak_rss_growth_mib']:>15.2f}")
    ratios = {"seconds": round(stages["seconds"] / reference["seconds"], 2),
              "python_peak": round(stages["python_peak_mib"] / reference["python_peak_mib"], 2)}
    print(f"stages / all-at-once: time {ratios['seconds']}, python peak {ratios['python_peak']}")
    report = {"pages": options.pages, "rounds": options.rounds, "medians": medians, "ratios": ratios,
              "runs": runs}
    report["chunking"] = run_chunking(sizes) if options.only != "pdf" else previous.get("chunking")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
