import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from searchr1.search.server import BackgroundServer, ServerConfig, create_app

GOLDEN = Path(__file__).parent / "golden"


def _same_structure(got, want, path="$"):
    """Equal JSON trees: same keys, same types, equal values (floats to 1e-5)."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            _same_structure(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _same_structure(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-5), path
    else:
        assert got == want, path


@pytest.mark.parametrize("name", ["retrieve_scores", "retrieve_no_scores"])
def test_golden_schema(bm25_server, name):
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    resp = httpx.post(bm25_server.url + "/retrieve", json=golden["request"])
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    _same_structure(resp.json(), golden["response"])


def test_topk_null_and_missing_use_default(bm25_server):
    for body in ({"queries": ["capital city paris"], "topk": None}, {"queries": ["capital city paris"]}):
        result = httpx.post(bm25_server.url + "/retrieve", json=body).json()["result"]
        assert len(result[0]) == 3 and set(result[0][0]) == {"id", "contents"}


def test_health(bm25_server, tiny_docs):
    h = httpx.get(bm25_server.url + "/health").json()
    assert h["status"] == "ok" and h["index_loaded"] is True
    assert h["retriever"] == "bm25" and h["corpus_size"] == len(tiny_docs)


@pytest.mark.parametrize("body, status, needle", [
    ({"queries": "capital"}, 422, "list of strings"),
    ({"topk": 3}, 422, "list of strings"),
    ({"queries": ["ok", 3]}, 422, "queries[1] is int"),
    ({"queries": [None]}, 422, "queries[0] is NoneType"),
    ({"queries": ["q"], "topk": -2}, 422, "1..5"),
    ({"queries": ["q"], "topk": 6}, 422, "max_topk"),
    ({"queries": ["q"], "topk": "3"}, 422, "integer or null"),
    ({"queries": ["q"], "topk": True}, 422, "integer or null"),
    ({"queries": ["q"] * 9}, 422, "max_queries=8"),
    ({"queries": ["x" * 201]}, 422, "max_query_chars=200"),
    ({"queries": ["q"], "return_scores": "yes"}, 422, "return_scores"),
    ([1, 2], 422, "JSON object"),
])
def test_bad_requests_get_4xx_naming_the_problem(bm25_server, body, status, needle):
    resp = httpx.post(bm25_server.url + "/retrieve", json=body)
    assert resp.status_code == status
    assert needle in resp.json()["detail"]


def test_malformed_json_and_oversized_bodies(bm25_server):
    url = bm25_server.url + "/retrieve"
    resp = httpx.post(url, content=b'{"queries": ["a"', headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "malformed JSON" in resp.json()["detail"]
    resp = httpx.post(url, content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    big = json.dumps({"queries": ["a" * 150] * 30}).encode()  # > 4096 bytes
    resp = httpx.post(url, content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "max_body_bytes=4096" in resp.json()["detail"]

    def chunks():  # no Content-Length: the size is checked while reading
        for _ in range(10):
            yield b" " * 1000

    resp = httpx.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    # the server is still healthy after all of that
    assert httpx.post(url, json={"queries": ["capital city"], "topk": 1}).status_code == 200


def test_bearer_token(tiny_bm25):
    with BackgroundServer(create_app(tiny_bm25, ServerConfig(token="s3cret"))) as srv:
        url = srv.url + "/retrieve"
        body = {"queries": ["capital city"], "topk": 1}
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["result"][0][0]["id"] == "d0"
        assert httpx.get(srv.url + "/health").status_code == 200


def test_retriever_failure_is_a_500_and_the_server_survives(fails_once):
    with BackgroundServer(create_app(fails_once)) as srv:
        bad = httpx.post(srv.url + "/retrieve", json={"queries": ["capital"]})
        assert bad.status_code == 500 and "disk on fire" in bad.json()["detail"]
        assert httpx.post(srv.url + "/retrieve", json={"queries": ["capital"]}).status_code == 200


def test_concurrent_clients_get_their_own_results(tiny_bm25, tiny_docs):
    """64 requests from 16 threads, different queries and topk: batched together, never mixed."""
    config = ServerConfig(batch_wait_ms=5.0)
    words = ["capital", "python", "mountain", "planet", "energy", "trojan", "dutch", "city"]
    requests = [([words[i % 8], words[(i * 3) % 8]], 1 + i % 4) for i in range(64)]
    with BackgroundServer(create_app(tiny_bm25, config)) as srv:
        with httpx.Client() as client:
            def call(req):
                queries, topk = req
                body = {"queries": queries, "topk": topk, "return_scores": True}
                return client.post(srv.url + "/retrieve", json=body).json()["result"]

            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(call, requests))
        batcher_stats = httpx.get(srv.url + "/health").json()
    for (queries, topk), got in zip(requests, results):
        want = tiny_bm25.search(queries, topk)
        assert [[h["document"]["id"] for h in row] for row in got] == [[h.doc.id for h in row] for row in want]
        assert [h["score"] for row in got for h in row] == pytest.approx([h.score for row in want for h in row])
    assert batcher_stats["queries_served"] == 128
    assert batcher_stats["batches"] < 64  # requests were really batched together


def test_server_config_validation():
    with pytest.raises(ValueError, match="default_topk"):
        ServerConfig(default_topk=10, max_topk=5)
    with pytest.raises(ValueError, match="token"):
        ServerConfig(token="")
