"""Streaming construction of bm25s' BM25 score matrix in bounded memory.

``bm25s.BM25.index`` needs every passage's term ids as Python lists and then holds, at once,
the flat scores / passage / term arrays (12 B per posting) and an argsort of packed 64-bit keys
(another 24 B per posting): a 1M-passage build peaked at ~3.1 GB. :class:`ScoreMatrixBuilder`
builds the same matrix from a single pass over the passages:

* term ids are appended to a flat ``array('i')`` and, every ``chunk_tokens`` tokens, reduced
  with numpy to the chunk's distinct (passage, term) pairs: term id (int32) and term frequency
  (uint16, int32 when a passage repeats a term 65,536+ times) -- 6 bytes per posting, no
  per-passage Python objects;
* with ``spill_dir`` (``build_index`` passes the index directory) the reduced chunks go to an
  anonymous temporary file there instead of staying in memory;
* :meth:`finish` computes document frequencies, IDF and the average length, then fills the CSC
  arrays (``data`` float32, ``indices`` int32, ``indptr`` int64) one chunk at a time by a
  counting sort (each term's postings are written in passage order), freeing each chunk as it
  goes: the matrix itself (8 bytes per posting) plus one chunk's temporaries, instead of ~50
  bytes per posting.

The scores are those of bm25s (same ``method``, ``k1``, ``b``; same float32 IDF, float64 term
weight, float32 result, computed in the same order of operations), so the arrays are identical
to ``bm25s.BM25(...).index((corpus_ids, vocab))`` -- ``tests/search/test_bm25.py`` checks it
bit for bit for every supported method. The result is a ``bm25s.BM25`` whose ``save`` writes the
usual files, so ``bm25s.BM25.load(..., mmap=True)`` and our kernels read it unchanged.
"""
from __future__ import annotations

import math
import tempfile
from array import array
from pathlib import Path

import numpy as np

BM25_METHODS = ("lucene", "robertson", "atire")
"""The bm25s scoring variants the builder computes (searchr1.search.bm25 re-exports this tuple)."""


def idf(method: str, df: int, n_docs: int) -> float:
    """bm25s' IDF for a term in ``df`` of ``n_docs`` passages (Kamphuis et al. 2020 variants)."""
    if method == "lucene":
        return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    if method == "robertson":  # clamped at 0 for terms in over half the passages
        return math.log(max((n_docs - df + 0.5) / (df + 0.5), 1))
    if method == "atire":
        return math.log(n_docs / df)
    raise ValueError(f"BM25 method {method!r} is not supported; use one of {BM25_METHODS}.")


def term_weights(method: str, tf: np.ndarray, doc_len: np.ndarray, avg_len: float, k1: float, b: float) -> np.ndarray:
    """bm25s' term-frequency component, float64: ``tf`` float32 counts, ``doc_len`` passage lengths."""
    norm = k1 * ((1 - b) + b * doc_len.astype(np.float64) / avg_len)  # float64, as bm25s per passage
    if method in ("lucene", "robertson"):
        return tf / (norm + tf)
    if method == "atire":  # bm25s: (tf * (k1 + 1)) in float32, over a float64 denominator
        return (tf * np.float32(k1 + 1)) / (tf + norm)
    raise ValueError(f"BM25 method {method!r} is not supported; use one of {BM25_METHODS}.")


class ScoreMatrixBuilder:
    """Add passages' term ids one at a time (``add``), then :meth:`finish` → CSC arrays.

    Term ids are dense (0..V-1, V may grow while adding); ``-1`` entries are skipped (the
    tokenizer's marker for a stopword), so they count neither as postings nor in the length.
    """

    def __init__(self, chunk_tokens: int = 1 << 22, spill_dir: str | Path | None = None):
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens={chunk_tokens}: use a positive token count per chunk.")
        self.chunk_tokens = chunk_tokens
        # With spill_dir, reduced chunks go to an anonymous temporary file there (deleted when closed,
        # even if the process dies) instead of staying in memory until finish().
        self._spill_dir = spill_dir
        self._spill = None if spill_dir is None else tempfile.TemporaryFile(prefix="bm25-build-", dir=spill_dir)
        self._spilled: list[tuple[int, int, np.dtype]] = []  # per spilled chunk: passages, postings, tf dtype
        self._tokens = array("i")  # current chunk: term ids (with -1 for skipped tokens)
        self._raw_lens = array("i")  # current chunk: tokens per passage, skipped ones included
        self._terms: list[np.ndarray] = []  # per chunk: term id of each posting, passage-major
        self._tfs: list[np.ndarray] = []  # per chunk: its frequency in the passage
        self._n_terms: list[np.ndarray] = []  # per chunk: distinct terms per passage
        self._lens: list[np.ndarray] = []  # per chunk: passage length (indexed tokens)
        self._df = np.zeros(0, dtype=np.int64)
        self.n_docs = 0
        self.nnz = 0
        self._total_len = 0

    @property
    def pending(self) -> int:
        """Passages added but not yet reduced into a chunk."""
        return len(self._raw_lens)

    def add(self, term_ids: list[int]) -> None:
        self._tokens.extend(term_ids)
        self._raw_lens.append(len(term_ids))
        if len(self._tokens) >= self.chunk_tokens:
            self._flush()

    def _flush(self) -> None:
        m = len(self._raw_lens)
        if m == 0:
            return
        tokens = np.frombuffer(self._tokens, dtype=np.int32) if len(self._tokens) else np.zeros(0, np.int32)
        doc = np.repeat(np.arange(m, dtype=np.int64), np.frombuffer(self._raw_lens, dtype=np.int32))
        keep = tokens >= 0
        doc, tokens = doc[keep], tokens[keep]
        lens = np.bincount(doc, minlength=m).astype(np.int32)
        keys, tf = np.unique((doc << 32) | tokens.astype(np.int64), return_counts=True)  # sorted: passage, term
        del doc, tokens, keep
        terms = (keys & 0xFFFFFFFF).astype(np.int32)
        n_terms = np.bincount(keys >> 32, minlength=m).astype(np.int32)
        del keys
        tf = tf.astype(np.uint16 if tf.size == 0 or tf.max() <= np.iinfo(np.uint16).max else np.int32)
        if self._spill is not None:
            for a in (terms, tf, n_terms, lens):
                self._spill.write(a.tobytes())
            self._spilled.append((m, len(terms), tf.dtype))
        else:
            self._terms.append(terms)
            self._tfs.append(tf)
            self._n_terms.append(n_terms)
            self._lens.append(lens)
        self._total_len += int(lens.sum(dtype=np.int64))
        df = np.bincount(terms, minlength=len(self._df))
        df[: len(self._df)] += self._df
        self._df = df.astype(np.int64)
        self.n_docs += m
        self.nnz += len(terms)
        self._tokens = array("i")
        self._raw_lens = array("i")

    def _chunks(self):
        """The reduced chunks in passage order, each released (or read back from disk) in turn."""
        if self._spill is None:
            while self._terms:
                yield self._terms.pop(0), self._tfs.pop(0), self._n_terms.pop(0), self._lens.pop(0)
            return
        self._spill.flush()
        self._spill.seek(0)
        for m, nnz, tf_dtype in self._spilled:
            arrays = []
            for dtype, count in ((np.int32, nnz), (tf_dtype, nnz), (np.int32, m), (np.int32, m)):
                arrays.append(np.fromfile(self._spill, dtype=dtype, count=count))
                if len(arrays[-1]) != count:
                    raise OSError(f"BM25 build: the temporary chunk file in {self._spill_dir} was cut short; "
                                  "check the disk space where the index is written and rebuild.")
            yield tuple(arrays)

    def close(self) -> None:
        """Drop the temporary chunk file (finish() does it; call this after a failed build)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def finish(self, n_terms: int, method: str, k1: float, b: float) -> dict:
        """bm25s' ``scores`` dict (``data``, ``indices``, ``indptr``, ``num_docs``) over ``n_terms`` columns.

        Consumes the builder (its chunks are freed while the matrix is filled)."""
        if method not in BM25_METHODS:
            raise ValueError(f"BM25 method {method!r} is not supported; use one of {BM25_METHODS}.")
        self._flush()
        n = self.n_docs
        if n == 0:
            raise ValueError("cannot build a BM25 index over an empty corpus; check the corpus file.")
        if len(self._df) > n_terms:
            raise ValueError(f"term id {len(self._df) - 1} is outside the vocabulary of {n_terms} terms.")
        df = np.zeros(n_terms, dtype=np.int64)
        df[: len(self._df)] = self._df
        self._df = df
        avg_len = np.float64(self._total_len) / n  # == bm25s' np.array(lengths).mean() (exact integer sum)
        idf_arr = np.zeros(n_terms, dtype=np.float32)
        for t in np.flatnonzero(df):
            idf_arr[t] = idf(method, int(df[t]), n)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        data = np.empty(self.nnz, dtype=np.float32)
        indices = np.empty(self.nnz, dtype=np.int32)
        heads = indptr[:-1].copy()  # next free slot of each term's posting list
        first_doc = 0
        for terms, tf, n_terms_doc, lens in self._chunks():
            doc_local = np.repeat(np.arange(len(lens), dtype=np.int32), n_terms_doc)
            weights = term_weights(method, tf.astype(np.float32), lens[doc_local], avg_len, k1, b)
            scores = (idf_arr[terms] * weights).astype(np.float32)
            del weights, tf
            order = np.argsort(terms, kind="stable")  # by term, passages ascending within a term
            sorted_terms = terms[order]
            uniq, start, count = np.unique(sorted_terms, return_index=True, return_counts=True)
            pos = heads[sorted_terms] + (np.arange(len(order)) - np.repeat(start, count))
            data[pos] = scores[order]
            indices[pos] = doc_local[order] + first_doc
            heads[uniq] += count
            first_doc += len(lens)
            del terms, scores, order, sorted_terms, pos, doc_local
        self.close()
        if not np.array_equal(heads, indptr[1:]):
            raise RuntimeError("BM25 matrix build: posting counts disagree with document frequencies (a bug).")
        return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n}
