"""Our dense server against Search-R1's, side by side: same encoder, index, corpus and requests.

Search-R1's server is :mod:`benchmarks.searchr1_reference` (its request path reimplemented, fp32 on
the CPU: its best configuration here); ours is ``searchr1 serve`` on the same index directory. Both
load the same FAISS file (the 20k-passage Flat index of ``make bench B=search``) and the MiniLM
encoder; the reference reads the passages from a Search-R1 JSONL corpus written from our store.

Request streams (topk 3, scores on, as Search-R1's trainer sends them):

* ``trainer``: 4 client threads, 32 queries per request — several rollout workers, each sending one
  request per turn with its batch of queries. This is the stream of ``BENCH dense_server_vs_searchr1``.
* ``driver``: 1 client, 256 queries per request — one trainer driving all rollouts.
* ``agents``: 8 client threads, 1 query per request — interactive agents.

The two servers run alternately (each stream: ours, theirs, ours, theirs; best of the two rounds
per server), only one under load at a time, so a change in the shared machine's load hits both.
Before timing, the answers to the same 64 queries are compared: same passages in the same order.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

STREAMS = {"trainer": (4, 32, 40), "driver": (1, 256, 6), "agents": (8, 1, 300)}
"""name: (client threads, queries per request, requests per round)."""
HEADLINE = "trainer"
SCORE_TOL = 5e-3
"""Largest score gap that counts as the same answer (a bf16 encoder moves cosines by ~1e-3)."""


def _bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _process(args: list[str], port: int):
    """A server subprocess on ``port``, up when ``/health`` answers; stopped on exit."""
    import httpx

    log = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the server runs (tqdm bars)
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy in 180 s")
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def write_searchr1_corpus(index_dir: Path, out: Path) -> None:
    """The index's passages as Search-R1's JSONL corpus (``{"id", "contents"}``, index order)."""
    from searchr1.search.docstore import DocStore

    store = DocStore(index_dir)
    with out.open("w", encoding="utf-8") as f:
        for i in range(len(store)):
            f.write(json.dumps(store[i].to_json(), ensure_ascii=False) + "\n")


def _top_scores(url: str, queries: list[str]) -> list[list[float]]:
    """Top-3 scores per query (compared, not the ids: the index's passages of one article share a
    vector, so equal scores are common and the passages among them may come in another order)."""
    import httpx

    r = httpx.post(url + "/retrieve", json={"queries": queries, "topk": 3, "return_scores": True}, timeout=300)
    r.raise_for_status()
    return [[hit["score"] for hit in row] for row in r.json()["result"]]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_dense_vs_searchr1(index_dir: Path, queries: list[str], work: Path, our_config: dict | None = None) -> float:
    """Print the side-by-side table and ``BENCH dense_server_vs_searchr1``; returns the ratio."""
    from benchmarks.bench_search import load_test
    from searchr1.search.dense import DenseConfig, encoder_path

    corpus = work / "searchr1_corpus.jsonl"
    write_searchr1_corpus(index_dir, corpus)
    model = encoder_path(DenseConfig())
    ours_port, ref_port = _free_port(), _free_port()
    ours_cmd = ["-c", "import json, sys; from searchr1.search.server import ServerConfig, serve; "
                "serve(sys.argv[1], port=int(sys.argv[2]), config=ServerConfig(**json.loads(sys.argv[3])))",
                str(index_dir), str(ours_port), json.dumps(our_config or {})]
    ref_cmd = ["-m", "benchmarks.searchr1_reference", "--index", str(index_dir / "dense.faiss"),
               "--corpus", str(corpus), "--model", model, "--port", str(ref_port)]
    rows: dict[str, dict[str, tuple[float, float]]] = {}  # stream → server → (q/s, q per server CPU-s)
    with _process(ours_cmd, ours_port) as ours, _process(ref_cmd, ref_port) as ref:
        servers = {"searchr1": ours, "search-r1 (fp32)": ref}
        mine, theirs = _top_scores(ours[0], queries[:64]), _top_scores(ref[0], queries[:64])
        gap = max(abs(a - b) for ra, rb in zip(mine, theirs) for a, b in zip(ra, rb))
        same = sum(len(ra) == len(rb) and all(abs(a - b) < SCORE_TOL for a, b in zip(ra, rb))
                   for ra, rb in zip(mine, theirs))
        print(f"top-3 scores within {SCORE_TOL}: {same}/64 queries (largest gap {gap:.2e})", flush=True)
        for url, _ in servers.values():
            load_test(url, queries, 2, 8, 10)  # warm-up
        for stream, (clients, per_request, n) in STREAMS.items():
            for _ in range(2):
                for name, (url, pid) in servers.items():
                    c0 = _cpu_seconds(pid)
                    r = load_test(url, queries, clients, per_request, n)
                    per_cpu = n * per_request / max(_cpu_seconds(pid) - c0, 1e-9)
                    best = rows.setdefault(stream, {}).get(name)
                    if best is None or r["qps"] > best[0]:
                        rows[stream][name] = (r["qps"], per_cpu)
    print(f"\n{'stream':<9}{'clients':>8}{'q/req':>6}{'searchr1 q/s':>14}{'search-r1 q/s':>15}{'ratio':>7}"
          f"{'q/server-CPU-s (ours, theirs)':>32}")
    for stream, (clients, per_request, _) in STREAMS.items():
        (a, ca), (b, cb) = rows[stream]["searchr1"], rows[stream]["search-r1 (fp32)"]
        print(f"{stream:<9}{clients:>8}{per_request:>6}{a:>14.0f}{b:>15.0f}{a / b:>7.2f}{ca:>20.0f}{cb:>8.0f}  "
              f"({ca / cb:.2f})")
        _bench(f"dense_server_qps_{stream}", a, "q/s")
        _bench(f"searchr1_server_qps_{stream}", b, "q/s")
        _bench(f"dense_server_vs_searchr1_per_cpu_{stream}", ca / cb, "x")
    ratio = rows[HEADLINE]["searchr1"][0] / rows[HEADLINE]["search-r1 (fp32)"][0]
    _bench("dense_server_vs_searchr1", ratio, "x")
    if same < 60:
        print(f"warning: the two servers' top-3 scores differ on {64 - same}/64 queries", flush=True)
    return ratio


def main() -> None:
    """Standalone: ``python -m benchmarks.dense_vs_searchr1`` (builds the 20k index, then compares)."""
    import random

    from benchmarks.bench_search import build_dense_title_index
    from searchr1.search.corpus_build import iter_wiki_passages

    work = Path(tempfile.mkdtemp(prefix="searchr1-dense-vs-"))
    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    build_dense_title_index(work / "dense")
    wiki = list(iter_wiki_passages(100))
    rng = random.Random(2)
    queries = [" ".join(rng.sample(d.text.split(), min(5, len(d.text.split())))) for d in rng.choices(wiki, k=2000)]
    config = json.loads(os.environ.get("SEARCHR1_SERVER_CONFIG", "{}"))
    bench_dense_vs_searchr1(work / "dense", queries, work, config)


if __name__ == "__main__":
    main()
