"""QA examples: the unit every loader produces and every trainer/evaluator consumes.

This module also holds the FlashRAG JSONL format, one example per line::

    {"id": "test_0", "question": "who got the first nobel prize in physics?",
     "golden_answers": ["Wilhelm Conrad Röntgen"], "metadata": {...}}

Reading: ``id`` is optional (``"{stem}_{row}"`` when missing; numbers become
strings), ``question`` must be a non-empty string, ``golden_answers`` a non-empty
list of strings. ``metadata`` (a dict) is kept; any other top-level key is kept in
``metadata`` too. Text is read and written as UTF-8 and never escaped
(``ensure_ascii=False``), so unicode round-trips unchanged. Bad rows raise
``DataError`` naming the file, the 1-based row (line) number and the field.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from searchr1.errors import SearchR1Error
from searchr1.search.corpus import decode_line


@dataclass
class QAExample:
    id: str
    question: str
    golden_answers: list[str]
    metadata: dict = field(default_factory=dict)  # e.g. {"type": "two-hop", "evidence_ids": [...], "data_source": "nq"}


class DataError(SearchR1Error, ValueError):
    """A data file (or a row in it) that cannot be used; the message names file, row, field and fix."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A named data set whose file is not where it should be; the message says where to put it."""


FLASHRAG_KEYS = ("id", "question", "golden_answers", "metadata")


def _where(source: str, row: int | None) -> str:
    return f"{source}: row {row}" if row is not None else source


def check_question(value: Any, source: str, row: int | None) -> str:
    if not isinstance(value, str):
        raise DataError(f"{_where(source, row)}: field 'question' must be a string, got "
                        f"{type(value).__name__} {value!r:.60}; fix or drop the row.")
    if not value.strip():
        raise DataError(f"{_where(source, row)}: field 'question' is empty; fix or drop the row.")
    return value


def check_answers(value: Any, source: str, row: int | None, field_name: str = "golden_answers") -> list[str]:
    """A non-empty list of strings (tuples and numpy arrays from parquet are accepted)."""
    if isinstance(value, str) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise DataError(f"{_where(source, row)}: field '{field_name}' must be a list of strings, got "
                        f"{type(value).__name__} {value!r:.60}; wrap a single answer as [\"...\"].")
    answers = list(value)
    if not answers:
        raise DataError(f"{_where(source, row)}: field '{field_name}' is empty; every example needs at least "
                        "one gold answer — fix or drop the row.")
    for i, a in enumerate(answers):
        if not isinstance(a, str):
            raise DataError(f"{_where(source, row)}: field '{field_name}'[{i}] must be a string, got "
                            f"{type(a).__name__} {a!r:.60}; write it as a string.")
    return answers


def check_id(value: Any, default: str, source: str, row: int | None) -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{_where(source, row)}: field 'id' must be a string or an integer, got "
                        f"{type(value).__name__}; fix the row.")
    return str(value)


def example_from_flashrag(row: Any, source: str, index: int, default_id: str) -> QAExample:
    """One FlashRAG row (a dict) -> QAExample; ``index`` is the 1-based row for messages."""
    if not isinstance(row, Mapping):
        raise DataError(f"{_where(source, index)}: expected a JSON object, got {type(row).__name__}; "
                        "each line must be {\"id\", \"question\", \"golden_answers\": [...]}.")
    if "question" not in row:
        raise DataError(f"{_where(source, index)}: field 'question' is missing; FlashRAG rows need "
                        "\"question\" and \"golden_answers\".")
    if "golden_answers" not in row:
        raise DataError(f"{_where(source, index)}: field 'golden_answers' is missing; FlashRAG rows need "
                        "\"question\" and \"golden_answers\".")
    metadata = row.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise DataError(f"{_where(source, index)}: field 'metadata' must be an object, got "
                        f"{type(metadata).__name__}; fix the row.")
    metadata = dict(metadata)
    metadata.update({k: v for k, v in row.items() if k not in FLASHRAG_KEYS})
    return QAExample(
        id=check_id(row.get("id"), default_id, source, index),
        question=check_question(row["question"], source, index),
        golden_answers=check_answers(row["golden_answers"], source, index),
        metadata=metadata,
    )


def iter_flashrag_jsonl(path: str | Path) -> Iterator[QAExample]:
    """Examples of a FlashRAG JSONL file, in order (blank lines skipped)."""
    path = Path(path)
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            line = decode_line(raw, f"{path}: row {line_no}", DataError)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: row {line_no}: not valid JSON ({e.msg} at column {e.colno}); "
                                "each line must be one JSON object.") from None
            yield example_from_flashrag(row, str(path), line_no, f"{path.stem}_{line_no - 1}")


def _iter_json_array(path: Path) -> Iterator[QAExample]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-encode the file as UTF-8.") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); write one object per line "
                        "(FlashRAG JSONL) or one JSON array of objects.") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: a .json file must hold a JSON array of examples, got {type(rows).__name__}.")
    for i, row in enumerate(rows, start=1):
        yield example_from_flashrag(row, str(path), i, f"{path.stem}_{i - 1}")


def read_flashrag_jsonl(path: str | Path, limit: int | None = None) -> list[QAExample]:
    """The first ``limit`` (all when None) examples of a FlashRAG JSONL file.

    A ``.json`` file that starts with ``[`` is read as one JSON array of the same
    objects (rows are then numbered by position in the array).
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(4096).decode("utf-8", errors="replace").lstrip()   # only to tell JSON arrays from JSONL
    rows = _iter_json_array(path) if path.suffix == ".json" and head.startswith("[") else iter_flashrag_jsonl(path)
    out = []
    for ex in rows:
        if limit is not None and len(out) >= limit:
            break
        out.append(ex)
    return out


def metadata_json(example: QAExample) -> str:
    """The example's metadata as a JSON string; DataError when it holds values JSON cannot store."""
    try:
        return json.dumps(example.metadata, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise DataError(f"example {example.id!r}: metadata cannot be written as JSON ({e}); "
                        "keep metadata to strings, numbers, lists and dicts.") from None


def to_flashrag_row(example: QAExample) -> dict:
    return {"id": example.id, "question": example.question,
            "golden_answers": list(example.golden_answers), "metadata": dict(example.metadata)}


def write_flashrag_jsonl(examples: Iterable[QAExample], path: str | Path) -> int:
    """Write examples as FlashRAG JSONL (UTF-8, unescaped); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            metadata_json(ex)  # clear error for values JSON cannot store
            f.write(json.dumps(to_flashrag_row(ex), ensure_ascii=False) + "\n")
            n += 1
    return n
