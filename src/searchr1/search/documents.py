"""Your documents as a corpus: a folder of ``.txt``, ``.md``, ``.html`` and ``.pdf`` files -> passages.

``build_corpus(src_dir, out)`` walks ``src_dir`` (sorted, recursively), extracts each file's text with a
maintained parser (pypdf for PDF, Beautiful Soup for HTML; text and Markdown are read as UTF-8), splits it
into passages of about ``words`` words that overlap by ``overlap`` words, and writes Search-R1 JSONL
(``{"id", "contents": '"Title"\\ntext'}``) that ``searchr1 index`` reads.

* **Title**: an HTML ``<title>`` (else its first ``<h1>``), a PDF's metadata title, a Markdown file's first
  ``#`` heading; otherwise the file name without its suffix.
* **Ids** are stable: ``<relative path>#<word offset>`` of the passage's first word, so an unchanged file keeps
  its ids across rebuilds.
* **Incremental**: ``<out>.state.json`` records each file's size and modification time; a rebuild re-reads only
  files that changed and copies the passages of unchanged ones from the previous output (files that are gone
  drop out).
* **Unreadable files** (a corrupt PDF, a binary file, text that is not UTF-8, a PDF with no extractable text,
  an unsupported suffix) are skipped and listed with the reason in the report, never silently.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from searchr1.search.base import Document
from searchr1.search.corpus import CorpusError, iter_corpus

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
STATE_SUFFIX = ".state.json"


class UnreadableDocument(ValueError):
    """A file that cannot be turned into text; the message says why."""


@dataclass
class BuildReport:
    passages: int = 0
    read: list[str] = field(default_factory=list)       # files parsed this time
    reused: list[str] = field(default_factory=list)     # unchanged files whose passages were copied
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, reason)
    removed: list[str] = field(default_factory=list)    # files in the previous build that are gone

    def summary(self) -> str:
        return (f"{self.passages} passages from {len(self.read) + len(self.reused)} files "
                f"({len(self.read)} read, {len(self.reused)} unchanged, {len(self.skipped)} skipped, "
                f"{len(self.removed)} removed)")


def split_passages(text: str, words: int = 100, overlap: int = 20) -> list[tuple[int, str]]:
    """(word offset, passage) windows of ``words`` words, each starting ``words - overlap`` words after the last;
    the last window ends with the text (no short tail passage when the text is longer than one window)."""
    if words < 10 or not 0 <= overlap < words:
        raise ValueError(f"need words >= 10 and 0 <= overlap < words (got words={words}, overlap={overlap})")
    tokens = text.split()
    if not tokens:
        return []
    step = words - overlap
    starts = list(range(0, max(1, len(tokens) - overlap), step))
    if len(tokens) > words:
        starts = [s for s in starts if s + words < len(tokens)] + [len(tokens) - words]
    return [(s, " ".join(tokens[s:s + words])) for s in dict.fromkeys(starts)]


def _decode_text(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise UnreadableDocument("binary file (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnreadableDocument(f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def _markdown(path: Path) -> tuple[str, str]:
    text = _decode_text(path.read_bytes())
    heading = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return (heading.group(1).strip() if heading else path.stem), text


def _plain(path: Path) -> tuple[str, str]:
    return path.stem, _decode_text(path.read_bytes())


def _html(path: Path) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode_text(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if not title and soup.find("h1"):
        title = soup.find("h1").get_text(" ", strip=True)
    body = soup.body or soup
    return title or path.stem, body.get_text(" ", strip=True)


def _pdf(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise UnreadableDocument(f"unreadable PDF ({type(e).__name__}: {e})") from None
    text = "\n".join(pages)
    if not text.strip():
        raise UnreadableDocument("PDF has no extractable text (scanned images need OCR first)")
    return (str(meta_title).strip() or path.stem), text


PARSERS = {".txt": _plain, ".md": _markdown, ".markdown": _markdown, ".html": _html, ".htm": _html, ".pdf": _pdf}


def read_document(path: Path) -> tuple[str, str]:
    """(title, text) of one file; :class:`UnreadableDocument` when it has none to give."""
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        raise UnreadableDocument(f"unsupported file type {path.suffix or '(none)'!r}; "
                                 f"use one of {', '.join(SUFFIXES)}")
    return parser(path)


def _files(src: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(root) / name


def _previous(out: Path) -> tuple[dict, dict[str, list[Document]]]:
    """The last build's file state and its passages grouped by file (empty when there is none)."""
    state_path = Path(str(out) + STATE_SUFFIX)
    if not (out.is_file() and state_path.is_file()):
        return {}, {}
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))["files"]
        by_file: dict[str, list[Document]] = {}
        for doc in iter_corpus(out):
            by_file.setdefault(doc.id.rsplit("#", 1)[0], []).append(doc)
    except (json.JSONDecodeError, KeyError, CorpusError):
        return {}, {}   # a damaged previous build: rebuild everything
    return state, by_file


def build_corpus(src_dir: str | Path, out: str | Path, words: int = 100, overlap: int = 20) -> BuildReport:
    """Write the passages of every readable file under ``src_dir`` to ``out`` (JSONL); see the module docstring."""
    src, out = Path(src_dir), Path(out)
    if not src.is_dir():
        raise CorpusError(f"{src}: not a directory; pass the folder that holds your documents")
    split_passages("", words, overlap)   # validates words / overlap before any work
    old_state, old_docs = _previous(out)
    settings = {"words": words, "overlap": overlap}
    if old_state and json.loads(Path(str(out) + STATE_SUFFIX).read_text())["settings"] != settings:
        old_state, old_docs = {}, {}      # other passage settings: every file is split again
    report, state, docs = BuildReport(), {}, []
    for path in _files(src):
        rel = path.relative_to(src).as_posix()
        st = path.stat()
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if old_state.get(rel) == stamp and rel in old_docs:
            docs += old_docs[rel]
            report.reused.append(rel)
            state[rel] = stamp
            continue
        try:
            title, text = read_document(path)
        except (UnreadableDocument, OSError) as e:
            report.skipped.append((rel, str(e)))
            continue
        passages = split_passages(text, words, overlap)
        if not passages:
            report.skipped.append((rel, "no text"))
            continue
        docs += [Document(id=f"{rel}#{offset}", title=title, text=p) for offset, p in passages]
        report.read.append(rel)
        state[rel] = stamp
    report.removed = sorted(set(old_state) - set(state) - {r for r, _ in report.skipped})
    if not docs:
        raise CorpusError(f"{src}: no readable documents ({len(report.skipped)} skipped: "
                          + "; ".join(f"{f}: {why}" for f, why in report.skipped[:5]) + ")")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    Path(str(out) + STATE_SUFFIX).write_text(json.dumps({"settings": settings, "files": state}, indent=1))
    report.passages = len(docs)
    return report
