"""Build an index directory from a corpus and load any index directory back.

An index directory holds the passages (:mod:`searchr1.search.docstore`), the
retriever's own files, and ``index.json``::

    {"format": 1, "kind": "bm25" | "dense", "num_passages": N,
     "corpus": {"path": ..., "sha256": <sha256 of the canonical passage store>},
     "retriever": {...settings...}, "build_seconds": ..., "searchr1_version": ...}

The evaluation's protocol manifest reads ``kind``, ``corpus.sha256``, ``retriever``
and ``num_passages`` from here. Readers check ``format`` (:data:`FORMAT`) and refuse others
with a message, instead of failing later on a missing file.

:func:`import_faiss_index` makes an index directory around an existing FAISS index and
JSONL corpus (Search-R1's ``e5_Flat.index`` + ``wiki-18.jsonl``) without copying either.
"""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from searchr1 import __version__
from searchr1.errors import ConfigError, UsageError
from searchr1.search.base import Document, Retriever
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.search.corpus import CorpusError, iter_corpus
from searchr1.search.dense import DenseConfig, DenseRetriever, LoadOptions, encoder_dim, read_faiss_header
from searchr1.search.docstore import DocStore, DocStoreWriter, scan_source_corpus, tee_into_store, write_docstore
from searchr1.search.qdrant import QdrantConfig, QdrantRetriever

META_FILE = "index.json"
KINDS = ("bm25", "dense", "qdrant")
FORMAT = 1
"""The index directory layout version this searchr1 writes and reads."""


@dataclass
class IndexConfig:
    retriever: str = "bm25"
    """'bm25' (lexical, fast, no model), 'dense' (encoder + FAISS) or 'qdrant' (encoder + a Qdrant collection)."""
    bm25: BM25Config = field(default_factory=BM25Config)
    """Settings used when retriever == 'bm25'."""
    dense: DenseConfig = field(default_factory=DenseConfig)
    """Settings used when retriever == 'dense'."""
    qdrant: QdrantConfig | None = None
    """Settings used when retriever == 'qdrant' (its ``dense`` field holds the encoder settings)."""
    show_progress: bool = False
    """Progress bars while building."""

    def __post_init__(self):
        if self.retriever not in KINDS:
            raise ValueError(f"retriever={self.retriever!r}: use 'bm25', 'dense' or 'qdrant'.")
        if self.retriever == "qdrant" and (self.qdrant is None or self.qdrant.url == ":memory:"):
            raise ValueError("retriever='qdrant' needs QdrantConfig(url=...) naming a Qdrant server "
                             "(http://host:6333) or a directory (embedded mode); ':memory:' cannot be reopened.")


def build_index(corpus: str | Path | Iterable[Document], out_dir: str | Path,
                config: IndexConfig | None = None) -> Retriever:
    """Stream ``corpus`` (a file path or documents) once into ``out_dir``; return the retriever."""
    config = config or IndexConfig()
    out = _prepare_out_dir(out_dir)
    if (out / META_FILE).exists():
        (out / META_FILE).unlink()  # a half-rebuilt directory must not look complete
    t0 = time.perf_counter()
    corpus_path = str(corpus) if isinstance(corpus, (str, Path)) else None
    docs = iter_corpus(corpus) if corpus_path else iter(corpus)
    first = next(docs, None)
    if first is None:
        raise CorpusError(f"{corpus_path or 'corpus'}: the corpus has no passages; check the file.")
    docs = itertools.chain([first], docs)
    writer = DocStoreWriter(out)
    stream = tee_into_store(docs, writer)
    try:
        if config.retriever == "bm25":
            retriever = BM25Retriever.build(stream, config.bm25, store=writer, show_progress=config.show_progress,
                                            spill_dir=out)
        elif config.retriever == "dense":
            retriever = DenseRetriever.build(stream, config.dense, store=writer, show_progress=config.show_progress)
        else:
            retriever = QdrantRetriever.build(stream, config.qdrant, show_progress=config.show_progress)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    retriever.docs = DocStore(out)
    save_index(retriever, out, corpus_path=corpus_path, build_seconds=time.perf_counter() - t0)
    return retriever


def save_index(retriever, out_dir: str | Path, corpus_path: str | None = None,
               build_seconds: float | None = None) -> dict:
    """Write a complete index directory for ``retriever`` (BM25, dense or Qdrant retriever):
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
        "format": FORMAT,
        "kind": retriever.kind,
        "num_passages": len(retriever),
        "corpus": {"path": corpus_path, "sha256": sha},
        "retriever": retriever.describe(),
        "build_seconds": None if build_seconds is None else round(build_seconds, 3),
        "searchr1_version": __version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def _prepare_out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; pass a new or existing directory for the index.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_index_meta(index_dir: str | Path) -> dict:
    """``index.json`` of ``index_dir``, checked: a known format version and index kind."""
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{index_dir}: no {META_FILE}, so this is not a (complete) searchr1 index; "
                                "build one with `searchr1 index --corpus C --out DIR`.")
    try:
        meta = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); the index is damaged, rebuild it.") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: expected a JSON object; the index is damaged, rebuild it.")
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: index format {meta.get('format')!r} is not the format {FORMAT} that "
                          f"searchr1 {__version__} reads; rebuild the index with `searchr1 index` "
                          "(or use the searchr1 version that built it).")
    if meta.get("kind") not in KINDS:
        raise ConfigError(f"{path}: unknown index kind {meta.get('kind')!r}; rebuild the index.")
    return meta


def import_faiss_index(faiss_path: str | Path, corpus: str | Path, out_dir: str | Path,
                       config: DenseConfig) -> dict:
    """An index directory that serves an existing FAISS index over a JSONL corpus, both in place.

    Checks, before anything is written: the index is an inner-product Flat or HNSW index whose
    dimension is the encoder's; then, in one pass over the corpus, that it has exactly as many
    passages as the index has vectors (row i of the corpus is vector i). Returns ``index.json``.
    """
    faiss_file = Path(faiss_path).resolve()
    if not faiss_file.is_file():
        raise UsageError(f"--faiss {faiss_path}: no such file; pass the FAISS index file "
                         "(Search-R1's --index_path, e.g. e5_Flat.index).")
    header = read_faiss_header(faiss_file)
    dim = encoder_dim(config)
    if header["dim"] != dim:
        raise UsageError(f"{faiss_file}: the FAISS index holds {header['dim']}-dimensional vectors but the encoder "
                         f"{config.encoder} makes {dim}-dimensional ones; pass the encoder the index was built "
                         "with (--encoder, e.g. intfloat/e5-base-v2 for Search-R1's e5_Flat.index).")
    out = _prepare_out_dir(out_dir)
    (out / META_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    n, sha = scan_source_corpus(corpus, out)
    if n != header["ntotal"]:
        raise UsageError(f"{faiss_file} holds {header['ntotal']} vectors but {corpus} has {n} passages; "
                         "pass the corpus the index was built from (Search-R1's --corpus_path).")
    config = DenseConfig(**{**config.__dict__, "faiss": header["kind"], "index_path": str(faiss_file)})
    (out / "dense.json").write_text(json.dumps(config.__dict__, indent=2))
    meta = {
        "format": FORMAT,
        "kind": "dense",
        "num_passages": n,
        "corpus": {"path": str(Path(corpus).resolve()), "sha256": sha},
        "retriever": {"kind": "dense", **config.__dict__, "resolved_prefix": config.resolved_prefix(),
                      "dim": dim, "imported": True},
        "build_seconds": round(time.perf_counter() - t0, 3),
        "searchr1_version": __version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def load_retriever(index_dir: str | Path, options: LoadOptions | None = None) -> Retriever:
    """The retriever saved in ``index_dir`` (kind from ``index.json``).

    ``options``: memory-mapping (both kinds) and, for dense indexes, nprobe / efSearch / GPUs.
    """
    options = options or LoadOptions()
    meta = read_index_meta(index_dir)
    if meta["kind"] == "bm25":
        if (options.nprobe is not None or options.ef_search is not None or options.k_factor is not None or options.gpu
                or options.encoder_workers is not None or options.encoder_dtype is not None):
            raise UsageError(f"{index_dir} is a BM25 index: --nprobe, --ef-search, --k-factor, --faiss-gpu and "
                             "--encoder-workers/--encoder-dtype apply to dense indexes only; leave them out "
                             "(--mmap works for both).")
        return BM25Retriever.load(index_dir, mmap=options.mmap)
    if meta["kind"] == "qdrant":
        if options != LoadOptions():
            raise UsageError(f"{index_dir} is a Qdrant index: --mmap, --nprobe, --ef-search and --faiss-gpu apply "
                             "to FAISS/BM25 indexes; Qdrant's own settings live on its server.")
        return QdrantRetriever.load(index_dir)
    return DenseRetriever.load(index_dir, options=options)

