"""Issue 16, server part: malformed bodies, content types, global caps, timeouts, fairness, auth."""
import json
import logging
import socket
import threading
import time

import httpx
import pytest

from searchr1.search.base import SearchAuthError, SearchError
from searchr1.search.client import HTTPSearchClient
from searchr1.search.server import BackgroundServer, ServerConfig, create_app, serve

JSON = {"content-type": "application/json"}


def _post_raw(url: str, body: bytes, headers=JSON) -> httpx.Response:
    return httpx.post(url + "/retrieve", content=body, headers=headers, timeout=30)


def _stalled(url: str, declared: int, sent: bytes = b'{"queries": ["a') -> socket.socket:
    """A connection that sends its headers and part of a ``declared``-byte body, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"POST /retrieve HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return s


def _status_of(sock: socket.socket) -> int:
    return int(sock.recv(4096).split(b" ", 2)[1])


@pytest.fixture(scope="module")
def default_server(tiny_bm25):
    with BackgroundServer(create_app(tiny_bm25, ServerConfig())) as srv:
        yield srv


@pytest.mark.parametrize("body, needle", [
    (b'{"queries": ["a"], "topk": ' + b"1" * 5000 + b"}", "malformed JSON"),   # > 4300 digits: was a 500
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),                     # RecursionError: was a 500
])
def test_malformed_bodies_are_400(default_server, body, needle):
    resp = _post_raw(default_server.url, body)
    assert resp.status_code == 400 and needle in resp.json()["detail"]
    assert _post_raw(default_server.url, b'{"queries": ["capital"]}').status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_content_type_is_accepted(bm25_server, content_type):
    body = json.dumps({"queries": ["capital"], "topk": 1}).encode()
    headers = {"content-type": content_type} if content_type else {}
    resp = httpx.post(bm25_server.url + "/retrieve", content=body, headers=headers)
    assert resp.status_code == 415 and "application/json" in resp.json()["detail"]
    ok = _post_raw(bm25_server.url, body, {"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_docs_pages_are_off_by_default(tiny_bm25, bm25_server):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(bm25_server.url + path).status_code == 404
    with BackgroundServer(create_app(tiny_bm25, ServerConfig(docs=True, token="t"))) as srv:
        assert httpx.get(srv.url + "/docs").status_code == 200


def test_concurrent_request_cap_answers_503_with_retry_after(tiny_bm25):
    config = ServerConfig(max_concurrent=2, body_timeout_s=10)
    with BackgroundServer(create_app(tiny_bm25, config)) as srv:
        held = [_stalled(srv.url, 100) for _ in range(2)]
        time.sleep(0.3)
        resp = _post_raw(srv.url, json.dumps({"queries": ["capital"]}).encode())
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert "--max-concurrent" in resp.json()["detail"]
        for s in held:
            s.close()
        time.sleep(0.3)
        assert _post_raw(srv.url, json.dumps({"queries": ["capital"]}).encode()).status_code == 200


def test_inflight_bytes_cap_bounds_half_sent_bodies(tiny_bm25):
    """40 half-sent maximum-size bodies used to be held in full; now the bytes in flight are capped."""
    config = ServerConfig(max_body_bytes=4096, max_inflight_bytes=3 * 4096, body_timeout_s=10)
    with BackgroundServer(create_app(tiny_bm25, config)) as srv:
        held = [_stalled(srv.url, 4096) for _ in range(3)]
        time.sleep(0.3)
        resp = _post_raw(srv.url, json.dumps({"queries": ["capital"]}).encode())
        assert resp.status_code == 503 and "--max-inflight-bytes" in resp.json()["detail"]
        assert "retry-after" in resp.headers
        gate = srv._server.config.app.state.gate
        assert gate.bytes == 3 * 4096 and gate.requests == 3
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while gate.bytes and time.monotonic() < deadline:  # a dropped connection frees its reservation
            time.sleep(0.05)
        assert gate.bytes == 0 and gate.requests == 0


def test_stalled_body_times_out_with_408(tiny_bm25):
    with BackgroundServer(create_app(tiny_bm25, ServerConfig(body_timeout_s=0.5))) as srv:
        s = _stalled(srv.url, 1000)
        t0 = time.monotonic()
        assert _status_of(s) == 408 and time.monotonic() - t0 < 5
        s.close()
        assert srv._server.config.app.state.gate.bytes == 0


class SlowPerQuery:
    """A retriever whose cost is proportional to the number of queries (like a real one)."""

    kind = "slow"

    def __init__(self, inner, seconds_per_query):
        self.inner, self.spq = inner, seconds_per_query

    def search(self, queries, topk):
        time.sleep(self.spq * len(queries))
        return self.inner.search(queries, topk)

    def __len__(self):
        return len(self.inner)


def test_one_huge_request_does_not_starve_a_small_one(tiny_bm25):
    """4,096 queries cost ~4 s here; a 1-query request sent meanwhile waits for one short batch, not all."""
    config = ServerConfig(chunk_queries=8, batch_wait_ms=0)  # batches of <= 64 queries (~64 ms here)
    big = {"queries": [f"capital city {i}" for i in range(4096)], "topk": 3}
    with BackgroundServer(create_app(SlowPerQuery(tiny_bm25, 0.001), config)) as srv:
        out = {}

        def send_big():
            t = time.monotonic()
            out["big"] = httpx.post(srv.url + "/retrieve", json=big, timeout=60)
            out["big_s"] = time.monotonic() - t

        thread = threading.Thread(target=send_big)
        thread.start()
        time.sleep(0.5)  # the big request is being served
        t = time.monotonic()
        small = httpx.post(srv.url + "/retrieve", json={"queries": ["highest mountain"], "topk": 1}, timeout=60)
        small_s = time.monotonic() - t
        thread.join()
    assert small.status_code == 200 and small.json()["result"][0][0]["id"] == "d3"
    assert out["big"].status_code == 200 and len(out["big"].json()["result"]) == 4096
    assert out["big_s"] > 3.5 and small_s < 0.5, (out["big_s"], small_s)
    want = tiny_bm25.search(big["queries"][-3:], 3)
    assert [[h["id"] for h in r] for r in out["big"].json()["result"][-3:]] == [[h.doc.id for h in r] for r in want]


def test_client_raises_search_auth_error_on_401_and_403(tiny_bm25, monkeypatch):
    assert not issubclass(SearchAuthError, SearchError)  # the rollout must not turn it into an observation
    monkeypatch.delenv("SEARCHR1_TOKEN", raising=False)
    with BackgroundServer(create_app(tiny_bm25, ServerConfig(token="s3cret"))) as srv:
        with HTTPSearchClient(srv.url, retries=3, backoff=0.01) as client:
            with pytest.raises(SearchAuthError, match="--token.*SEARCHR1_TOKEN"):
                client.search(["capital"], 1)
            assert client.retried == 0
        monkeypatch.setenv("SEARCHR1_TOKEN", "s3cret")  # the client reads the same variable as the server
        with HTTPSearchClient(srv.url) as client:
            assert client.search(["capital city paris"], 1)[0][0].doc.id == "d0"

    def forbidden(request):
        return httpx.Response(403, json={"detail": "forbidden"})

    client = HTTPSearchClient("http://127.0.0.1:9", retries=2, backoff=0.01)
    client._client = httpx.Client(transport=httpx.MockTransport(forbidden))
    with pytest.raises(SearchAuthError, match="HTTP 403"):
        client.search(["q"], 1)


def test_empty_tokens_are_errors_and_exposed_binds_warn(tiny_bm25, tmp_path, monkeypatch, caplog):
    import uvicorn

    from searchr1.errors import UsageError
    from searchr1.search.index import save_index

    save_index(tiny_bm25, tmp_path)
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    with pytest.raises(UsageError, match="--token is empty"):
        serve(tmp_path, token="")
    monkeypatch.setenv("SEARCHR1_TOKEN", "")
    with pytest.raises(UsageError, match="SEARCHR1_TOKEN is set but empty"):
        serve(tmp_path)
    monkeypatch.delenv("SEARCHR1_TOKEN")
    with caplog.at_level(logging.WARNING, logger="searchr1.search.server"):
        serve(tmp_path, host="0.0.0.0")
        serve(tmp_path, host="127.0.0.1")
        serve(tmp_path, host="0.0.0.0", token="t")
    warnings = [r.getMessage() for r in caplog.records if "without a token" in r.getMessage()]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0]
    assert [kw["host"] for kw in started] == ["0.0.0.0", "127.0.0.1", "0.0.0.0"]
