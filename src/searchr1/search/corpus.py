"""Corpus IO: stream passages from JSONL or parquet, write them back.

Accepted row shapes (JSONL, one object per line; parquet, one row per passage):

* Search-R1 / FlashRAG: ``{"id": ..., "contents": "\\"Title\\"\\ntext"}``
* Plain: ``{"id": ..., "title": ..., "text": ...}`` (``title`` may be missing or null → ``""``)

Title parsing from ``contents`` (:func:`parse_contents`): the title is the first line
with one pair of surrounding double quotes removed; the text is everything after the
first newline. A ``contents`` without a newline has no title: the whole string is
the text and the title is ``""`` (FlashRAG's wiki dumps always have the newline, and
a passage body must never be lost to the title field).

``id`` may be a string or an integer (stored as ``str``); a missing ``id`` is an
error, never silently replaced by the line number. Readers stream: memory stays
flat however large the file is (parquet is read one row-group batch at a time).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from searchr1.errors import SearchR1Error
from searchr1.search.base import Document

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


class CorpusError(SearchR1Error, ValueError):
    """A corpus file that cannot be read: names the file, the line/row and the fix."""


def parse_contents(contents: str) -> tuple[str, str]:
    """Split Search-R1's ``'"Title"\\ntext'`` into ``(title, text)``.

    No newline → ``("", contents)``. Only one pair of surrounding quotes is removed, so
    a title that itself starts and ends with quotes keeps its inner pair.
    """
    head, sep, text = contents.partition("\n")
    if not sep:
        return "", contents
    title = head[1:-1] if len(head) >= 2 and head[0] == '"' and head[-1] == '"' else head
    return title, text


def row_to_document(row: object, where: str) -> Document:
    """One decoded row → :class:`Document`. ``where`` (``"file:line"``) goes into errors."""
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: expected a JSON object per row, got {type(row).__name__}; "
                          'write one {"id", "contents"} or {"id", "title", "text"} object per line.')
    if "id" not in row or row["id"] is None:
        raise CorpusError(f"{where}: row has no 'id'; every passage needs a unique id "
                          "(add an 'id' field, e.g. the line number when you create the corpus).")
    doc_id = row["id"]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise CorpusError(f"{where}: 'id' must be a string or an integer, got {type(doc_id).__name__}.")
    if "contents" in row and row["contents"] is not None:
        contents = row["contents"]
        if not isinstance(contents, str):
            raise CorpusError(f"{where}: 'contents' must be a string, got {type(contents).__name__}.")
        title, text = parse_contents(contents)
        return Document(id=str(doc_id), title=title, text=text)
    if "text" in row and row["text"] is not None:
        text, title = row["text"], row.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise CorpusError(f"{where}: 'title' and 'text' must be strings.")
        return Document(id=str(doc_id), title=title, text=text)
    raise CorpusError(f"{where}: row has neither 'contents' nor 'text' (keys: {sorted(row)}); "
                      'use {"id", "contents": "\\"Title\\"\\ntext"} or {"id", "title", "text"}.')


def _open_bytes(path: Path):
    if path.name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return path.open("rb")


def decode_line(raw: bytes, where: str, error: type[Exception]) -> str:
    """One line of a UTF-8 file; a bad byte raises ``error`` naming ``where`` (file:line) and the column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text ({e.reason}: byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    "re-encode the file as UTF-8.") from None


def _iter_jsonl(path: Path) -> Iterator[Document]:
    with _open_bytes(path) as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            line = decode_line(raw, where, CorpusError)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno}); "
                                  "each line must be one complete JSON object.") from e
            yield row_to_document(row, where)


def _iter_parquet(path: Path, batch_size: int) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise CorpusError(f"{path}: not a readable parquet file ({e}).") from e
    names = set(pf.schema_arrow.names)
    if "id" not in names or not ({"contents", "text"} & names):
        raise CorpusError(f"{path}: parquet columns {sorted(names)} lack 'id' and 'contents' "
                          "(or 'id', 'title', 'text'); rename the columns.")
    columns = [c for c in ("id", "contents", "title", "text") if c in names]
    row_no = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        for row in batch.to_pylist():
            row_no += 1
            yield row_to_document(row, f"{path}:row {row_no}")


def iter_corpus(path: str | Path, batch_size: int = 4096) -> Iterator[Document]:
    """Stream passages from a JSONL (optionally .gz) or parquet corpus file."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file not found; pass a .jsonl or .parquet file "
                          "(e.g. build one with `searchr1 corpus wiki --out corpus.jsonl`).")
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return _iter_parquet(path, batch_size)
    if name.endswith(JSONL_SUFFIXES):
        return _iter_jsonl(path)
    raise CorpusError(f"{path}: unknown corpus format; use one of "
                      f"{', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)}.")


def load_corpus(path: str | Path) -> list[Document]:
    """All passages of a corpus file, in file order."""
    return list(iter_corpus(path))


def write_corpus_jsonl(docs: Iterable[Document], path: str | Path) -> int:
    """Write Search-R1 JSONL (``{"id", "contents"}``); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc.to_json(), ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def write_corpus_parquet(docs: Iterable[Document], path: str | Path, row_group_size: int = 8192) -> int:
    """Write ``{"id", "contents"}`` parquet in row groups; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("contents", pa.string())])
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        buf: list[Document] = []
        for doc in docs:
            buf.append(doc)
            if len(buf) >= row_group_size:
                writer.write_table(_to_table(buf, schema))
                n += len(buf)
                buf = []
        if buf or n == 0:
            writer.write_table(_to_table(buf, schema))
            n += len(buf)
    return n


def _to_table(docs: list[Document], schema):
    import pyarrow as pa

    return pa.table({"id": [d.id for d in docs], "contents": [d.contents for d in docs]}, schema=schema)
