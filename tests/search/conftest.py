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


class FakeWebProvider:
    """A web search API on loopback answering in one provider's JSON shape (no real network).

    ``script`` holds what the next requests get, one entry each, then normal answers:
    ``("status", code, headers)``, ``("malformed",)`` (200 with a broken body), ``("sleep", s)``
    (answer after ``s`` seconds, to trip a client timeout); a query in ``fail_queries`` always gets HTTP 500.
    ``requests`` logs (path, params, headers, json).
    Each query has 10 results: title ``"<q> result i"``, snippet ``"About <b>q</b> number i"``.
    """

    KEY = "test-key"

    def __init__(self, shape: str):
        import http.server
        import json
        import threading
        import time
        from urllib.parse import parse_qs, urlparse

        self.shape, self.script, self.requests, self.fail_queries = shape, [], [], set()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _answer(self, body: dict | None):
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((url.path, params, headers, body))
                action = fake.script.pop(0) if fake.script else ("ok",)
                if action[0] == "sleep":
                    time.sleep(action[1])
                if action[0] == "status":
                    return self._send(action[1], b'{"error": "scripted"}', action[2] if len(action) > 2 else {})
                if action[0] == "malformed":
                    return self._send(200, b'{"organic": [ {"title": "cut off')
                if not fake.authorised(params, headers):
                    return self._send(401, b'{"error": "Invalid API key"}')
                q = (body or {}).get("q") or params.get("q", "")
                if q in fake.fail_queries:
                    return self._send(500, b'{"error": "this query always fails"}')
                n = int((body or {}).get("num") or params.get("num") or params.get("count") or 10)
                self._send(200, json.dumps(fake.reply(q, n)).encode())

            def _send(self, code, data: bytes, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer(None)

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                self._answer(json.loads(self.rfile.read(n)))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def authorised(self, params: dict, headers: dict) -> bool:
        given = {"serper": headers.get("x-api-key"), "serpapi": params.get("api_key"),
                 "brave": headers.get("x-subscription-token"), "searxng": self.KEY}[self.shape]
        return given == self.KEY

    def results(self, q: str, n: int) -> list[tuple[str, str, str]]:
        slug = "-".join(q.lower().split())
        return [(f"{q} result {i}", f"About <b>{q}</b> number {i} &amp; more", f"https://example.org/{slug}/{i}")
                for i in range(min(n, 10))]

    def reply(self, q: str, n: int) -> dict:
        rows = self.results(q, n if self.shape != "searxng" else 10)  # SearxNG has no count parameter
        if self.shape == "serper":
            return {"searchParameters": {"q": q}, "organic": [
                {"title": t, "link": u, "snippet": s, "position": i + 1} for i, (t, s, u) in enumerate(rows)]}
        if self.shape == "serpapi":
            return {"search_metadata": {"status": "Success"}, "organic_results": [
                {"position": i + 1, "title": t, "link": u, "snippet": s} for i, (t, s, u) in enumerate(rows)]}
        if self.shape == "brave":
            return {"type": "search", "query": {"original": q}, "web": {"type": "search", "results": [
                {"title": t, "url": u, "description": s} for t, s, u in rows]}}
        return {"query": q, "number_of_results": len(rows), "results": [
            {"title": t, "url": u, "content": s, "engine": "fake", "score": 1.0} for t, s, u in rows]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_web():
    """``fake_web("serper")`` starts a :class:`FakeWebProvider`; all are stopped after the test."""
    started = []

    def start(shape: str) -> FakeWebProvider:
        started.append(FakeWebProvider(shape))
        return started[-1]

    yield start
    for f in started:
        f.close()
