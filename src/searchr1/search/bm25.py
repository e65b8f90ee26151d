"""BM25 retrieval on ``bm25s``: PyStemmer stemming, English stopwords, batched top-k.

Tokenization (same for passages and queries): lowercase, ``\\w\\w+`` tokens (bm25s'
default pattern), English stopwords (bm25s' list) removed, Snowball stemming
(PyStemmer). The passage text indexed is ``title + " " + text``.

The sparse score matrix is bm25s' (``method``: ``lucene`` by default, also
``robertson``/``atire``), built in bounded memory by :mod:`searchr1.search.bm25_matrix`
(identical arrays to ``bm25s.BM25.index``) and saved/loaded by bm25s; note bm25s'
Robertson/Lucene term weight omits the constant ``(k1 + 1)`` factor of textbook BM25
(rank_bm25), which scales every score equally and leaves rankings unchanged. Retrieval
runs our own kernel (:mod:`searchr1.search.bm25_kernels`) so that hits are passages with
a positive score, ties are broken by corpus index, and a query with no indexable term (all
stopwords / unknown words) returns an empty hit list instead of failing.
"""
from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from searchr1.search import bm25_kernels as K
from searchr1.search.base import Document, Hit, config_from_json
from searchr1.search.bm25_matrix import BM25_METHODS, ScoreMatrixBuilder
from searchr1.search.docstore import DocStore

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
MODEL_SUBDIR = "bm25s"


@dataclass
class BM25Config:
    k1: float = 0.9
    """Term-frequency saturation (Pyserini/Search-R1 default 0.9; bm25s default 1.5)."""
    b: float = 0.4
    """Length normalisation (Pyserini/Search-R1 default 0.4)."""
    method: str = "lucene"
    """bm25s scoring variant: 'lucene' (idf log(1 + (N-df+.5)/(df+.5))), 'robertson' or 'atire'."""
    stemmer: str | None = "english"
    """PyStemmer (Snowball) language, or None to disable stemming."""
    stopwords: str | None = "en"
    """'en' for bm25s' English stopword list, or None to keep every token."""
    backend: str = "auto"
    """'numba' (parallel kernel), 'numpy', or 'auto' (numba when importable)."""
    n_threads: int = 0
    """Threads for batched queries (numba kernel); 0 = one per CPU core."""

    def __post_init__(self):
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={self.k1}, b={self.b}); "
                             "the usual values are k1=0.9, b=0.4 or k1=1.2, b=0.75.")
        if self.method not in BM25_METHODS:
            raise ValueError(f"BM25 method {self.method!r} is not supported; use one of {BM25_METHODS}.")
        if self.stopwords not in (None, "en"):
            raise ValueError(f"stopwords={self.stopwords!r}: use 'en' or None.")
        if self.backend not in ("auto", "numba", "numpy"):
            raise ValueError(f"backend={self.backend!r}: use 'auto', 'numba' or 'numpy'.")
        if self.n_threads < 0:
            raise ValueError(f"n_threads={self.n_threads}: use 0 (one per core) or a positive count.")


class Tokenizer:
    """Text → stemmed terms. Stems are cached per surface word (PyStemmer is C, the cache
    saves the Python call). Not thread-safe for concurrent writers of the cache; the
    cache only grows with distinct words and a lost insert is harmless."""

    def __init__(self, stemmer: str | None = "english", stopwords: str | None = "en"):
        self._split = re.compile(TOKEN_PATTERN).findall
        if stopwords == "en":
            from bm25s.stopwords import STOPWORDS_EN

            self._stop = frozenset(STOPWORDS_EN)
        else:
            self._stop = frozenset()
        self._stem = None
        if stemmer:
            try:
                import Stemmer
            except ImportError as e:
                raise ImportError("BM25 stemming needs PyStemmer: `pip install PyStemmer` "
                                  "(or set BM25Config(stemmer=None)).") from e
            self._stem = Stemmer.Stemmer(stemmer).stemWord
        self._cache: dict[str, str] = {}

    def term(self, word: str) -> str | None:
        """The indexed term of one lowercased surface word, or None for a stopword (uncached)."""
        if word in self._stop:
            return None
        return self._stem(word) if self._stem else word

    def split(self, lowered: str) -> list[str]:
        """Surface tokens of already-lowercased text (before stopwords and stemming)."""
        return self._split(lowered)

    def __call__(self, text: str) -> list[str]:
        out = []
        cache, stop = self._cache, self._stop
        for w in self._split(text.lower()):
            if w in stop:
                continue
            s = cache.get(w)
            if s is None:
                s = self._stem(w) if self._stem else w
                cache[w] = s
            out.append(s)
        return out


def passage_text(doc: Document) -> str:
    return f"{doc.title} {doc.text}" if doc.title else doc.text


class BM25Retriever:
    """BM25 over a passage sequence (a list or a memory-mapped :class:`DocStore`)."""

    kind = "bm25"

    def __init__(self, model, docs: Sequence[Document], config: BM25Config):
        self.model = model  # bm25s.BM25 with .scores {data, indices, indptr, num_docs} and .vocab_dict
        self.docs = docs
        self.config = config
        self.tokenizer = Tokenizer(config.stemmer, config.stopwords)
        self._data = np.asarray(model.scores["data"], dtype=np.float32)
        self._indices = np.asarray(model.scores["indices"])
        self._indptr = np.asarray(model.scores["indptr"], dtype=np.int64)
        self._n_docs = int(model.scores["num_docs"])
        if self._n_docs != len(docs):
            raise ValueError(f"BM25 index has {self._n_docs} passages but the passage store has {len(docs)}; "
                             "the index directory is inconsistent, rebuild it.")
        self._vocab = {t: int(i) for t, i in model.vocab_dict.items()}
        self._use_numba = self._pick_backend(config.backend)
        if self._use_numba:
            if not K.postings_sorted(self._indices, self._indptr):
                raise ValueError("BM25 posting lists are not sorted by passage; rebuild the index.")
            self._term_max = K.term_max_scores(self._data, self._indptr)
        self._threads = config.n_threads or os.cpu_count() or 1
        self._pool = None  # created on the first large batch
        self._pool_lock = threading.Lock()

    @staticmethod
    def _pick_backend(backend: str) -> bool:
        if backend == "numba" and not K.HAVE_NUMBA:
            raise ImportError("BM25Config(backend='numba') needs numba: `pip install numba`, or use backend='auto'.")
        return backend != "numpy" and K.HAVE_NUMBA

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, docs: Iterable[Document], config: BM25Config | None = None, *,
              store: Sequence[Document] | None = None, show_progress: bool = False,
              spill_dir: str | Path | None = None) -> "BM25Retriever":
        """Index ``docs`` (streamed once). ``store`` is the sequence hits are read from;
        by default ``docs`` is materialised into a list (``build_index`` passes its passage
        store, so no passage is held while building). ``spill_dir``: a directory for the
        temporary file of reduced term-id chunks (6 bytes per posting), which otherwise stay
        in memory until the matrix is filled."""
        import bm25s

        config = config or BM25Config()
        tok = Tokenizer(config.stemmer, config.stopwords)
        vocab: dict[str, int] = {}  # stemmed term -> id
        surface: dict[str, int] = {}  # lowercased word -> term id, -1 for a stopword (one lookup per token)

        def term_id(word: str) -> int:
            term = tok.term(word)  # `word` is one \w\w+ token, as the tokenizer would split it
            if term is None:
                i = -1
            else:
                i = vocab.get(term)
                if i is None:
                    i = vocab[term] = len(vocab)
            surface[word] = i
            return i

        split = tok.split
        kept: list[Document] | None = [] if store is None else None
        matrix = ScoreMatrixBuilder(spill_dir=spill_dir)
        if show_progress:
            from tqdm.auto import tqdm

            docs = tqdm(docs, desc="BM25 index", unit=" passages")
        try:
            for doc in docs:
                if kept is not None:
                    kept.append(doc)
                # term ids, -1 for stopwords (the builder skips them)
                matrix.add([surface[w] if w in surface else term_id(w) for w in split(passage_text(doc).lower())])
            if not vocab:
                vocab[""] = 0  # a corpus of stopwords only: keep bm25s' matrix well-formed
            surface.clear()  # one entry per distinct surface word: free it before the matrix is filled
            scores = matrix.finish(len(vocab), config.method, config.k1, config.b)
        finally:
            matrix.close()
        model = bm25s.BM25(k1=config.k1, b=config.b, method=config.method, backend="numpy")
        model.scores = scores
        model.vocab_dict = vocab
        model.nonoccurrence_array = None  # only bm25l / bm25+ use one
        model.unique_token_ids_set = set(vocab.values())
        return cls(model, kept if store is None else store, config)

    # ---- persistence ----------------------------------------------------------------------
    def save_files(self, index_dir: str | Path) -> None:
        """The retriever's own files: bm25s matrices under ``bm25s/`` and ``bm25.json``."""
        index_dir = Path(index_dir)
        self.model.save(index_dir / MODEL_SUBDIR, show_progress=False)
        (index_dir / "bm25.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, index_dir: str | Path, docs: Sequence[Document] | None = None,
             mmap: bool = False) -> "BM25Retriever":
        import bm25s

        index_dir = Path(index_dir)
        cfg_path = index_dir / "bm25.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{index_dir}: not a BM25 index (no bm25.json); "
                                    "build one with `searchr1 index --retriever bm25`.")
        config = config_from_json(BM25Config, cfg_path)
        model = bm25s.BM25.load(index_dir / MODEL_SUBDIR, mmap=mmap)
        return cls(model, docs if docs is not None else DocStore(index_dir), config)

    # ---- search ---------------------------------------------------------------------------
    def encode_queries(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Queries → (q_ptr (Q+1,), q_ids (total terms,)); unknown terms dropped."""
        vocab = self._vocab
        ptr = [0]
        ids: list[int] = []
        for q in queries:
            ids.extend(i for i in map(vocab.get, self.tokenizer(q)) if i is not None)
            ptr.append(len(ids))
        return np.asarray(ptr, dtype=np.int64), np.asarray(ids, dtype=np.int64)

    def search_indices(self, queries: list[str], topk: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, topk) passage indices (``-1`` = no hit) and float32 scores, best first."""
        if topk < 1:
            raise ValueError(f"topk={topk}: ask for at least 1 passage.")
        q_ptr, q_ids = self.encode_queries(queries)
        args = (q_ptr, q_ids, self._data, self._indices, self._indptr, self._n_docs, topk)
        if self._use_numba:
            if self._pool is None and self._threads > 1 and len(queries) >= 64:
                with self._pool_lock:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="searchr1-bm25")
            return K.topk_numba(*args, term_max=self._term_max, pool=self._pool, n_threads=self._threads)
        return K.topk_numpy(*args)

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        idx, scores = self.search_indices(list(queries), topk)
        docs = self.docs
        return [[Hit(docs[int(i)], float(s)) for i, s in zip(row_i, row_s) if i >= 0]
                for row_i, row_s in zip(idx, scores)]

    def __len__(self) -> int:
        return self._n_docs

    def describe(self) -> dict:
        """Settings recorded in the index metadata."""
        return {"kind": self.kind, **asdict(self.config), "vocab_size": len(self._vocab)}
