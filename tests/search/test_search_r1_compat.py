"""Search-R1's own client against ``searchr1 serve`` with its default limits.

The request bodies are the ones Search-R1 sends: ``LLMGenerationManager._batch_search``
posts ``{"queries": [...], "topk": config.topk, "return_scores": true}`` with
``requests.post(url, json=payload)`` on every turn (also with no query that turn), and
``retrieval_request.py`` posts two queries with ``topk`` 5. Its response handling is
rewritten here from its documented behaviour: ``resp.json()["result"]``, then for each
query ``_passages2string``: per hit, ``contents = hit["document"]["contents"]``, the title
is the first line (quotes kept), the text the other lines joined by newlines, rendered
``"Doc {i}(Title: {title}) {text}\\n"``.
"""
import json

import httpx
import pytest

from searchr1.search.server import BackgroundServer, ServerConfig, create_app

GRPO_BATCH = 2560  # Search-R1's GRPO scripts: train batch 512 × 5 samples


def post_like_requests(url: str, payload: dict) -> httpx.Response:
    """The bytes and header ``requests.post(url, json=payload)`` sends."""
    return httpx.post(url, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json"},
                      timeout=60)


def passages2string(retrieval_result: list) -> str:
    out = ""
    for idx, doc_item in enumerate(retrieval_result):
        content = doc_item["document"]["contents"]
        lines = content.split("\n")
        out += f"Doc {idx + 1}(Title: {lines[0]}) {chr(10).join(lines[1:])}\n"
    return out


def batch_search(url: str, queries: list[str], topk) -> list[str]:
    """Search-R1's batch_search: one POST, then ``["result"]`` and one string per query."""
    results = post_like_requests(url, {"queries": queries, "topk": topk, "return_scores": True}).json()["result"]
    return [passages2string(r) for r in results]


def expected_strings(retriever, queries: list[str], topk: int) -> list[str]:
    return ["".join(f'Doc {i + 1}(Title: "{h.doc.title}") {h.doc.text}\n' for i, h in enumerate(hits))
            for hits in retriever.search(queries, topk)]


@pytest.fixture(scope="module")
def default_server(tiny_bm25):
    """The server with its default limits, as `searchr1 serve` starts it."""
    with BackgroundServer(create_app(tiny_bm25, ServerConfig())) as srv:
        yield srv


def test_empty_query_list_is_an_empty_result(default_server):
    resp = post_like_requests(default_server.url + "/retrieve", {"queries": [], "topk": 3, "return_scores": True})
    assert resp.status_code == 200 and resp.json() == {"result": []}
    assert batch_search(default_server.url + "/retrieve", [], 3) == []


@pytest.mark.parametrize("topk, used", [(0, 3), (None, 3), (3, 3), (5, 5)])
def test_topk_values_search_r1_sends(default_server, tiny_bm25, topk, used):
    queries = ["paris berlin python everest photosynthesis jupiter", "who created python", "highest mountain"]
    got = batch_search(default_server.url + "/retrieve", queries, topk)
    assert got == expected_strings(tiny_bm25, queries, used)
    assert got[0].count("(Title: ") == used  # the first query matches more than 5 passages


def test_grpo_sized_batch_is_accepted_by_default(default_server, tiny_bm25):
    words = ["capital", "python", "mountain", "planet", "energy", "trojan", "dutch", "city", "france", "sun"]
    queries = [f"{words[i % 10]} {words[(i * 7) % 10]} {i}" for i in range(GRPO_BATCH)]
    got = batch_search(default_server.url + "/retrieve", queries, 3)
    assert len(got) == GRPO_BATCH
    assert got == expected_strings(tiny_bm25, queries, 3)


def test_retrieval_request_example(default_server, tiny_bm25):
    """retrieval_request.py: two queries, topk 5, scores, raise_for_status, print the JSON."""
    payload = {"queries": ["What is the capital of France?", "Explain neural networks."], "topk": 5,
               "return_scores": True}
    resp = post_like_requests(default_server.url + "/retrieve", payload)
    resp.raise_for_status()
    result = resp.json()["result"]
    want = tiny_bm25.search(payload["queries"], 5)
    assert [[h["document"]["id"] for h in row] for row in result] == [[h.doc.id for h in row] for row in want]
    assert all(set(h) == {"document", "score"} and isinstance(h["score"], float) for row in result for h in row)


def test_return_scores_false_gives_bare_documents(default_server, tiny_bm25):
    payload = {"queries": ["capital city of France"], "topk": 3, "return_scores": False}
    result = post_like_requests(default_server.url + "/retrieve", payload).json()["result"]
    want = tiny_bm25.search(payload["queries"], 3)[0]
    assert result == [[{"id": h.doc.id, "contents": f'"{h.doc.title}"\n{h.doc.text}'} for h in want]]
    # the scored form wraps the same documents
    scored = post_like_requests(default_server.url + "/retrieve", {**payload, "return_scores": True}).json()
    assert [h["document"] for h in scored["result"][0]] == result[0]


def test_limits_name_the_flag(tiny_bm25):
    with BackgroundServer(create_app(tiny_bm25, ServerConfig(max_queries=16))) as srv:
        resp = post_like_requests(srv.url + "/retrieve", {"queries": ["q"] * 17, "topk": 3})
    assert resp.status_code == 422 and "--max-queries" in resp.json()["detail"]
    assert ServerConfig().max_queries >= 4096
