"""The one retrieval interface every component speaks.

A *retriever* (BM25, dense, an HTTP client, a cache) maps a batch of queries to
ranked hits: ``search(queries: list[str], topk: int) -> list[list[Hit]]``.
Ranking ties are broken by corpus position (lower index first) so results are
reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from searchr1.errors import SearchR1Error


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
    """The retrieval server refused our credentials (HTTP 401/403).

    Not a :class:`SearchError`: a wrong or missing token fails every search, so it stops the
    run with a message instead of becoming a failed-search observation.
    """


@runtime_checkable
class Retriever(Protocol):
    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """Ranked hits per query, best first; ``len(result) == len(queries)``."""
        ...
