"""Web search backends behind the :class:`~searchr1.search.base.Retriever` interface.

``WebSearchRetriever(WebConfig(provider="serper"))`` answers ``search(queries, topk)`` with
one provider request per query (a few in flight at once), so a rollout, the eval runner and
``searchr1 serve --backend web:serper`` use the web exactly as they use a local index.

Providers (:data:`PROVIDERS`): ``serper`` (Google via serper.dev), ``serpapi`` (Google via
SerpAPI), ``brave`` (Brave Search API) and ``searxng`` (a self-hosted SearxNG instance, no
key). Keys come from the environment (``SERPER_API_KEY``, ``SERPAPI_API_KEY``,
``BRAVE_API_KEY``); base URLs from ``WebConfig.base_url``, else ``<NAME>_BASE_URL``, else the
provider's public endpoint (SearxNG has none: ``SEARXNG_BASE_URL`` is required).

A result becomes a :class:`Document` with ``id`` = the URL, ``title`` and ``text`` = the
snippet (HTML tags stripped), so the ``/retrieve`` wire format stays Search-R1's. Providers
return ranks, not scores: a hit's score is ``1 / rank``.

Failure policy: every request waits for the provider's token bucket (``qps``, ``burst``);
timeouts, connection errors, HTTP 429, 5xx and malformed JSON are retried ``retries`` times
with exponential backoff, or after ``Retry-After`` seconds when the provider sends it; then
a :class:`SearchError` names the provider, the query and the last error. HTTP 401/403 is a
:class:`SearchAuthError` naming the key's variable; other 4xx fail at once.
"""
from __future__ import annotations

import email.utils
import hashlib
import html
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from searchr1.errors import ConfigError
from searchr1.search.base import Document, Hit, SearchAuthError, SearchError

_TAG = re.compile(r"<[^>]+>")


def _clean(s: object) -> str:
    """Plain text of a provider string: HTML tags removed, entities unescaped, spaces collapsed."""
    return " ".join(html.unescape(_TAG.sub("", str(s or ""))).split())


class MalformedReply(ValueError):
    """A provider answered 200 with a body that is not its documented JSON shape."""


def _rows(body: object, *path: str) -> list[dict]:
    """``body[path[0]][path[1]]...`` as a list of dicts, else :class:`MalformedReply`."""
    node = body
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise MalformedReply(f"no {'.'.join(path)!r} list in the reply")
        node = node[key]
    if not isinstance(node, list) or not all(isinstance(r, dict) for r in node):
        raise MalformedReply(f"{'.'.join(path)!r} is not a list of objects")
    return node


def _serper(body: object) -> list[tuple[str, str, str]]:
    return [(r.get("title"), r.get("snippet"), r.get("link")) for r in _rows(body, "organic")]


def _serpapi(body: object) -> list[tuple[str, str, str]]:
    if isinstance(body, dict) and "error" in body and "organic_results" not in body:
        if "hasn't returned any results" in str(body["error"]):  # SerpAPI's way of saying "no hits"
            return []
        raise SearchError(f"SerpAPI refused the search: {body['error']}")
    return [(r.get("title"), r.get("snippet"), r.get("link")) for r in _rows(body, "organic_results")]


def _brave(body: object) -> list[tuple[str, str, str]]:
    if isinstance(body, dict) and body.get("type") == "search" and "web" not in body:
        return []  # Brave leaves out the "web" section when nothing matched
    return [(r.get("title"), r.get("description"), r.get("url")) for r in _rows(body, "web", "results")]


def _searxng(body: object) -> list[tuple[str, str, str]]:
    return [(r.get("title"), r.get("content"), r.get("url")) for r in _rows(body, "results")]


@dataclass(frozen=True)
class Provider:
    """How one web search API is called and read."""

    name: str
    key_env: str | None
    """Environment variable holding the API key (None: the provider needs none)."""
    default_base: str | None
    """Public endpoint; None = self-hosted, the base URL must be given."""
    method: str
    request: Callable[[str, int, str | None], dict]
    """(query, topk, key) -> httpx request kwargs (params / json / headers)."""
    parse: Callable[[object], list[tuple[str, str, str]]]
    """decoded JSON -> [(title, text, url)] best first; raises MalformedReply."""
    max_results: int
    """Most results one request can return (topk beyond it is capped)."""
    default_qps: float
    cost_per_1k: float
    """Approximate list price in $ per 1,000 requests, for the cache's saved-cost log; override
    with ``WebConfig.cost_per_1k`` (your plan's price)."""

    @property
    def base_env(self) -> str:
        return f"{self.name.upper()}_BASE_URL"


PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("serper", "SERPER_API_KEY", "https://google.serper.dev/search", "POST",
             lambda q, k, key: {"json": {"q": q, "num": k}, "headers": {"X-API-KEY": key}},
             _serper, 100, 5.0, 1.0),
    Provider("serpapi", "SERPAPI_API_KEY", "https://serpapi.com/search", "GET",
             lambda q, k, key: {"params": {"engine": "google", "q": q, "num": k, "api_key": key}},
             _serpapi, 100, 5.0, 15.0),
    Provider("brave", "BRAVE_API_KEY", "https://api.search.brave.com/res/v1/web/search", "GET",
             lambda q, k, key: {"params": {"q": q, "count": k},
                                "headers": {"X-Subscription-Token": key, "Accept": "application/json"}},
             _brave, 20, 1.0, 5.0),
    Provider("searxng", None, None, "GET",
             lambda q, k, key: {"params": {"q": q, "format": "json"}},
             _searxng, 100, 5.0, 0.0),
)}


@dataclass
class WebConfig:
    provider: str = "serper"
    """One of :data:`PROVIDERS`: serper, serpapi, brave, searxng."""
    base_url: str = ""
    """Endpoint override ("" = ``<PROVIDER>_BASE_URL``, else the public endpoint); SearxNG: your instance,
    e.g. http://localhost:8080 (``/search`` is appended when missing)."""
    qps: float = 0.0
    """Requests per second allowed to this provider (0 = the provider's default, see :data:`PROVIDERS`)."""
    burst: int = 1
    """Requests that may go out back to back before ``qps`` applies (token-bucket capacity)."""
    max_concurrency: int = 4
    """Requests in flight at once for one batch of queries."""
    timeout_s: float = 15.0
    retries: int = 3
    """Extra attempts after a timeout, connection error, 429, 5xx or malformed reply."""
    backoff_s: float = 0.5
    """First retry delay; doubles per attempt up to ``max_backoff_s`` (a Retry-After header wins)."""
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0
    """Longest Retry-After honoured; a provider asking for more gets this."""
    params: dict = field(default_factory=dict)
    """Extra request parameters sent as-is (e.g. ``{"gl": "us", "hl": "en"}``); part of the cache key."""
    cost_per_1k: float = -1.0
    """$ per 1,000 requests for the saved-cost log (-1 = the provider's approximate list price)."""

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ConfigError(f"web search provider {self.provider!r} is unknown; use one of "
                              f"{', '.join(PROVIDERS)} (e.g. --backend web:serper).")
        if self.qps < 0 or self.burst < 1 or self.max_concurrency < 1:
            raise ConfigError("web search needs qps >= 0 (0 = provider default), burst >= 1, max_concurrency >= 1.")
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError("web search needs timeout_s > 0, retries >= 0, backoff_s >= 0 and max_backoff_s >= 0.")
        if not isinstance(self.params, dict):
            raise ConfigError(f"web search params must be a mapping, got {type(self.params).__name__}.")


class TokenBucket:
    """Thread-safe token bucket: ``acquire()`` blocks until a request may go out at ``rate``/s."""

    def __init__(self, rate: float, capacity: int = 1, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0 or capacity < 1:
            raise ValueError(f"TokenBucket needs rate > 0 and capacity >= 1, got {rate}, {capacity}.")
        self.rate, self.capacity, self._clock, self._sleep = rate, capacity, clock, sleep
        self._tokens, self._last = float(capacity), clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        with self._lock:  # one waiter at a time keeps the order fair and the arithmetic simple
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if wait:
                self._sleep(wait)
                self._tokens, self._last = 1.0, self._clock()
            self._tokens -= 1
            return wait


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def resolve_endpoint(config: WebConfig, api_key: str | None = None) -> tuple[str, str | None]:
    """(request URL, API key) for ``config``; a missing key or URL is a ConfigError naming the variable."""
    p = PROVIDERS[config.provider]
    key = api_key if api_key is not None else (os.environ.get(p.key_env) if p.key_env else None)
    if p.key_env and not key:
        raise ConfigError(f"web:{p.name} needs an API key: set the {p.key_env} environment variable.")
    base = config.base_url or os.environ.get(p.base_env) or p.default_base
    if not base:
        raise ConfigError(f"web:{p.name} is self-hosted: pass its URL (--web-base-url URL, web.base_url) or set "
                          f"{p.base_env}, e.g. http://localhost:8080.")
    if p.name == "searxng" and not base.rstrip("/").endswith("/search"):
        base = base.rstrip("/") + "/search"
    return base, key


class WebSearchRetriever:
    """``search(queries, topk)`` over a web search API (see the module docstring). Thread-safe.

    ``requests`` counts provider requests that succeeded, ``retried`` the retried attempts,
    ``failures`` the queries that failed for good.
    """

    def __init__(self, config: WebConfig | None = None, *, api_key: str | None = None):
        import httpx

        self.config = config = config or WebConfig()
        self.provider = p = PROVIDERS[config.provider]
        self.kind = f"web:{p.name}"
        self.url, self.api_key = resolve_endpoint(config, api_key)
        self.cost_per_1k = p.cost_per_1k if config.cost_per_1k < 0 else config.cost_per_1k
        self._bucket = TokenBucket(config.qps or p.default_qps, config.burst)
        self._httpx = httpx
        self._client = httpx.Client(timeout=config.timeout_s, headers={"User-Agent": "searchr1"})
        self._pool = ThreadPoolExecutor(config.max_concurrency, thread_name_prefix=f"searchr1-{p.name}")
        self._lock = threading.Lock()
        self.requests = self.retried = self.failures = 0

    def cache_identity(self) -> tuple[str, str]:
        """(backend id, checksum of the settings that change results) for the search cache.
        The URL and key are left out: a recording made against one endpoint replays anywhere."""
        settings = json.dumps({"provider": self.provider.name, "params": self.config.params}, sort_keys=True)
        return self.kind, hashlib.sha256(settings.encode()).hexdigest()[:16]

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        rows = self.search_each(queries, topk)
        failed = next((r for r in rows if isinstance(r, SearchError)), None)
        if failed is not None:
            raise failed
        return rows  # type: ignore[return-value]

    def search_each(self, queries: list[str], topk: int) -> list[list[Hit] | SearchError]:
        """Hits per query, or the SearchError of a query that failed: one bad query does not throw
        away the batch's paid answers (the search cache stores them before re-raising)."""
        if topk < 1:
            raise SearchError(f"topk={topk}: ask for at least 1 result.")
        futures = [self._pool.submit(self._one, q, topk) for q in queries]
        out: list[list[Hit] | SearchError] = []
        for f in futures:
            try:
                out.append(f.result())
            except SearchError as e:
                out.append(e)
        return out

    def _one(self, query: str, topk: int) -> list[Hit]:
        n = min(topk, self.provider.max_results)
        rows = self._request(query, n)
        hits = []
        for title, text, url in rows[:n]:
            url = str(url or "")
            hits.append(Hit(Document(id=url, title=_clean(title), text=_clean(text)), 1.0 / (len(hits) + 1)))
        return hits

    def _request(self, query: str, n: int) -> list[tuple[str, str, str]]:
        """The provider's rows for ``query``, after retries (raises SearchError / SearchAuthError)."""
        c, p = self.config, self.provider
        kwargs = p.request(query, n, self.api_key)
        where = "json" if "json" in kwargs else "params"  # extra parameters go where the provider reads them
        kwargs[where] = {**kwargs.get(where, {}), **c.params}
        last = "no attempt made"
        for attempt in range(c.retries + 1):
            if attempt:
                with self._lock:
                    self.retried += 1
                time.sleep(wait)
            self._bucket.acquire()
            wait = min(c.backoff_s * 2 ** attempt, c.max_backoff_s)
            try:
                resp = self._client.request(p.method, self.url, **kwargs)
            except self._httpx.HTTPError as e:  # timeout, refused connection, protocol error
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                after = parse_retry_after(resp.headers.get("retry-after"))
                if after is not None:
                    wait = min(after, c.max_retry_after_s)
                continue
            if resp.status_code in (401, 403):
                self._failed()
                raise SearchAuthError(f"{self.kind} refused the API key (HTTP {resp.status_code}: "
                                      f"{resp.text[:200]}); check the {p.key_env or 'instance'} setting.")
            if resp.status_code != 200:
                self._failed()
                raise SearchError(f"{self.kind} rejected the search for {query!r}: HTTP {resp.status_code}: "
                                  f"{resp.text[:200]}")
            try:
                rows = p.parse(resp.json())
            except ValueError as e:  # JSONDecodeError or MalformedReply
                last = f"malformed reply ({e}): {resp.text[:200]!r}"
                continue
            except SearchError:
                self._failed()
                raise
            with self._lock:
                self.requests += 1
            return rows
        self._failed()
        raise SearchError(f"{self.kind} search for {query!r} failed after {c.retries + 1} attempts at {self.url}; "
                          f"last error: {last}")

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_backend(spec: str) -> str:
    """The provider name of a ``web:NAME`` backend spec (raises ConfigError naming the valid ones)."""
    kind, _, name = spec.partition(":")
    if kind != "web" or name not in PROVIDERS:
        raise ConfigError(f"search backend {spec!r} is unknown; use index (a local index) or one of "
                          f"{', '.join('web:' + n for n in PROVIDERS)}.")
    return name
