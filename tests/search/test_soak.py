"""Soak: 8 clients × 60 s of mixed good and bad requests against `searchr1 serve` on loopback.

Every response must carry the status its request deserves (0 unexpected), the server must
answer /health at the end, and its resident memory may grow by at most 50 MB
(``RSS_BOUND_MB``) between the end of a 10 s warm-up and the end of the run.
``SEARCHR1_SOAK_SECONDS`` shortens the run.
"""
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from searchr1.search.corpus_build import synthetic_corpus
from searchr1.search.index import build_index

pytestmark = pytest.mark.slow
SECONDS = float(os.environ.get("SEARCHR1_SOAK_SECONDS", "60"))
CLIENTS = 8
RSS_BOUND_MB = 50
TOKEN = "soak-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _request(rng: random.Random, words: list[str]) -> tuple[str, dict, bytes, set[int]]:
    """(kind, headers, body, acceptable statuses) for one random request."""
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    kind = rng.choices(["good", "empty", "malformed", "bigint", "deep", "text", "too_many", "topk", "noauth"],
                       weights=[60, 5, 5, 5, 5, 5, 5, 5, 5])[0]
    if kind == "good":
        n = rng.choice([1, 1, 4, 16, 64, 256])
        queries = [" ".join(rng.sample(words, 4)) for _ in range(n)]
        body = {"queries": queries, "topk": rng.choice([0, None, 1, 3, 5, 10]), "return_scores": rng.random() < .5}
        return kind, auth, json.dumps(body).encode(), {200}
    table = {
        "empty": (json.dumps({"queries": []}).encode(), 200),
        "malformed": (b'{"queries": ["a"', 400),
        "bigint": (b'{"queries": ["a"], "topk": ' + b"9" * 5000 + b"}", 400),
        "deep": (b"[" * 20000 + b"]" * 20000, 400),
        "text": (json.dumps({"queries": ["a"]}).encode(), 415),
        "too_many": (json.dumps({"queries": ["a"] * 4097}).encode(), 422),
        "topk": (json.dumps({"queries": ["a"], "topk": 101}).encode(), 422),
        "noauth": (json.dumps({"queries": ["a"]}).encode(), 401),
    }
    body, status = table[kind]
    headers = {"Content-Type": "text/plain"} if kind == "text" else {} if kind == "noauth" else auth
    if kind == "text":
        headers["Authorization"] = auth["Authorization"]
    if kind == "noauth":
        headers["Content-Type"] = "application/json"
    return kind, headers, body, {status}


def test_soak(tmp_path):
    docs = synthetic_corpus(5000, words=100, seed=0)
    build_index(docs, tmp_path / "idx")
    words = [w for d in docs[:200] for w in d.text.split()]
    port = _free_port()
    env = {**os.environ, "SEARCHR1_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "searchr1.cli", "serve", "--index", str(tmp_path / "idx"),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start in 60 s"
            time.sleep(0.2)
        counts, unexpected, lock = Counter(), [], threading.Lock()
        rss = {}
        start = time.monotonic()

        def client(seed: int):
            rng = random.Random(seed)
            with httpx.Client(timeout=60) as c:
                while time.monotonic() - start < SECONDS:
                    kind, headers, body, ok = _request(rng, words)
                    resp = c.post(url + "/retrieve", content=body, headers=headers)
                    good = resp.status_code in ok
                    if good and resp.status_code == 200 and kind == "good":
                        good = len(resp.json()["result"]) == len(json.loads(body)["queries"])
                    with lock:
                        counts[kind, resp.status_code] += 1
                        if not good:
                            unexpected.append((kind, resp.status_code, resp.text[:200]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(min(10, SECONDS / 6))  # warm-up: caches, first batches, arena growth
        rss["warm"] = _rss_mb(proc.pid)
        for t in threads:
            t.join()
        rss["end"] = _rss_mb(proc.pid)
        assert httpx.get(url + "/health", timeout=5).json()["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    total = sum(counts.values())
    print(f"\nsoak: {total} requests in {SECONDS:.0f} s from {CLIENTS} clients; RSS {rss['warm']:.0f} → "
          f"{rss['end']:.0f} MB; {dict(sorted(counts.items()))}")
    assert not unexpected, unexpected[:5]
    assert total > CLIENTS * 10 and {k for k, _ in counts} >= {"good", "malformed", "deep", "noauth"}
    assert rss["end"] - rss["warm"] <= RSS_BOUND_MB, rss
