"""Build an index directory from a corpus and load any index directory back.

An index directory holds the passages (:mod:`searchr1.search.docstore`), the
retriever's own files, and ``index.json``::

    {"format": 1, "kind": "bm25" | "dense", "num_passages": N,
     "corpus": {"path": ..., "sha256": <sha256 of the canonical passage store>},
     "retriever": {...settings...}, "build_seconds": ..., "searchr1_version": ...}

The evaluation's protocol manifest reads ``kind``, ``corpus.sha256``, ``retriever``
and ``num_passages`` from here.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from searchr1 import __version__
from searchr1.search.base import Document, Retriever
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.search.corpus import iter_corpus
from searchr1.search.dense import DenseConfig, DenseRetriever
from searchr1.search.docstore import DocStore, DocStoreWriter, tee_into_store, write_docstore

META_FILE = "index.json"
KINDS = ("bm25", "dense")


@dataclass
class IndexConfig:
    retriever: str = "bm25"
    """'bm25' (lexical, fast, no model) or 'dense' (encoder + FAISS)."""
    bm25: BM25Config = field(default_factory=BM25Config)
    """Settings used when retriever == 'bm25'."""
    dense: DenseConfig = field(default_factory=DenseConfig)
    """Settings used when retriever == 'dense'."""
    show_progress: bool = False
    """Progress bars while building."""

    def __post_init__(self):
        if self.retriever not in KINDS:
            raise ValueError(f"retriever={self.retriever!r}: use 'bm25' or 'dense'.")


def build_index(corpus: str | Path | Iterable[Document], out_dir: str | Path,
                config: IndexConfig | None = None) -> Retriever:
    """Stream ``corpus`` (a file path or documents) once into ``out_dir``; return the retriever."""
    config = config or IndexConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / META_FILE).exists():
        (out / META_FILE).unlink()  # a half-rebuilt directory must not look complete
    t0 = time.perf_counter()
    corpus_path = str(corpus) if isinstance(corpus, (str, Path)) else None
    docs = iter_corpus(corpus) if corpus_path else iter(corpus)
    writer = DocStoreWriter(out)
    stream = tee_into_store(docs, writer)
    try:
        if config.retriever == "bm25":
            retriever = BM25Retriever.build(stream, config.bm25, store=writer, show_progress=config.show_progress)
        else:
            retriever = DenseRetriever.build(stream, config.dense, store=writer, show_progress=config.show_progress)
    finally:
        writer.close()
    retriever.docs = DocStore(out)
    save_index(retriever, out, corpus_path=corpus_path, build_seconds=time.perf_counter() - t0)
    return retriever


def save_index(retriever, out_dir: str | Path, corpus_path: str | None = None,
               build_seconds: float | None = None) -> dict:
    """Write a complete index directory for ``retriever`` (a BM25Retriever or DenseRetriever):
    its passages (unless they already live there), its own files and ``index.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = retriever.docs
    if isinstance(docs, DocStore) and docs.dir.resolve() == out.resolve():
        sha = docs.sha256
    else:
        sha = write_docstore(docs, out)
    retriever.save_files(out)
    meta = {
        "format": 1,
        "kind": retriever.kind,
        "num_passages": len(retriever),
        "corpus": {"path": corpus_path, "sha256": sha},
        "retriever": retriever.describe(),
        "build_seconds": None if build_seconds is None else round(build_seconds, 3),
        "searchr1_version": __version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def read_index_meta(index_dir: str | Path) -> dict:
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{index_dir}: no {META_FILE}, so this is not a (complete) searchr1 index; "
                                "build one with `searchr1 index --corpus C --out DIR`.")
    meta = json.loads(path.read_text())
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path}: unknown index kind {meta.get('kind')!r}; rebuild the index.")
    return meta


def load_retriever(index_dir: str | Path) -> Retriever:
    """The retriever saved in ``index_dir`` (kind from ``index.json``)."""
    meta = read_index_meta(index_dir)
    if meta["kind"] == "bm25":
        return BM25Retriever.load(index_dir)
    return DenseRetriever.load(index_dir)

