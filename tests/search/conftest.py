"""Shared, session-scoped search fixtures: a tiny corpus, its BM25 index, MiniLM, a live server."""
from __future__ import annotations

import pytest

from searchr1.search.base import Document

TINY = [
    ("Paris", "Paris is the capital and most populous city of France."),
    ("Berlin", "Berlin is the capital and largest city of Germany by both area and population."),
    ("Python (programming language)", "Python is a high-level programming language created by Guido van Rossum."),
    ("Mount Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("Photosynthesis", "Photosynthesis is the process plants use to convert light energy into chemical energy."),
    ("Jupiter", "Jupiter is the fifth planet from the Sun and the largest in the Solar System."),
    ("Paris (mythology)", "Paris, son of Priam, abducted Helen and caused the Trojan War."),
    ("Guido van Rossum", "Guido van Rossum is a Dutch programmer, the creator of the Python language."),
]


@pytest.fixture(scope="session")
def tiny_docs() -> list[Document]:
    return [Document(id=f"d{i}", title=t, text=x) for i, (t, x) in enumerate(TINY)]


@pytest.fixture(scope="session")
def tiny_bm25(tiny_docs):
    from searchr1.search.bm25 import BM25Retriever

    return BM25Retriever.build(tiny_docs)


@pytest.fixture
def fails_once(tiny_bm25):
    """A retriever whose first search raises RuntimeError("disk on fire"), then answers as ``tiny_bm25``."""
    class FailsOnce:
        kind = "flaky"

        def __init__(self):
            self.calls = 0

        def search(self, queries, topk):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("disk on fire")
            return tiny_bm25.search(queries, topk)

        def __len__(self):
            return len(tiny_bm25)

    return FailsOnce()


@pytest.fixture(scope="session")
def minilm():
    from searchr1.search.dense import DenseConfig, Encoder

    return Encoder(DenseConfig())


@pytest.fixture(scope="session")
def bm25_server(tiny_bm25):
    """A live server over the tiny BM25 index with small limits (so limits are cheap to hit)."""
    from searchr1.search.server import BackgroundServer, ServerConfig, create_app

    config = ServerConfig(max_topk=5, max_queries=8, max_query_chars=200, max_body_bytes=4096)
    with BackgroundServer(create_app(tiny_bm25, config)) as srv:
        yield srv
