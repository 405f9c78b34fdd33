"""Chunking: sizes, overlap, boundaries, nothing lost, and the stream gives what the whole text gives."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from easyrag.documents.chunking import iter_chunks, normalize, split_text

WORDS = ["retrieval", "augmented", "generation", "splits", "documents", "into", "chunks", "that",
         "overlap", "a", "little", "so", "sentence", "cut", "at", "one", "edge", "is", "still", "whole",
         "in", "the", "next", "chunk", "while", "each", "stays", "small"]


def _prose(sentences: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    out = []
    for n in range(sentences):
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize() + "."
        out.append(sentence + ("\n\n" if n % 7 == 6 else " "))
    return "".join(out).strip()


def _overlap(previous: str, following: str, limit: int) -> int:
    """Length of the longest suffix of ``previous``, at most ``limit``, that ``following`` starts with."""
    return next((n for n in range(min(len(previous), len(following), limit), 0, -1)
                 if following.startswith(previous[-n:])), 0)


def _assert_chunks_cover(text: str, chunks: list[str], size: int, overlap: int) -> None:
    assert chunks, "no chunks"
    assert all(0 < len(chunk) <= size for chunk in chunks), [len(c) for c in chunks]
    assert all(chunk == chunk.strip() for chunk in chunks)
    rebuilt = [chunks[0]]
    for previous, following in itertools.pairwise(chunks):
        shared = _overlap(previous, following, overlap)
        rebuilt.append(following[shared:])
    # Nothing lost, nothing repeated beyond overlaps of at most ``overlap`` characters: the text
    # comes back, whitespace aside.
    assert re.sub(r"\s", "", "".join(rebuilt)) == re.sub(r"\s", "", text)


@pytest.mark.parametrize(("size", "overlap"), [(200, 40), (120, 0), (1000, 100), (60, 59)])
def test_chunks_respect_size_and_overlap_and_lose_nothing(size, overlap):
    text = _prose(120)
    _assert_chunks_cover(text, split_text(text, size, overlap), size, overlap)


def test_chunks_end_at_sentence_ends_when_sentences_fit():
    text = " ".join(f"Sentence {n} has a handful of ordinary words." for n in range(40))
    chunks = split_text(text, 200, 40)
    assert len(chunks) > 5
    assert all(chunk.endswith(".") for chunk in chunks)


def test_overlap_starts_at_a_word_and_is_close_to_the_setting():
    text = " ".join(f"word{n:03d}" for n in range(400))  # no sentence ends: cuts between words
    chunks = split_text(text, 100, 30)
    words = set(text.split())
    for previous, following in itertools.pairwise(chunks):
        assert set(previous.split()) <= words and set(following.split()) <= words  # no word cut
        shared = _overlap(previous, following, 30)
        assert 30 - len("word000 ") < shared <= 30
        assert following[:shared].split()[0] in words


def test_paragraph_breaks_win_over_sentence_ends():
    first = "First paragraph sentence one. " * 4
    text = first.strip() + "\n\n" + "Second paragraph goes on. " * 10
    chunks = split_text(text, 160, 0)
    assert chunks[0] == first.strip()


def test_text_without_spaces_is_cut_hard_at_the_size():
    chunks = split_text("x" * 250, 100, 10)
    assert [len(chunk) for chunk in chunks] == [100, 100, 70]


def test_short_text_is_one_chunk_and_blank_text_none():
    assert split_text("Just this.", 100, 10) == ["Just this."]
    assert split_text("  \n ", 100, 10) == []


@pytest.mark.parametrize("seed", range(5))
def test_stream_in_random_pieces_gives_the_same_chunks(seed):
    text = _prose(200, seed)
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(text):
        step = rng.randint(1, 700)
        pieces.append(text[at:at + step])
        at += step
    assert list(iter_chunks(iter(pieces), 300, 50)) == split_text(text, 300, 50)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="overlap < size"):
        split_text("text", 100, 100)


def test_normalize_collapses_whitespace_across_piece_edges():
    pieces = ["  Title \r", "\n\r\n\n\n  first\t\t line  ", " ", "\n", "second\u00a0 line  \n"]
    assert "".join(normalize(pieces)) == "Title\n\nfirst line\nsecond line"
