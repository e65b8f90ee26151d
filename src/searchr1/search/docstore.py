"""An on-disk passage store shared by every index kind.

Layout inside an index directory: ``docs.jsonl`` holds one ``[id, title, text]`` JSON
array per line (canonical form) and ``docs.offsets.npy`` the byte offset of every
line (``n + 1`` int64). Loading memory-maps the file, so opening a 21M-passage index
costs no RAM beyond the offsets; a passage is decoded only when it is returned.
The SHA-256 of ``docs.jsonl`` is the corpus checksum recorded in the index metadata.

An imported index (``searchr1 index import``) reads a Search-R1 JSONL corpus *in place*:
``docs.source.json`` names the file, the offsets point into it, and the checksum is
that of the canonical form, so it equals the checksum of a native index of the same corpus.

Passage ids must be unique (they are the document ids clients see): writers and the
import scan check it and raise :class:`~searchr1.search.corpus.CorpusError` naming the id.
"""
from __future__ import annotations

import hashlib
import json
import mmap
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from searchr1.search.base import Document
from searchr1.search.corpus import CorpusError, row_to_document

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"
SHA_FILE = "docs.sha256"
SOURCE_FILE = "docs.source.json"


def canonical_line(doc: Document) -> bytes:
    return json.dumps([doc.id, doc.title, doc.text], ensure_ascii=False).encode("utf-8") + b"\n"


def first_duplicate(id_hashes: np.ndarray, id_at) -> tuple[str, int, int] | None:
    """``(id, i, j)`` of the first repeated passage id, or None. ``id_hashes``: (N,) int64
    ``hash(id)`` per passage; ``id_at(i)`` reads passage ``i``'s id (to rule out hash collisions)."""
    order = np.argsort(id_hashes, kind="stable")
    ranked = id_hashes[order]
    same = np.flatnonzero(ranked[1:] == ranked[:-1])
    for s in same:  # equal hashes are rare; compare the real ids
        i, j = sorted((int(order[s]), int(order[s + 1])))
        if id_at(i) == id_at(j):
            return id_at(i), i, j
    return None


def duplicate_error(found: tuple[str, int, int], where: str) -> CorpusError:
    doc_id, i, j = found
    return CorpusError(f"{where}: passage id {doc_id!r} appears twice (passages {i + 1} and {j + 1}); "
                       "ids must be unique, since clients see them as document ids — renumber the corpus.")


class DocStoreWriter:
    """Append passages one at a time; :meth:`close` writes the offsets and returns the checksum."""

    def __init__(self, index_dir: str | Path):
        self.dir = Path(index_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._f = (self.dir / DOCS_FILE).open("wb")
        self._offsets = array("q", [0])  # 8 bytes per passage (a list of ints costs ~40)
        self._sha = hashlib.sha256()
        self._id_hashes = array("q")

    def add(self, doc: Document) -> None:
        line = canonical_line(doc)
        self._f.write(line)
        self._sha.update(line)
        self._offsets.append(self._offsets[-1] + len(line))
        self._id_hashes.append(hash(doc.id))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def abort(self) -> None:
        """Close the file after a failed build (the directory stays incomplete: no index.json)."""
        self._f.close()

    def close(self) -> str:
        """Finish the store; raises CorpusError if two passages share an id."""
        self._f.close()
        (self.dir / SOURCE_FILE).unlink(missing_ok=True)
        np.save(self.dir / OFFSETS_FILE, np.frombuffer(self._offsets, dtype=np.int64))
        sha = self._sha.hexdigest()
        (self.dir / SHA_FILE).write_text(sha + "\n")
        if len(self._id_hashes) > 1:
            store = DocStore(self.dir)
            found = first_duplicate(np.frombuffer(self._id_hashes, dtype=np.int64), lambda i: store[i].id)
            if found:
                raise duplicate_error(found, "corpus")
        return sha


def write_docstore(docs: Iterable[Document], index_dir: str | Path) -> str:
    """Write all ``docs`` as the passage store of ``index_dir``; returns the checksum."""
    writer = DocStoreWriter(index_dir)
    for doc in docs:
        writer.add(doc)
    return writer.close()


def tee_into_store(docs: Iterable[Document], writer: DocStoreWriter) -> Iterator[Document]:
    """Yield ``docs`` unchanged while appending each to ``writer`` (single streaming pass)."""
    for doc in docs:
        writer.add(doc)
        yield doc


def scan_source_corpus(corpus: str | Path, index_dir: str | Path) -> tuple[int, str]:
    """Reference a Search-R1 JSONL corpus in place from ``index_dir`` → (passages, checksum).

    One pass over the file: every row is parsed (errors name the line), ids are checked for
    duplicates, and the byte offset of every non-blank line is written to the offsets file.
    """
    path = Path(corpus).resolve()
    if not path.is_file():
        raise CorpusError(f"{corpus}: corpus file not found; pass Search-R1's wiki-18.jsonl (or another "
                          '{"id", "contents"} JSONL file).')
    if not path.name.lower().endswith((".jsonl", ".json")):
        raise CorpusError(f"{corpus}: an imported index reads its corpus in place, which needs an "
                          "uncompressed .jsonl file (decompress .gz first; convert parquet with "
                          "`searchr1 index --corpus` instead).")
    out = Path(index_dir)
    offsets, id_hashes, sha, pos = array("q"), array("q"), hashlib.sha256(), 0
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise CorpusError(f"{path}:{lineno}: invalid JSON ({e}); each line must be one "
                                      "complete JSON object.") from None
                doc = row_to_document(row, f"{path}:{lineno}")
                offsets.append(pos)
                id_hashes.append(hash(doc.id))
                sha.update(canonical_line(doc))
            pos += len(line)
    if not offsets:
        raise CorpusError(f"{path}: the corpus has no passages; check the file.")
    offsets.append(pos)
    (out / DOCS_FILE).unlink(missing_ok=True)
    np.save(out / OFFSETS_FILE, np.frombuffer(offsets, dtype=np.int64))
    (out / SOURCE_FILE).write_text(json.dumps({"path": str(path), "size": pos, "format": "jsonl"}, indent=2))
    digest = sha.hexdigest()
    (out / SHA_FILE).write_text(digest + "\n")
    store = DocStore(out)
    found = first_duplicate(np.frombuffer(id_hashes, dtype=np.int64), lambda i: store[i].id)
    if found:
        raise duplicate_error(found, str(path))
    return len(offsets) - 1, digest


class DocStore:
    """Read-only, memory-mapped passages by corpus index: ``store[i] -> Document``.

    Reads the index's own ``docs.jsonl``, or the corpus named in ``docs.source.json``.
    """

    def __init__(self, index_dir: str | Path):
        self.dir = Path(index_dir)
        self.source: Path | None = None
        docs_path, offsets_path = self.dir / DOCS_FILE, self.dir / OFFSETS_FILE
        if (self.dir / SOURCE_FILE).is_file():
            self.source = docs_path = Path(json.loads((self.dir / SOURCE_FILE).read_text())["path"])
            if not docs_path.is_file():
                raise FileNotFoundError(f"{self.dir}: its corpus {docs_path} is gone; restore it or import "
                                        "the index again with `searchr1 index import`.")
        if not docs_path.is_file() or not offsets_path.is_file():
            raise FileNotFoundError(f"{self.dir}: no passage store ({DOCS_FILE}, {OFFSETS_FILE}); "
                                    "rebuild the index with `searchr1 index --corpus C --out DIR`.")
        self.offsets = np.load(offsets_path)
        self._file = docs_path.open("rb")
        size = docs_path.stat().st_size
        if size != int(self.offsets[-1]):
            raise ValueError(f"{docs_path}: size {size} does not match its offsets ({int(self.offsets[-1])}); "
                             "the corpus changed or the index is half-written; rebuild or re-import it.")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def sha256(self) -> str:
        """SHA-256 of ``docs.jsonl`` (recorded when the store was written)."""
        path = self.dir / SHA_FILE
        if path.is_file():
            return path.read_text().strip()
        h = hashlib.sha256()
        with (self.dir / DOCS_FILE).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def __getitem__(self, i: int) -> Document:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"passage index {i} out of range for a corpus of {len(self)}")
        raw = self._mm[self.offsets[i]:self.offsets[i + 1]]
        if self.source is not None:
            return row_to_document(json.loads(raw), f"{self.source}: passage {i + 1}")
        doc_id, title, text = json.loads(raw)
        return Document(id=doc_id, title=title, text=text)

    def __iter__(self) -> Iterator[Document]:
        return (self[i] for i in range(len(self)))
