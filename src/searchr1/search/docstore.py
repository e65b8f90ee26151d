"""An on-disk passage store shared by every index kind.

Layout inside an index directory: ``docs.jsonl`` holds one ``[id, title, text]`` JSON
array per line (canonical form) and ``docs.offsets.npy`` the byte offset of every
line (``n + 1`` int64). Loading memory-maps the file, so opening a 21M-passage index
costs no RAM beyond the offsets; a passage is decoded only when it is returned.
The SHA-256 of ``docs.jsonl`` is the corpus checksum recorded in the index metadata.
"""
from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from searchr1.search.base import Document

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"
SHA_FILE = "docs.sha256"


class DocStoreWriter:
    """Append passages one at a time; :meth:`close` writes the offsets and returns the checksum."""

    def __init__(self, index_dir: str | Path):
        self.dir = Path(index_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._f = (self.dir / DOCS_FILE).open("wb")
        self._offsets = [0]
        self._sha = hashlib.sha256()

    def add(self, doc: Document) -> None:
        line = json.dumps([doc.id, doc.title, doc.text], ensure_ascii=False).encode("utf-8") + b"\n"
        self._f.write(line)
        self._sha.update(line)
        self._offsets.append(self._offsets[-1] + len(line))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def close(self) -> str:
        self._f.close()
        np.save(self.dir / OFFSETS_FILE, np.asarray(self._offsets, dtype=np.int64))
        sha = self._sha.hexdigest()
        (self.dir / SHA_FILE).write_text(sha + "\n")
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


class DocStore:
    """Read-only, memory-mapped passages by corpus index: ``store[i] -> Document``."""

    def __init__(self, index_dir: str | Path):
        self.dir = Path(index_dir)
        docs_path, offsets_path = self.dir / DOCS_FILE, self.dir / OFFSETS_FILE
        if not docs_path.is_file() or not offsets_path.is_file():
            raise FileNotFoundError(f"{self.dir}: no passage store ({DOCS_FILE}, {OFFSETS_FILE}); "
                                    "rebuild the index with `searchr1 index --corpus C --out DIR`.")
        self.offsets = np.load(offsets_path)
        self._file = docs_path.open("rb")
        size = docs_path.stat().st_size
        if size != int(self.offsets[-1]):
            raise ValueError(f"{docs_path}: size {size} does not match its offsets ({int(self.offsets[-1])}); "
                             "the index is corrupt or half-written, rebuild it.")
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
        doc_id, title, text = json.loads(self._mm[self.offsets[i]:self.offsets[i + 1]])
        return Document(id=doc_id, title=title, text=text)

    def __iter__(self) -> Iterator[Document]:
        return (self[i] for i in range(len(self)))
