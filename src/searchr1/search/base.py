"""The one retrieval interface every component speaks.

A *retriever* (BM25, dense, an HTTP client, a cache) maps a batch of queries to
ranked hits: ``search(queries: list[str], topk: int) -> list[list[Hit]]``.
Ranking ties are broken by corpus position (lower index first) so results are
reproducible.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from searchr1.errors import ConfigError, SearchR1Error

TOKEN_ENV = "SEARCHR1_TOKEN"
"""Environment variable holding the server's bearer token (read by ``serve`` and the HTTP client)."""


@dataclass(frozen=True)
class Document:
    """One passage. ``contents`` is Search-R1's wire form: ``'"Title"\\ntext'``."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        return f'"{self.title}"\n{self.text}'

    def to_json(self) -> dict:
        """Search-R1 server document dict: ``{"id", "contents"}``."""
        return {"id": self.id, "contents": self.contents}


@dataclass(frozen=True)
class Hit:
    doc: Document
    score: float


class SearchError(SearchR1Error, RuntimeError):
    """A search that failed after retries (server down, timeout, bad reply).

    The rollout turns it into an observation the policy can read; it never crashes a run.
    """


class SearchAuthError(SearchR1Error):
    """The search server refused our credentials (HTTP 401/403).

    Deliberately not a :class:`SearchError`: a wrong or missing token is a setup mistake
    that retrying or showing the policy an observation cannot fix, so the rollout lets it
    stop the run with a message naming ``--token`` / ``SEARCHR1_TOKEN``.
    """


@runtime_checkable
class Retriever(Protocol):
    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """Ranked hits per query, best first; ``len(result) == len(queries)``."""
        ...


def config_from_json(cls, path: Path):
    """A config dataclass from an index's JSON file (``bm25.json``, ``dense.json``); an unknown
    key is an error listing the valid ones, never a TypeError."""
    try:
        raw = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); the index is damaged, rebuild it.") from None
    valid = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - valid) if isinstance(raw, dict) else None
    if unknown is None or unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} (valid: {sorted(valid)}); the index was written "
                          "by another searchr1 version or edited by hand — rebuild it.")
    return cls(**raw)


class Wrapper:
    """Base of retrievers that wrap another (``self.inner``: a cache, a reranker): the wrapped one's
    ``kind`` and ``url`` pass through, so logs and error messages name what really searches."""

    inner: Retriever

    @property
    def kind(self) -> str:
        return getattr(self.inner, "kind", type(self.inner).__name__)

    @property
    def url(self) -> str | None:
        return getattr(self.inner, "url", None)
