"""Clients that speak the Retriever protocol: HTTP (to ``searchr1 serve`` or any
Search-R1-compatible server), in-process, and an LRU cache around either.

Retry policy (:class:`HTTPSearchClient`): connection errors, timeouts, HTTP 429 and
5xx are retried ``retries`` times with exponential backoff (``backoff * 2**attempt``
seconds, capped at ``max_backoff``); other 4xx are the caller's mistake and fail at
once. Either way the failure is a :class:`SearchError` naming the URL and the last error,
except 401/403: a :class:`SearchAuthError` (a setup mistake, not an observation).
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

from searchr1.search.base import TOKEN_ENV, Document, Hit, Retriever, SearchAuthError, SearchError
from searchr1.search.corpus import parse_contents


def _doc_from_json(d: dict) -> Document:
    title, text = parse_contents(d.get("contents", ""))
    return Document(id=str(d.get("id", "")), title=title, text=text)


class HTTPSearchClient:
    """``search(queries, topk)`` over HTTP with a pooled ``httpx.Client``. Thread-safe.

    ``token`` defaults to ``$SEARCHR1_TOKEN`` (the variable ``searchr1 serve`` reads too).
    """

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 token: str | None = None, max_backoff: float = 8.0, batch_size: int = 512):
        if retries < 0 or backoff < 0 or timeout <= 0 or batch_size < 1:
            raise ValueError("HTTPSearchClient needs retries >= 0, backoff >= 0, timeout > 0, batch_size >= 1.")
        import httpx

        base = url.rstrip("/")
        self.url = base if base.endswith("/retrieve") else base + "/retrieve"
        self.retries, self.backoff, self.max_backoff, self.batch_size = retries, backoff, max_backoff, batch_size
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._httpx = httpx
        self._client = httpx.Client(timeout=timeout, headers=headers,
                                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.failures = 0  # requests that failed for good
        self.retried = 0   # attempts that were retried

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        for s in range(0, len(queries), self.batch_size):  # stay under the server's max_queries
            out.extend(self._post(list(queries[s:s + self.batch_size]), topk))
        return out

    def _post(self, queries: list[str], topk: int) -> list[list[Hit]]:
        payload = {"queries": queries, "topk": topk, "return_scores": True}
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                resp = self._client.post(self.url, json=payload)
            except self._httpx.HTTPError as e:  # connect error, timeout, protocol error
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                continue
            if resp.status_code in (401, 403):
                self.failures += 1
                raise SearchAuthError(f"search server {self.url} refused the request (HTTP {resp.status_code}): "
                                      "wrong or missing token; pass the server's token: --token (eval, ask), "
                                      "data.retriever_token (train) or the SEARCHR1_TOKEN environment variable.")
            if resp.status_code != 200:
                self.failures += 1
                raise SearchError(f"search request to {self.url} was rejected: HTTP {resp.status_code}: "
                                  f"{resp.text[:300]}")
            return self._parse(resp, len(queries))
        self.failures += 1
        raise SearchError(f"search at {self.url} failed after {self.retries + 1} attempts; last error: {last}. "
                          "Is the server running (`searchr1 serve --index DIR`)?")

    def _parse(self, resp, n: int) -> list[list[Hit]]:
        try:
            result = resp.json()["result"]
            hits = [[Hit(_doc_from_json(h["document"]), float(h["score"])) for h in row] for row in result]
        except (ValueError, KeyError, TypeError) as e:
            self.failures += 1
            raise SearchError(f"unexpected reply from {self.url} ({type(e).__name__}: {e}); "
                              "is this a Search-R1-compatible /retrieve endpoint?") from e
        if len(hits) != n:
            self.failures += 1
            raise SearchError(f"{self.url} answered {len(hits)} result lists for {n} queries.")
        return hits

    def health(self) -> dict:
        resp = self._client.get(self.url[: -len("/retrieve")] + "/health")
        resp.raise_for_status()
        return resp.json()

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcessClient:
    """The server's behaviour without a server: same validation limits, same results."""

    def __init__(self, retriever: Retriever, max_topk: int = 100):
        self.retriever, self.max_topk = retriever, max_topk

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        if not 1 <= topk <= self.max_topk:
            raise SearchError(f"topk={topk} is out of range; use 1..{self.max_topk}.")
        if any(not isinstance(q, str) for q in queries):
            raise SearchError("every query must be a string.")
        if not queries:
            return []
        return self.retriever.search(list(queries), topk)


class CachedRetriever:
    """LRU cache of per-query results keyed by (query, topk); ``hits``/``misses`` count
    queries. A batch sends only its distinct misses to ``inner``, in one call. Thread-safe."""

    def __init__(self, inner: Retriever, maxsize: int = 100_000):
        if maxsize < 1:
            raise ValueError(f"maxsize={maxsize}: the cache needs room for at least one entry.")
        self.inner, self.maxsize = inner, maxsize
        self.hits = self.misses = 0
        self._cache: OrderedDict[tuple[str, int], list[Hit]] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        out: list[list[Hit] | None] = [None] * len(queries)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, q in enumerate(queries):
                got = self._cache.get((q, topk))
                if got is not None:
                    self._cache.move_to_end((q, topk))
                    out[i] = got
                    self.hits += 1
                else:
                    todo.setdefault(q, []).append(i)
                    self.misses += 1
        if todo:
            fresh = self.inner.search(list(todo), topk)
            with self._lock:
                for (q, positions), hits in zip(todo.items(), fresh):
                    self._cache[(q, topk)] = hits
                    self._cache.move_to_end((q, topk))
                    for i in positions:
                        out[i] = hits
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return out  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self.hits = self.misses = 0
