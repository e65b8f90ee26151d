"""Web search backends against fake providers on loopback: shapes, keys, retries, rate limits, serve."""
import time

import pytest

from searchr1.cli import main
from searchr1.errors import ConfigError
from searchr1.search.base import Retriever, SearchAuthError, SearchError
from searchr1.search.client import HTTPSearchClient
from searchr1.search.server import BackgroundServer, ServerConfig, build_backend, create_app
from searchr1.search.web import PROVIDERS, TokenBucket, WebConfig, WebSearchRetriever, parse_retry_after

KEY_ENVS = {"SERPER_API_KEY", "SERPAPI_API_KEY", "BRAVE_API_KEY"}


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    """Every provider's key set to the fake's; no base-URL variables leak in from the environment."""
    for env in KEY_ENVS:
        monkeypatch.setenv(env, "test-key")
    for p in PROVIDERS.values():
        monkeypatch.delenv(p.base_env, raising=False)


def web(fake, **kw) -> WebSearchRetriever:
    return WebSearchRetriever(WebConfig(provider=fake.shape, base_url=fake.url, qps=1000, backoff_s=0.01, **kw))


@pytest.mark.parametrize("shape", sorted(PROVIDERS))
def test_each_provider_maps_results_to_passages(fake_web, shape):
    fake = fake_web(shape)
    with web(fake) as r:
        assert isinstance(r, Retriever) and r.kind == f"web:{shape}"
        got = r.search(["capital of france", "python creator", "tallest mountain"], 3)
    assert len(got) == 3
    for q, hits in zip(["capital of france", "python creator", "tallest mountain"], got):
        want = fake.results(q, 3)
        assert [h.doc.title for h in hits] == [t for t, _, _ in want]
        assert [h.doc.id for h in hits] == [u for _, _, u in want]          # the URL is the passage id
        assert hits[0].doc.text == f"About {q} number 0 & more"             # tags stripped, entities unescaped
        assert [h.score for h in hits] == [1.0, 0.5, 1 / 3]
        assert hits[0].doc.contents == f'"{q} result 0"\nAbout {q} number 0 & more'
    path, params, headers, body = fake.requests[0]
    if shape == "serper":
        assert headers["x-api-key"] == "test-key" and body["num"] == 3 and path == "/"
    elif shape == "serpapi":
        assert params["api_key"] == "test-key" and params["engine"] == "google" and params["num"] == "3"
    elif shape == "brave":
        assert headers["x-subscription-token"] == "test-key" and params["count"] == "3"
    else:
        assert path == "/search" and params["format"] == "json" and len(got[0]) == 3  # capped client-side


def test_topk_is_capped_at_the_providers_maximum(fake_web):
    fake = fake_web("brave")
    with web(fake) as r:
        r.search(["q"], 50)
    assert fake.requests[0][1]["count"] == str(PROVIDERS["brave"].max_results)


def test_extra_params_are_sent(fake_web):
    fake = fake_web("serper")
    with web(fake, params={"gl": "us", "hl": "en"}) as r:
        r.search(["q"], 2)
    assert fake.requests[0][3] == {"q": "q", "num": 2, "gl": "us", "hl": "en"}


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("BRAVE_API_KEY")
    with pytest.raises(ConfigError, match="set the BRAVE_API_KEY environment variable"):
        WebSearchRetriever(WebConfig(provider="brave"))


def test_searxng_needs_a_url():
    with pytest.raises(ConfigError, match="SEARXNG_BASE_URL"):
        WebSearchRetriever(WebConfig(provider="searxng"))


def test_base_url_from_the_environment(fake_web, monkeypatch):
    fake = fake_web("searxng")
    monkeypatch.setenv("SEARXNG_BASE_URL", fake.url)
    with WebSearchRetriever(WebConfig(provider="searxng")) as r:
        assert r.url == fake.url + "/search"
        assert len(r.search(["q"], 2)[0]) == 2


def test_unknown_provider():
    with pytest.raises(ConfigError, match="serper, serpapi, brave, searxng"):
        WebConfig(provider="bing")


def test_429_retry_after_is_honoured(fake_web):
    fake = fake_web("serper")
    fake.script = [("status", 429, {"Retry-After": "1"})]
    with WebSearchRetriever(WebConfig(provider="serper", base_url=fake.url, qps=1000, backoff_s=0.0)) as r:
        t0 = time.monotonic()
        hits = r.search(["q"], 1)
        waited = time.monotonic() - t0
        assert r.retried == 1 and r.requests == 1
    assert hits[0][0].doc.title == "q result 0"
    assert waited >= 0.9, waited  # backoff_s is 0: only the Retry-After header made it wait


def test_5xx_then_success(fake_web):
    fake = fake_web("serpapi")
    fake.script = [("status", 500), ("status", 503)]
    with web(fake, retries=3) as r:
        assert r.search(["q"], 2)[0][1].doc.title == "q result 1"
        assert r.retried == 2 and len(fake.requests) == 3


@pytest.mark.parametrize("action, needle", [(("status", 502), "HTTP 502"), (("malformed",), "malformed reply"),
                                            (("status", 429), "HTTP 429")])
def test_persistent_failures_become_a_search_error(fake_web, action, needle):
    fake = fake_web("serper")
    fake.script = [action] * 3
    with web(fake, retries=2) as r:
        with pytest.raises(SearchError) as e:
            r.search(["what is up"], 1)
        assert r.failures == 1
    msg = str(e.value)
    assert "web:serper" in msg and "'what is up'" in msg and "after 3 attempts" in msg and needle in msg, msg
    assert len(fake.requests) == 3


def test_timeouts_are_retried_then_fail(fake_web):
    fake = fake_web("brave")
    fake.script = [("sleep", 1.0)]
    with web(fake, timeout_s=0.2, retries=1) as r:
        assert len(r.search(["q"], 2)[0]) == 2  # first attempt timed out, the second answered
        fake.script = [("sleep", 1.0)] * 2
        with pytest.raises(SearchError, match="ReadTimeout"):
            r.search(["q"], 2)


def test_bad_key_is_an_auth_error_without_retries(fake_web, monkeypatch):
    fake = fake_web("serper")
    monkeypatch.setenv("SERPER_API_KEY", "wrong")
    with web(fake, retries=3) as r:
        with pytest.raises(SearchAuthError, match="SERPER_API_KEY"):
            r.search(["q"], 1)
    assert len(fake.requests) == 1


def test_other_4xx_fails_at_once(fake_web):
    fake = fake_web("brave")
    fake.script = [("status", 422)]
    with web(fake, retries=3) as r:
        with pytest.raises(SearchError, match="HTTP 422"):
            r.search(["q"], 1)
    assert len(fake.requests) == 1


def test_provider_specific_empty_and_error_replies():
    serpapi, brave = PROVIDERS["serpapi"].parse, PROVIDERS["brave"].parse
    assert serpapi({"error": "Google hasn't returned any results for this query."}) == []
    with pytest.raises(SearchError, match="Your account has run out of searches"):
        serpapi({"error": "Your account has run out of searches."})
    assert brave({"type": "search", "query": {"original": "zzz"}}) == []
    with pytest.raises(ValueError, match="web.results"):
        brave({"type": "search", "web": {"results": "nope"}})


def test_token_bucket_paces_requests():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=2.0, capacity=2, clock=lambda: now[0], sleep=sleep)
    assert [bucket.acquire() for _ in range(4)] == [0.0, 0.0, 0.5, 0.5]  # a burst of 2, then 2 per second
    now[0] += 10  # idle: the bucket refills to its capacity, no more
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.5]


def test_rate_limit_holds_across_threads(fake_web):
    fake = fake_web("serper")
    with WebSearchRetriever(WebConfig(provider="serper", base_url=fake.url, qps=20, max_concurrency=4)) as r:
        t0 = time.monotonic()
        r.search([f"q{i}" for i in range(9)], 1)
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.38, elapsed  # 9 requests at 20/s with a burst of 1: 8 waits of 0.05 s


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0  # a date in the past: no wait


def test_serve_exposes_a_web_backend_through_retrieve(fake_web):
    fake = fake_web("serper")
    retriever, kind = build_backend("web:serper", web=WebConfig(base_url=fake.url, qps=1000))
    assert kind == "web:serper"
    with BackgroundServer(create_app(retriever, ServerConfig(batch_wait_ms=0), kind=kind)) as srv:
        with HTTPSearchClient(srv.url, retries=0) as client:
            got = client.search(["capital of france", "jupiter"], 2)
            health = client.health()
    assert [[h.doc.id for h in r] for r in got] == [[u for _, _, u in fake.results(q, 2)]
                                                    for q in ["capital of france", "jupiter"]]
    assert health["retriever"] == "web:serper" and health["corpus_size"] is None


@pytest.mark.parametrize("argv, needle", [
    (["serve", "--backend", "web:bing"], "search backend 'web:bing' is unknown"),
    (["serve", "--backend", "web:brave"], "set the BRAVE_API_KEY environment variable"),
    (["serve", "--backend", "web:searxng"], "SEARXNG_BASE_URL"),
    (["serve"], "serve needs --index DIR"),
    (["serve", "--backend", "web:serper", "--index", "x"], "leave out --index x"),
    (["serve", "--backend", "web:serper", "--search-cache-mode", "replay"], "needs a file: --search-cache PATH"),
])
def test_serve_backend_errors(argv, needle, capsys, monkeypatch):
    monkeypatch.delenv("BRAVE_API_KEY")
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def _serve(args, env, port):
    """``searchr1 serve ARGS --port PORT`` in a subprocess, once /health answers."""
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "searchr1.cli", "serve", *args, "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not start in 60 s"
        time.sleep(0.2)


def test_cli_serve_web_backend_records_then_replays(fake_web, tmp_path):
    import os
    import signal
    import socket

    import httpx

    fake = fake_web("serper")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SERPER_API_KEY": "test-key"}
    env.pop("SEARCHR1_TOKEN", None)
    cache = str(tmp_path / "web.sqlite")
    body = {"queries": ["capital of france", "jupiter moons"], "topk": 3, "return_scores": True}
    url = f"http://127.0.0.1:{port}"
    bodies = []
    for mode in ("rw", "replay"):
        proc = _serve(["--backend", "web:serper", "--web-base-url", fake.url, "--search-cache", cache,
                       "--search-cache-mode", mode], env, port)
        try:
            bodies.append(httpx.post(url + "/retrieve", json=body, timeout=30).json())
            health = httpx.get(url + "/health", timeout=5).json()
        finally:
            proc.send_signal(signal.SIGINT)
            err = proc.communicate(timeout=30)[1]
        assert health["retriever"] == "web:serper" and health["search_cache"]["mode"] == mode
        assert "search cache" in err and "requests saved" in err, err  # the summary logged at shutdown
        if mode == "rw":
            assert len(fake.requests) == 2
            fake.close()  # replay must not need the provider
    assert bodies[0] == bodies[1]
    want = [u for _, _, u in fake.results("capital of france", 3)]
    assert [r["document"]["id"] for r in bodies[0]["result"][0]] == want
    assert health["search_cache"]["search_cache/hit_rate"] == 1.0
