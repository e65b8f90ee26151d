"""Search benchmark: BM25 build and query speed, the HTTP server, rank_bm25, dense serving.

Corpora: a generated 100k-passage corpus (100 Zipf words each, stopwords as the most
frequent words) and the real wiki corpus (10k Wikipedia summaries in ~100-word passages).
Queries: 5 words drawn from a random passage (stopwords included, as in questions).

* In-process q/s: ``retriever.search`` with batches of 1 and of 1000 (topk 3), hits built.
  The machine is shared, so ``bm25_qps_100k_per_cpu_second`` also reports queries per
  CPU-second used by this process (all threads): the cost of a query, whatever else runs.
* rank_bm25 (reference): ``BM25Okapi.get_scores`` + top-3 per query on a 10k-passage
  subsample of the same corpus. Its cost per query is linear in the corpus size (it scores
  every passage with numpy), so its 100k rate is the 10k rate / 10; the speedup divides our
  batched 100k rate by that. The same-corpus ratio at 10k (no scaling) is printed too.
* Server: ``searchr1 serve`` in a subprocess on loopback; 1, 4 and 16 client threads
  send requests of 1 query and of 64 queries; q/s counts queries, p50/p99 are per request.
* Fairness: p99 latency of 1-query requests from one client, alone and while 6 other
  clients keep sending maximum-size requests (``max_queries`` queries at the largest topk
  ``max_hits`` allows, scores on) to the default server over the 100k BM25 index; the
  target is a ratio of at most 10.
* Dense: MiniLM server over a 20k-passage Flat index. Encoding 20k full passages takes
  ~25 CPU-minutes on these machines, so the index vectors are MiniLM embeddings of the
  passages' titles; a Flat search costs the same whatever the vectors are, and every query
  is encoded by the real model, so the q/s is that of a real 20k-passage index.
* Against Search-R1's server (reimplemented, fp32), same index and request streams:
  :mod:`benchmarks.dense_vs_searchr1`.
"""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.dense_vs_searchr1 import bench_dense_vs_searchr1
from benchmarks.search_cache import bench_cache_replay


def _bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def _make_queries(docs, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(docs).text.split()
        out.append(" ".join(rng.sample(words, min(5, len(words)))))
    return out


CPU_QPS: dict[str, float] = {}  # queries per CPU-second of this process (all threads), by label


def _qps(fn, queries: list[str], batch: int, limit_s: float = 8.0, label: str = "") -> float:
    """Wall-clock queries/s; also records queries per CPU-second under ``label`` — on a
    shared machine the CPU figure shows the cost of a query whatever the others run."""
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while done < len(queries) and time.perf_counter() - t0 < limit_s:
        fn(queries[done:done + batch], 3)
        done += batch
    done = min(done, len(queries))
    if label:
        CPU_QPS[label] = max(CPU_QPS.get(label, 0.0), done / max(time.process_time() - c0, 1e-9))
    return done / (time.perf_counter() - t0)


def bench_bm25(name: str, docs, index_dir: Path, rows: list) -> tuple[float, list[str]]:
    from searchr1.search.index import IndexConfig, build_index

    t0 = time.perf_counter()
    retriever = build_index(docs, index_dir, IndexConfig(retriever="bm25"))
    build_s = time.perf_counter() - t0
    queries = _make_queries(docs, 3000, seed=1)
    retriever.search(queries[:100], 3)  # warm-up (numba kernel load)
    qps1 = _qps(retriever.search, queries[:1000], 1)
    qps1000 = max(_qps(retriever.search, queries, 1000, label=name) for _ in range(2))
    rows.append((name, len(docs), build_s, qps1, qps1000))
    return qps1000, queries


def bench_rank_bm25(docs, queries: list[str], ours_100k_qps: float) -> None:
    from rank_bm25 import BM25Okapi

    from searchr1.search.bm25 import BM25Config, BM25Retriever, Tokenizer, passage_text

    sub = docs[:10_000]
    tok = Tokenizer()
    ref = BM25Okapi([tok(passage_text(d)) for d in sub], k1=0.9, b=0.4)
    qs = queries[:150]
    t0 = time.perf_counter()
    for q in qs:
        np.argsort(-ref.get_scores(tok(q)))[:3]
    ref_qps_10k = len(qs) / (time.perf_counter() - t0)
    ours = BM25Retriever.build(sub, BM25Config())
    ours.search(qs, 3)
    ours_10k = max(_qps(ours.search, queries, 1000) for _ in range(2))
    print(f"rank_bm25 on a 10k subsample: {ref_qps_10k:.1f} q/s (→ {ref_qps_10k / 10:.1f} q/s at 100k, "
          f"linear scaling); searchr1 on the same 10k: {ours_10k:.0f} q/s")
    _bench("rank_bm25_qps_10k", ref_qps_10k, "q/s")
    _bench("bm25_speedup_vs_rank_bm25", ours_100k_qps / (ref_qps_10k / 10), "x")
    _bench("bm25_speedup_vs_rank_bm25_10k", ours_10k / ref_qps_10k, "x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, index_dir: Path, config: dict | None = None):
        """``searchr1.search.server.serve`` in a subprocess; ``config``: ServerConfig overrides."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = ("import json, sys; from searchr1.search.server import ServerConfig, serve; "
                "serve(sys.argv[1], port=int(sys.argv[2]), config=ServerConfig(**json.loads(sys.argv[3])))")
        cmd = [sys.executable, "-c", code, str(index_dir), str(self.port), json.dumps(config or {})]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self):
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not become healthy in 120 s")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def load_test(url: str, queries: list[str], clients: int, per_request: int, n_requests: int) -> dict:
    import httpx

    lat: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def worker():
        with httpx.Client(timeout=60) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                qs = [queries[(i * per_request + j) % len(queries)] for j in range(per_request)]
                t = time.perf_counter()
                r = c.post(url + "/retrieve", json={"queries": qs, "topk": 3, "return_scores": True})
                r.raise_for_status()
                with lock:
                    lat.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {"qps": len(lat) * per_request / wall, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99))}


def bench_server(index_dir: Path, queries: list[str], label: str, configs) -> list:
    rows = []
    with ServerProcess(index_dir) as srv:
        load_test(srv.url, queries, 2, 1, 20)  # warm-up
        for clients, per_request, n_requests in configs:
            r = load_test(srv.url, queries, clients, per_request, n_requests)
            rows.append((label, clients, per_request, r["qps"], r["p50"], r["p99"]))
    return rows


def _probe_latencies(url: str, queries: list[str], n: int, stop: threading.Event | None = None) -> np.ndarray:
    """Milliseconds of ``n`` sequential 1-query requests (fewer if ``stop`` is set first)."""
    import httpx

    out = []
    with httpx.Client(timeout=120) as c:
        for i in range(n):
            if stop is not None and stop.is_set():
                break
            t = time.perf_counter()
            c.post(url + "/retrieve", json={"queries": [queries[i % len(queries)]], "topk": 3}).raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
    return np.array(out)


def _flood(url: str, body: bytes, clients: int, stop, served, failed) -> None:
    """Run in a child process (so its reads do not slow the probing client): ``clients``
    threads post ``body`` back to back until ``stop`` is set; counts go to ``served``/``failed``."""
    import httpx

    def loop():
        with httpx.Client(timeout=300) as c:
            while not stop.is_set():
                r = c.post(url + "/retrieve", content=body, headers={"content-type": "application/json"})
                counter = served if r.status_code == 200 else failed
                with counter.get_lock():
                    counter.value += 1

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def bench_fairness(index_dir: Path, queries: list[str], flooders: int = 6, probes: int = 200,
                   max_flood_s: float = 120.0, config: dict | None = None) -> None:
    """p99 of 1-query requests alone vs while ``flooders`` clients send maximum-size requests."""
    import multiprocessing as mp

    from searchr1.search.server import ServerConfig

    cfg = ServerConfig(**(config or {}))
    topk = min(cfg.max_topk, cfg.max_hits // cfg.max_queries)
    big = json.dumps({"queries": [queries[i % len(queries)] for i in range(cfg.max_queries)], "topk": topk,
                      "return_scores": True}).encode()
    ctx = mp.get_context("spawn")
    with ServerProcess(index_dir, config) as srv:
        _probe_latencies(srv.url, queries, 20)  # warm-up
        alone = _probe_latencies(srv.url, queries, probes)
        stop, served, failed = ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
        flood = ctx.Process(target=_flood, args=(srv.url, big, flooders, stop, served, failed), daemon=True)
        flood.start()
        time.sleep(3.0)  # the flood is under way
        local_stop = threading.Event()
        timer = threading.Timer(max_flood_s, local_stop.set)
        timer.start()
        loaded = _probe_latencies(srv.url, queries, probes, local_stop)
        timer.cancel()
        stop.set()
        flood.join(timeout=300)
    p99_alone, p99_loaded = float(np.percentile(alone, 99)), float(np.percentile(loaded, 99))
    print(f"\nfairness: 1-query p99 {p99_alone:.1f} ms alone, {p99_loaded:.1f} ms while {flooders} clients send "
          f"{cfg.max_queries} queries x topk {topk} ({served.value} such requests served, {failed.value} failed; "
          f"{len(loaded)} probes, p50 {np.percentile(loaded, 50):.1f} ms); ratio {p99_loaded / p99_alone:.1f} "
          "(target <= 10)", flush=True)
    _bench("server_p99_unloaded_ms", p99_alone, "ms")
    _bench("server_p99_under_flood_ms", p99_loaded, "ms")
    _bench("server_p99_flood_ratio", p99_loaded / p99_alone, "x")


def build_dense_title_index(out: Path, n: int = 20_000) -> None:
    """20k wiki passages whose Flat vectors are MiniLM title embeddings (see module doc)."""
    import faiss

    from searchr1.search.corpus_build import iter_wiki_passages
    from searchr1.search.dense import DenseConfig, DenseRetriever, Encoder
    from searchr1.search.index import save_index

    docs = []
    for words in (40, 30):
        docs = list(iter_wiki_passages(words))
        if len(docs) >= n:
            break
    docs = docs[:n]
    config = DenseConfig(max_length=24)
    enc = Encoder(config)
    titles = sorted({d.title for d in docs})
    vecs = enc.encode(titles, batch_size=256)
    row = {t: i for i, t in enumerate(titles)}
    index = faiss.IndexFlatIP(enc.dim)
    index.add(np.ascontiguousarray(vecs[[row[d.title] for d in docs]]))
    save_index(DenseRetriever(enc, index, docs, config), out)
    meta = json.loads((out / "index.json").read_text())
    meta["retriever"]["note"] = "benchmark index: the vectors are title embeddings"
    (out / "index.json").write_text(json.dumps(meta))


def main() -> None:
    import torch

    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    torch.set_num_threads(1)
    from searchr1.search.corpus_build import iter_wiki_passages, synthetic_corpus

    work = Path(tempfile.mkdtemp(prefix="searchr1-bench-"))
    t0 = time.perf_counter()
    synth = synthetic_corpus(100_000, words=100, seed=0)
    print(f"generated 100k synthetic passages in {time.perf_counter() - t0:.1f}s", flush=True)
    wiki = list(iter_wiki_passages(100))
    rows: list = []
    qps_100k, synth_queries = bench_bm25("synthetic-100k", synth, work / "synth", rows)
    _, wiki_queries = bench_bm25("wiki", wiki, work / "wiki", rows)
    print(f"\n{'corpus':<16}{'passages':>10}{'build s':>9}{'q/s b=1':>10}{'q/s b=1000':>12}")
    for name, n, b, q1, q1000 in rows:
        print(f"{name:<16}{n:>10}{b:>9.1f}{q1:>10.0f}{q1000:>12.0f}")
    _bench("bm25_build_100k_s", rows[0][2], "s")
    _bench("bm25_qps_100k", qps_100k, "q/s")
    _bench("bm25_qps_100k_batch1", rows[0][3], "q/s")
    _bench("bm25_qps_100k_per_cpu_second", CPU_QPS["synthetic-100k"], "q/s")
    _bench("bm25_build_wiki_s", rows[1][2], "s")
    _bench("bm25_qps_wiki", rows[1][4], "q/s")
    bench_rank_bm25(synth, synth_queries, qps_100k)

    configs = [(1, 1, 300), (4, 1, 500), (16, 1, 500), (1, 64, 40), (4, 64, 80), (16, 64, 96)]
    srows = bench_server(work / "synth", synth_queries, "bm25-100k", configs)
    srows += bench_server(work / "wiki", wiki_queries, "bm25-wiki", [(16, 64, 96)])
    bench_fairness(work / "synth", synth_queries)
    dense_dir = work / "dense"
    t0 = time.perf_counter()
    build_dense_title_index(dense_dir)
    print(f"\nbuilt the 20k dense benchmark index in {time.perf_counter() - t0:.1f}s", flush=True)
    dense_queries = _make_queries(wiki, 2000, seed=2)
    srows += bench_server(dense_dir, dense_queries, "dense-20k", [(1, 1, 60), (4, 1, 200), (16, 1, 400), (4, 16, 40)])
    print(f"\n{'server':<11}{'clients':>8}{'q/req':>6}{'q/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for label, c, per, qps, p50, p99 in srows:
        print(f"{label:<11}{c:>8}{per:>6}{qps:>9.0f}{p50:>9.1f}{p99:>9.1f}")
    bm25_rows = [r for r in srows if r[0] == "bm25-100k"]
    best = max(bm25_rows, key=lambda r: r[3])
    _bench("server_qps", best[3], "q/s")
    for label, c, per, qps, p50, p99 in bm25_rows:
        tag = f"c{c}_q{per}"
        _bench(f"server_qps_{tag}", qps, "q/s")
        _bench(f"server_p50_{tag}", p50, "ms")
        _bench(f"server_p99_{tag}", p99, "ms")
    dense_rows = [r for r in srows if r[0] == "dense-20k"]
    _bench("dense_server_qps", max(r[3] for r in dense_rows), "q/s")
    _bench("dense_server_qps_1client", dense_rows[0][3], "q/s")
    # one client sending one query at a time = encoding per request, as Search-R1's server does
    _bench("dense_server_batching_speedup", max(r[3] for r in dense_rows) / dense_rows[0][3], "x")
    # BENCH dense_server_vs_searchr1 (benchmarks/dense_vs_searchr1.py): the same index and queries
    bench_dense_vs_searchr1(dense_dir, dense_queries, work)
    bench_cache_replay(work / "cache")  # BENCH cache_replay_qps (benchmarks/search_cache.py)
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
