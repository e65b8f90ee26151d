import socket
import threading

import pytest

from searchr1.search.base import Retriever, SearchError
from searchr1.search.client import CachedRetriever, HTTPSearchClient, InProcessClient
from searchr1.search.server import BackgroundServer, ServerConfig, create_app


class FailsThenRecovers:
    """A real retriever that raises on its first ``n`` calls (the server answers 500)."""

    kind = "flaky"

    def __init__(self, inner, n):
        self.inner, self.n, self.calls = inner, n, 0
        self.lock = threading.Lock()

    def search(self, queries, topk):
        with self.lock:
            self.calls += 1
            if self.calls <= self.n:
                raise RuntimeError(f"transient failure {self.calls}")
        return self.inner.search(queries, topk)

    def __len__(self):
        return len(self.inner)


def test_http_client_matches_in_process(bm25_server, tiny_bm25):
    queries = ["capital city paris", "python creator", "the of"]
    with HTTPSearchClient(bm25_server.url, retries=0) as client:
        assert isinstance(client, Retriever)
        got = client.search(queries, 3)
        assert client.health()["corpus_size"] == len(tiny_bm25)
    want = InProcessClient(tiny_bm25).search(queries, 3)
    assert [[h.doc for h in r] for r in got] == [[h.doc for h in r] for r in want]
    assert [h.score for r in got for h in r] == pytest.approx([h.score for r in want for h in r])


def test_http_client_splits_large_batches(bm25_server, tiny_bm25):
    queries = ["capital", "python", "planet"] * 7  # 21 queries > the server's max_queries=8
    with HTTPSearchClient(bm25_server.url, batch_size=8) as client:
        got = client.search(queries, 2)
    assert [[h.doc.id for h in r] for r in got] == [[h.doc.id for h in r] for r in tiny_bm25.search(queries, 2)]


def test_retries_until_the_server_recovers(tiny_bm25):
    flaky = FailsThenRecovers(tiny_bm25, n=2)
    with BackgroundServer(create_app(flaky, ServerConfig(batch_wait_ms=0))) as srv:
        with HTTPSearchClient(srv.url, retries=3, backoff=0.01) as client:
            hits = client.search(["capital city paris"], 1)
            assert hits[0][0].doc.title == "Paris"
            assert client.retried == 2 and flaky.calls == 3
        flaky.calls, flaky.n = 0, 5
        with HTTPSearchClient(srv.url, retries=2, backoff=0.01) as client:
            with pytest.raises(SearchError) as e:
                client.search(["capital"], 1)
            msg = str(e.value)
            assert srv.url in msg and "3 attempts" in msg and "transient failure 3" in msg
            assert flaky.calls == 3 and client.failures == 1


def test_client_errors_are_not_retried(bm25_server):
    with HTTPSearchClient(bm25_server.url, retries=3, backoff=0.01) as client:
        with pytest.raises(SearchError, match="HTTP 422.*max_topk"):
            client.search(["capital"], 50)
        assert client.retried == 0


def test_unreachable_server_gives_clear_error():
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with HTTPSearchClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.01, timeout=2) as client:
        with pytest.raises(SearchError, match=f"127.0.0.1:{port}/retrieve.*2 attempts.*ConnectError"):
            client.search(["q"], 1)


def test_in_process_client_validates_like_the_server(tiny_bm25):
    client = InProcessClient(tiny_bm25, max_topk=5)
    assert client.search([], 3) == []
    with pytest.raises(SearchError, match="1..5"):
        client.search(["q"], 6)
    with pytest.raises(SearchError, match="string"):
        client.search([3], 1)


def test_cache_counts_and_evicts(tiny_bm25):
    class Counting:
        def __init__(self):
            self.seen = []

        def search(self, queries, topk):
            self.seen.append(list(queries))
            return tiny_bm25.search(queries, topk)

    inner = Counting()
    cache = CachedRetriever(inner, maxsize=2)
    first = cache.search(["capital", "python", "capital"], 2)
    assert inner.seen == [["capital", "python"]]  # distinct misses, one call
    assert (cache.hits, cache.misses) == (0, 3)
    assert first[0] == first[2] == tiny_bm25.search(["capital"], 2)[0]
    cache.search(["capital"], 2)
    assert (cache.hits, cache.misses) == (1, 3) and len(inner.seen) == 1
    cache.search(["capital"], 1)  # topk is part of the key
    assert cache.misses == 4 and len(cache) == 2
    cache.search(["python"], 2)  # evicted (least recently used) → fetched again
    assert cache.misses == 5 and inner.seen[-1] == ["python"]
    with pytest.raises(ValueError, match="maxsize"):
        CachedRetriever(inner, maxsize=0)
