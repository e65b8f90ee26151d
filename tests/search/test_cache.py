"""The persistent search cache: modes, keys, replay == live, misses, two writer processes, serving."""
import logging
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from searchr1.errors import ConfigError
from searchr1.search.base import Document, Hit, SearchError
from searchr1.search.cache import (CacheMiss, CachedSearch, SearchCache, SearchCacheConfig, identity,
                                   index_checksum, normalize_query, wrap)
from searchr1.search.index import build_index, read_index_meta
from searchr1.search.server import BackgroundServer, ServerConfig, build_backend, create_app
from searchr1.search.web import WebConfig, WebSearchRetriever


class Counting:
    """A deterministic retriever that records every batch it is asked for."""

    kind = "counting"

    def __init__(self):
        self.calls = []

    def search(self, queries, topk):
        self.calls.append(list(queries))
        return [[Hit(Document(f"{q}#{i}", f"T {q}", f"text {i} of {q}"), 1.0 / (i + 3)) for i in range(topk)]
                for q in queries]


def cached(tmp_path, mode="rw", inner=None, **kw):
    return CachedSearch(inner or Counting(), SearchCacheConfig(str(tmp_path / "c.sqlite"), mode, **kw), "counting",
                        "sum1")


def test_rw_reads_hits_and_searches_misses(tmp_path):
    c = cached(tmp_path)
    first = c.search(["a", "b"], 2)
    again = c.search(["b", "a", "c"], 2)
    assert c.inner.calls == [["a", "b"], ["c"]]
    assert again[0] == first[1] and again[1] == first[0]  # identical Hits, scores included
    assert c.counters()["search_cache/hits"] == 2 and c.counters()["search_cache/misses"] == 3
    assert len(c.cache) == 3


def test_duplicates_in_a_batch_are_searched_once(tmp_path):
    c = cached(tmp_path)
    out = c.search(["a", " a ", "a"], 1)
    assert c.inner.calls == [["a"]] and out[0] == out[1] == out[2]


def test_key_is_normalised_whitespace_but_keeps_case(tmp_path):
    assert normalize_query("  capital\tof\u00a0France ") == "capital of France"
    c = cached(tmp_path)
    c.search(["capital of France"], 1)
    c.search(["capital  of France "], 1)
    c.search(["Capital of France"], 1)
    assert c.inner.calls == [["capital of France"], ["Capital of France"]]


def test_backend_checksum_and_topk_separate_entries(tmp_path):
    path = str(tmp_path / "c.sqlite")
    inner = Counting()
    for backend, checksum, topk in [("b1", "x", 1), ("b1", "x", 2), ("b2", "x", 1), ("b1", "y", 1), ("b1", "x", 1)]:
        CachedSearch(inner, SearchCacheConfig(path, "rw"), backend, checksum).search(["q"], topk)
    assert len(inner.calls) == 4  # only the repeated (b1, x, 1) was a hit


def test_record_always_searches_and_replaces(tmp_path):
    c = cached(tmp_path, "record")
    c.search(["a"], 1)
    c.inner.search = lambda qs, k: [[Hit(Document("new", "N", "fresh"), 9.0)] for _ in qs]
    c.search(["a"], 1)
    replay = cached(tmp_path, "replay")
    assert replay.search(["a"], 1) == [[Hit(Document("new", "N", "fresh"), 9.0)]]
    assert replay.inner.calls == []


def test_replay_miss_names_the_query_and_the_file(tmp_path):
    cached(tmp_path).search(["known"], 1)
    replay = cached(tmp_path, "replay")
    with pytest.raises(CacheMiss) as e:
        replay.search(["known", "never recorded"], 1)
    msg = str(e.value)
    assert "'never recorded'" in msg and str(tmp_path / "c.sqlite") in msg and "1 of 2 queries" in msg
    assert replay.inner.calls == []


def test_replay_without_a_file_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="nothing to replay"):
        cached(tmp_path, "replay")
    (tmp_path / "c.sqlite").write_text("not a database, just text " * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite file"):
        cached(tmp_path)
    with pytest.raises(ConfigError, match="mode 'sometimes' is unknown"):
        SearchCacheConfig("x", "sometimes")
    with pytest.raises(ConfigError, match="needs a file"):
        SearchCacheConfig("", "rw")
    assert wrap(Counting(), SearchCacheConfig(), "counting").__class__ is Counting  # off: no wrapper


def test_replay_equals_live_on_the_fake_provider(fake_web, tmp_path, monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    fake = fake_web("serper")
    queries = ["capital of france", "python creator", "capital of france", "who wrote hamlet"]
    web = WebSearchRetriever(WebConfig(base_url=fake.url, qps=1000))
    live = web.search(queries, 3)
    path = str(tmp_path / "web.sqlite")
    recorder = wrap(web, SearchCacheConfig(path, "record"), *web.cache_identity())
    assert recorder.search(queries, 3) == live
    fake.close()  # from here on a live request could only fail
    dead = WebSearchRetriever(WebConfig(base_url=fake.url, qps=1000, retries=0))
    replay = wrap(dead, SearchCacheConfig(path, "replay"), *dead.cache_identity())
    assert replay.search(queries, 3) == live
    assert dead.requests == 0 and replay.counters()["search_cache/hit_rate"] == 1.0
    with pytest.raises(CacheMiss, match="'never asked'"):
        replay.search(["never asked"], 3)


def test_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from searchr1.search.base import Document, Hit, SearchError
        from searchr1.search.cache import CachedSearch, SearchCacheConfig

        class Det:
            def search(self, queries, topk):
                return [[Hit(Document(q + "#" + str(i), "T" + q, "x" * 50 + q), 1.0 / (i + 1))
                         for i in range(topk)] for q in queries]

        start, go = int(sys.argv[1]), float(sys.argv[2])
        c = CachedSearch(Det(), SearchCacheConfig({str(path)!r}, "rw"), "det", "v1")
        while time.time() < go:  # both processes start writing at the same moment
            time.sleep(0.001)
        t0 = time.time()
        for s in range(start, start + 1000, 2):
            c.search(["query %d" % i for i in range(s, s + 2)], 3)
        print(c.counters()["search_cache/misses"], t0, time.time())
    """)
    go = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", "import time\n" + script, str(start), str(go)],
                              stdout=subprocess.PIPE, text=True)
             for start in (0, 500)]  # 1000 queries each in 500 transactions, 500 queries shared
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    (m1, s1, e1), (m2, s2, e2) = [[float(x) for x in o] for o in outs]
    assert max(s1, s2) < min(e1, e2), outs  # the two writers really ran at the same time
    assert m1 + m2 >= 1500  # every query was searched live by at least one process
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (1500,)
    conn.close()
    store = SearchCache(path)
    got = store.get_many("det", "v1", [f"query {i}" for i in range(1500)], 3)
    assert len(got) == 1500
    for q, hits in got.items():
        assert hits == [Hit(Document(f"{q}#{i}", "T" + q, "x" * 50 + q), 1.0 / (i + 1)) for i in range(3)]


def test_local_index_behind_the_cache_and_the_server(tiny_docs, tmp_path):
    build_index(tiny_docs, tmp_path / "idx")
    meta = read_index_meta(tmp_path / "idx")
    cache = SearchCacheConfig(str(tmp_path / "c.sqlite"), "rw")
    retriever, kind = build_backend("index", tmp_path / "idx", cache=cache)
    assert kind == "bm25" and isinstance(retriever, CachedSearch)
    assert (retriever.backend, retriever.checksum) == ("bm25", index_checksum(meta))
    assert identity(retriever.inner, meta) == ("bm25", index_checksum(meta))
    direct = retriever.inner.search(["capital city paris", "python"], 2)
    with BackgroundServer(create_app(retriever, ServerConfig(batch_wait_ms=0), kind=kind)) as srv:
        import httpx

        for _ in range(2):
            body = httpx.post(srv.url + "/retrieve", json={"queries": ["capital city paris", "python"], "topk": 2,
                                                           "return_scores": True}).json()
        health = httpx.get(srv.url + "/health").json()
    assert [[r["document"]["id"] for r in row] for row in body["result"]] == [[h.doc.id for h in r] for r in direct]
    assert health["corpus_size"] == len(tiny_docs)
    assert health["search_cache"]["search_cache/hits"] == 2 and health["search_cache"]["mode"] == "rw"


def test_hit_rate_and_saved_cost_are_logged(tmp_path, caplog):
    c = cached(tmp_path, cost_per_1k=15.0, log_every=4)
    with caplog.at_level(logging.INFO, logger="searchr1.search.cache"):
        c.search(["a", "b"], 1)
        c.search(["a", "b"], 1)
        c.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("2/4 lookups hit (50.0%), 2 requests saved (~$0.03 at $15 per 1k)" in m
                                   for m in lines), lines


def test_startup_probe_through_the_cache(tmp_path, bm25_server):
    from searchr1.search.client import HTTPSearchClient
    from searchr1.search.guard import GuardedRetriever, RetrievalOutage, startup_check

    client = HTTPSearchClient(bm25_server.url, retries=0)
    rw = CachedSearch(client, SearchCacheConfig(str(tmp_path / "c.sqlite"), "rw"), *identity(client))
    assert rw.url == client.url and rw.health() == client.health()
    guard = GuardedRetriever(rw)
    startup_check(guard)  # /health and one search, through the cache
    assert rw.misses == 1
    guard.search(["health check", "python"], 1)
    counters = guard.counters()  # the trainer logs these every step
    assert counters["search/calls_total"] == 1 and counters["search_cache/hits"] == 1
    assert counters["search_cache/misses"] == 2
    replay = CachedSearch(Counting(), SearchCacheConfig(str(tmp_path / "c.sqlite"), "replay"), "counting")
    startup_check(GuardedRetriever(replay))  # nothing live to probe: no CacheMiss for the probe query
    assert replay.inner.calls == [] and replay.misses == 0
    dead = HTTPSearchClient("http://127.0.0.1:9", retries=0)
    with pytest.raises(RetrievalOutage, match="did not answer /health"):
        startup_check(GuardedRetriever(CachedSearch(dead, SearchCacheConfig(str(tmp_path / "c.sqlite"), "rw"),
                                                    "server")))


def test_one_failed_query_keeps_the_batchs_paid_answers(fake_web, tmp_path, monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    fake = fake_web("serper")
    fake.fail_queries = {"bad one"}
    web = WebSearchRetriever(WebConfig(base_url=fake.url, qps=1000, retries=1, backoff_s=0.0))
    c = wrap(web, SearchCacheConfig(str(tmp_path / "c.sqlite"), "rw"), *web.cache_identity())
    with pytest.raises(SearchError, match="'bad one'"):
        c.search(["first", "bad one", "third"], 2)
    assert len(c.cache) == 2 and len(fake.requests) == 4  # 2 answers stored; the bad query tried twice
    got = c.search(["first", "third"], 2)  # what the rollout's per-query retry asks next
    assert len(fake.requests) == 4 and got[0][0].doc.title == "first result 0"


def test_replay_opens_the_file_read_only(tmp_path):
    cached(tmp_path).search(["a"], 1)
    writer = SearchCache(tmp_path / "c.sqlite")
    conn = writer._conn()
    conn.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
    try:
        replay = cached(tmp_path, "replay")
        assert replay.search(["a"], 1)[0][0].doc.id == "a#0"  # readers do not wait for the writer
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            replay.cache.put_many("x", "y", [("q", [])], 1)
    finally:
        conn.execute("ROLLBACK")
