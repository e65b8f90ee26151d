"""Search-cache benchmark (part of ``make bench B=search``; alone: ``python -m benchmarks.search_cache``).

A deterministic stand-in retriever returns 3 passages of ~100 words per query (the size of
Search-R1's wiki passages). Its results for 5,000 distinct queries are recorded into a fresh
SQLite cache (``record``, one transaction per batch of 64); then the same queries are
replayed (``replay``) in batches of 64 (a rollout step's searches arrive as one batch) and of 1.
q/s counts queries answered from the file, hits decoded into ``Hit`` objects. The stand-in
costs nothing, so the record rate is the cache's write cost alone.
"""
from __future__ import annotations

import random
import tempfile
import time
import zlib
from pathlib import Path

from searchr1.search.base import Document, Hit
from searchr1.search.cache import CachedSearch, SearchCacheConfig

N_QUERIES = 5000


def _bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


class _Passages:
    """3 hits per query, ~100 words each, derived from the query (no search cost)."""

    kind = "standin"

    def __init__(self, seed: int = 0):
        rng = random.Random(seed)
        self.words = [f"w{rng.randrange(50_000)}" for _ in range(5000)]

    def search(self, queries, topk):
        out = []
        for q in queries:
            h = zlib.crc32(q.encode())
            out.append([Hit(Document(f"{h % 21_000_000}-{i}", f"Title {h % 997} {i}",
                                     " ".join(self.words[(h + i * 131 + j) % 5000] for j in range(100))),
                            1.0 / (i + 1)) for i in range(topk)])
        return out


def _rate(fn, queries: list[str], batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(queries), batch):
        fn(queries[s:s + batch], 3)
    return len(queries) / (time.perf_counter() - t0)


def bench_cache_replay(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    path = str(work / "cache.sqlite")
    queries = [f"who was the {i}th president of country {i % 193}" for i in range(N_QUERIES)]
    inner = _Passages()
    record = CachedSearch(inner, SearchCacheConfig(path, "record", log_every=0), "standin", "v1")
    rec_qps = _rate(record.search, queries, 64)
    record.close()
    replay = CachedSearch(inner, SearchCacheConfig(path, "replay", log_every=0), "standin", "v1")
    rng = random.Random(1)
    shuffled = rng.sample(queries, len(queries))
    qps64 = _rate(replay.search, shuffled, 64)
    qps1 = _rate(replay.search, shuffled[:2000], 1)
    assert replay.misses == 0 and replay.search(queries[:3], 3) == inner.search(queries[:3], 3)
    replay.close()
    size = Path(path).stat().st_size
    print(f"\nsearch cache: {N_QUERIES} queries x 3 passages, file {size / 1e6:.1f} MB; record {rec_qps:.0f} q/s, "
          f"replay {qps64:.0f} q/s (batches of 64), {qps1:.0f} q/s (batches of 1)", flush=True)
    _bench("cache_record_qps", rec_qps, "q/s")
    _bench("cache_replay_qps", qps64, "q/s")
    _bench("cache_replay_qps_batch1", qps1, "q/s")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="searchr1-cache-bench-") as d:
        bench_cache_replay(Path(d))


if __name__ == "__main__":
    main()
