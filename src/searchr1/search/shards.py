"""One retriever over several Search-R1-compatible ``/retrieve`` servers, each serving a corpus shard.

Every query batch goes to all shards at once (one thread per shard); each shard returns its
top-k, and the global top-k is the k best of those (a passage in the global top-k is in its
own shard's top-k, so this is exact). Ties keep the shard order, then each shard's own order:
with shards holding consecutive slices of the corpus in order, that is the corpus-position
tie-break of a single index, so the ranking equals one index over the whole corpus.

Scores must be comparable across shards. Dense inner-product (FAISS flat, Qdrant) scores
are: they depend only on the query and the passage. BM25 scores are not unless every shard
was built with the corpus-wide document frequencies and average length: searchr1 builds
each BM25 shard with its own statistics, so merged BM25 rankings are approximate (close for
large random shards, wrong for topical ones). Use dense shards, or one BM25 index.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from searchr1.search.base import Hit, Retriever, SearchError
from searchr1.search.client import HTTPSearchClient


def merge_topk(per_shard: list[list[list[Hit]]], topk: int) -> list[list[Hit]]:
    """(shards, queries, hits) → (queries, ≤ topk hits): score descending, then shard, then shard rank."""
    if not per_shard:
        return []
    n = len(per_shard[0])
    if any(len(rows) != n for rows in per_shard):
        raise SearchError(f"shards answered different numbers of result lists ({[len(r) for r in per_shard]}).")
    out = []
    for q in range(n):
        ranked = [(-h.score, s, r, h) for s, rows in enumerate(per_shard) for r, h in enumerate(rows[q])]
        ranked.sort(key=lambda t: t[:3])
        out.append([h for *_, h in ranked[:topk]])
    return out


class ShardedRetriever:
    """``search(queries, topk)`` over shard retrievers (any :class:`Retriever`), merged by score.

    ``ShardedRetriever.from_urls([url1, url2])`` talks to ``searchr1 serve`` (or Search-R1's
    server) on each shard; any shard failing fails the batch with its URL (a partial top-k
    would silently change results).
    """

    kind = "sharded"

    def __init__(self, shards: list[Retriever], names: list[str] | None = None):
        if not shards:
            raise ValueError("ShardedRetriever needs at least one shard.")
        self.shards = shards
        self.names = names or [f"shard {i}" for i in range(len(shards))]
        self._pool = ThreadPoolExecutor(len(shards), thread_name_prefix="searchr1-shard")

    @classmethod
    def from_urls(cls, urls: list[str], **client_kwargs) -> "ShardedRetriever":
        urls = [u.strip() for u in urls if u.strip()]
        if len(urls) < 1:
            raise ValueError("pass at least one shard URL (http://host:port of a /retrieve server).")
        return cls([HTTPSearchClient(u, **client_kwargs) for u in urls], names=urls)

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        queries = list(queries)
        futures = [self._pool.submit(shard.search, queries, topk) for shard in self.shards]
        results = []
        for name, fut in zip(self.names, futures):
            try:
                results.append(fut.result())
            except SearchError as e:
                raise SearchError(f"{name}: {e}") from e
        return merge_topk(results, topk)

    @property
    def url(self) -> str:
        """The shards' names joined by commas (the form ``--server`` takes; messages and cache keys use it)."""
        return ",".join(self.names)

    def health(self) -> dict:
        """Every HTTP shard's ``/health`` (a shard that fails raises, naming its URL), summed up."""
        shards = []
        for name, shard in zip(self.names, self.shards):
            probe = getattr(shard, "health", None)
            shards.append({"url": name, **(probe() if callable(probe) else {"corpus_size": len(shard)})})
        sizes = [h.get("corpus_size") for h in shards]
        return {"status": "ok", "retriever": "sharded", "shards": shards,
                "corpus_size": sum(sizes) if all(isinstance(n, int) for n in sizes) else None}

    def __len__(self) -> int:
        """Passages over all shards (an HTTP shard reports its size on ``/health``)."""
        return sum(len(s) if hasattr(s, "__len__") else int(s.health()["corpus_size"]) for s in self.shards)

    def close(self) -> None:
        for shard in self.shards:
            if hasattr(shard, "close"):
                shard.close()
        self._pool.shutdown(wait=False)


def connect(server: str, **client_kwargs) -> Retriever:
    """The retriever behind a ``--server`` / ``data.retriever_url`` value: one URL is an
    :class:`HTTPSearchClient`; several, comma-separated (one per corpus shard), a :class:`ShardedRetriever`."""
    urls = [u.strip() for u in server.split(",") if u.strip()]
    if len(urls) > 1:
        return ShardedRetriever.from_urls(urls, **client_kwargs)
    return HTTPSearchClient(server.strip(), **client_kwargs)
