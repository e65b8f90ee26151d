"""A persistent search cache with record / replay, in one SQLite file.

``CachedSearch(inner, SearchCacheConfig(path="runs/search.sqlite", mode="rw"), backend, checksum)``
wraps any :class:`~searchr1.search.base.Retriever` (a web backend, a local index, an HTTP client).
A result is keyed by ``(backend, checksum, normalised query, topk)``: ``backend`` names the
retriever (``web:serper``, ``bm25``), ``checksum`` the index or the settings that change its
results (:func:`index_checksum`, ``WebSearchRetriever.cache_identity``), so one file can hold
several backends and never serves one index's hits for another.

Modes (:data:`MODES`):

* ``off``     no cache (:func:`wrap` returns the retriever itself);
* ``rw``      read hits from the file, search the misses live and store them;
* ``record``  search every query live and store (replacing) the result;
* ``replay``  answer only from the file; a miss raises :class:`CacheMiss` naming the query and
  the file (never a :class:`SearchError`: the rollout would turn it into an observation, and a
  replayed run must not silently differ from the recorded one).

Queries are normalised by Unicode NFKC and whitespace collapsing only: lower-casing would
merge queries a cased encoder or a web engine may answer differently, and replay must equal
live. The file uses WAL mode and a busy timeout; each write is one ``BEGIN IMMEDIATE``
transaction, so DP ranks and server workers in other processes can share it; ``replay`` opens
it read-only. ``rw`` keeps the first stored result of a key (``INSERT OR IGNORE``): every reader
sees the same answer. When the inner retriever reports per-query failures (``search_each``, the
web backends), the answers that came back are stored before the first failure is re-raised.
Hit rate and saved requests (and their $ at ``cost_per_1k``) are logged every ``log_every``
lookups and by :meth:`CachedSearch.close`; :meth:`CachedSearch.counters` returns them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from searchr1.errors import ConfigError, SearchR1Error
from searchr1.search.base import Document, Hit, Retriever, Wrapper

log = logging.getLogger(__name__)
MODES = ("off", "rw", "record", "replay")
SCHEMA = 1
"""Layout version of the cache file; another version is refused with a message."""
_BATCH = 500  # keys per SELECT (SQLite's host-parameter limit is 999 in old builds)


class CacheMiss(SearchR1Error):
    """Replay mode met a query the cache file does not hold."""


@dataclass
class SearchCacheConfig:
    path: str = ""
    """SQLite file shared by every process that searches ("" = no cache)."""
    mode: str = "off"
    """off | rw | record | replay (see :mod:`searchr1.search.cache`)."""
    cost_per_1k: float = -1.0
    """$ per 1,000 requests avoided, for the saved-cost log (-1 = the backend's own figure, 0 for local indexes)."""
    log_every: int = 1000
    """Log the hit rate every this many lookups (0 = only at close)."""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"search cache mode {self.mode!r} is unknown; use one of {', '.join(MODES)}.")
        if self.mode != "off" and not self.path:
            raise ConfigError(f"search cache mode {self.mode} needs a file: --search-cache PATH "
                              "(search.cache.path in a config).")
        if self.log_every < 0:
            raise ConfigError(f"search cache log_every={self.log_every}: use a value >= 0.")


def normalize_query(query: str) -> str:
    """The cache key's form of a query: NFKC, runs of whitespace as one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", query).split())


def index_checksum(meta: dict) -> str:
    """Checksum of an index directory's ``index.json``: its passages' sha256 and retriever settings."""
    ident = {"corpus": (meta.get("corpus") or {}).get("sha256"), "retriever": meta.get("retriever")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _encode(hits: list[Hit]) -> str:
    return json.dumps([[h.doc.id, h.doc.title, h.doc.text, h.score] for h in hits], ensure_ascii=False)


def _decode(s: str) -> list[Hit]:
    return [Hit(Document(id=i, title=t, text=x), float(score)) for i, t, x, score in json.loads(s)]


class SearchCache:
    """The SQLite file: one connection per process and thread, WAL mode, safe across processes.
    ``readonly`` (replay) opens it read-only: a replaying process never takes a write lock."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0, readonly: bool = False):
        self.path = Path(path)
        self.timeout_s, self.readonly = timeout_s, readonly
        self._local = threading.local()
        if self.path.parent and not self.path.parent.exists():
            raise ConfigError(f"search cache {self.path}: the folder {self.path.parent} does not exist; create it.")
        self._setup()

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL. The switch needs the file to itself and SQLite answers "database is
        locked" at once rather than waiting (the busy timeout does not cover it), so when another process is
        opening the same new file it is retried until ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # a forked child opens its own connection
            try:
                if self.readonly:
                    conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                           timeout=self.timeout_s, isolation_level=None)
                else:
                    conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
                    self._enable_wal(conn)
                    conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            except sqlite3.DatabaseError as e:
                raise ConfigError(f"search cache {self.path} is not a usable SQLite file ({e}); move it away or "
                                  "pass another --search-cache path.") from None
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _setup(self) -> None:
        conn = self._conn()
        try:
            if self.readonly:
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                return self._check_schema(found)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS results (backend TEXT NOT NULL, checksum TEXT NOT NULL, "
                         "query TEXT NOT NULL, topk INTEGER NOT NULL, hits TEXT NOT NULL, created REAL NOT NULL, "
                         "PRIMARY KEY (backend, checksum, query, topk)) WITHOUT ROWID")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ConfigError(f"search cache {self.path} is not a usable SQLite file ({e}); move it away or "
                              "pass another --search-cache path.") from None
        self._check_schema(conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone())

    def _check_schema(self, row: tuple | None) -> None:
        if row is None or row[0] != str(SCHEMA):
            raise ConfigError(f"search cache {self.path} has layout {row and row[0]}, not {SCHEMA}; use the searchr1 "
                              "version that wrote it or start a new cache file.")

    def get_many(self, backend: str, checksum: str, queries: list[str], topk: int) -> dict[str, list[Hit]]:
        """The stored hits of those (normalised) ``queries`` that are in the file."""
        found: dict[str, list[Hit]] = {}
        conn = self._conn()
        for s in range(0, len(queries), _BATCH):
            part = queries[s:s + _BATCH]
            rows = conn.execute(
                f"SELECT query, hits FROM results WHERE backend = ? AND checksum = ? AND topk = ? "
                f"AND query IN ({','.join('?' * len(part))})", (backend, checksum, topk, *part)).fetchall()
            found.update((q, _decode(h)) for q, h in rows)
        return found

    def put_many(self, backend: str, checksum: str, items: list[tuple[str, list[Hit]]], topk: int,
                 replace: bool = False) -> None:
        """Store (normalised query, hits) pairs in one transaction; keeps existing rows unless ``replace``."""
        if not items:
            return
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        now = time.time()
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(f"{verb} INTO results VALUES (?, ?, ?, ?, ?, ?)",
                             [(backend, checksum, q, topk, _encode(h), now) for q, h in items])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None


class CachedSearch(Wrapper):
    """``search(queries, topk)`` of ``inner`` through a :class:`SearchCache` (see the module docstring).

    ``hits`` counts queries answered from the file (or by a duplicate in the same batch),
    ``misses`` the queries searched live. Thread-safe.
    """

    def __init__(self, inner: Retriever, config: SearchCacheConfig, backend: str, checksum: str = "",
                 cost_per_1k: float | None = None):
        if config.mode == "off":
            raise ConfigError("CachedSearch with mode off: use wrap(), which leaves the retriever alone.")
        if config.mode == "replay" and not Path(config.path).is_file():
            raise ConfigError(f"search cache {config.path} does not exist, so there is nothing to replay; record it "
                              "first (--search-cache-mode rw or record).")
        self.inner, self.config, self.backend, self.checksum = inner, config, backend, checksum
        self.cache = SearchCache(config.path, readonly=config.mode == "replay")
        own = getattr(inner, "cost_per_1k", 0.0) if cost_per_1k is None else cost_per_1k
        self.cost_per_1k = own if config.cost_per_1k < 0 else config.cost_per_1k
        self.hits = self.misses = 0
        self._logged_at = 0
        self._lock = threading.Lock()

    @property
    def health(self):
        """The wrapped HTTP client's ``health`` (None for other retrievers): startup probes reach the server."""
        return getattr(self.inner, "health", None)

    @property
    def replays(self) -> bool:
        """True in replay mode: answers come from the file, so there is nothing live to probe."""
        return self.config.mode == "replay"

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        keys = [normalize_query(q) for q in queries]
        unique = list(dict.fromkeys(keys))
        mode = self.config.mode
        found = {} if mode == "record" else self.cache.get_many(self.backend, self.checksum, unique, topk)
        todo = [k for k in unique if k not in found]
        if todo and mode == "replay":
            raise CacheMiss(f"search cache replay: {len(todo)} of {len(unique)} queries are not in "
                            f"{self.cache.path}, e.g. {todo[0]!r} (topk {topk}, backend {self.backend}, checksum "
                            f"{self.checksum or '-'}); record them first with --search-cache-mode rw, or run live.")
        failed = None
        if todo:
            first = {k: q for q, k in reversed(list(zip(queries, keys)))}  # the first spelling of each key
            each = getattr(self.inner, "search_each", None)  # per-query errors: keep the answers that came back
            fresh = each([first[k] for k in todo], topk) if callable(each) else \
                self.inner.search([first[k] for k in todo], topk)
            stored = [(k, hits) for k, hits in zip(todo, fresh) if not isinstance(hits, Exception)]
            failed = next((hits for hits in fresh if isinstance(hits, Exception)), None)
            self.cache.put_many(self.backend, self.checksum, stored, topk, replace=mode == "record")
            found.update(stored)
        with self._lock:
            self.misses += len(todo)
            self.hits += len(queries) - len(todo)
            due = self.config.log_every and self.hits + self.misses - self._logged_at >= self.config.log_every
            if due:
                self._logged_at = self.hits + self.misses
        if due:
            log.info(self.summary())
        if failed is not None:
            raise failed  # after storing the rest: the rollout's per-query retry finds them in the file
        return [found[k] for k in keys]

    def counters(self) -> dict[str, float]:
        with self._lock:
            total = self.hits + self.misses
            return {"search_cache/hits": float(self.hits), "search_cache/misses": float(self.misses),
                    "search_cache/hit_rate": self.hits / total if total else 0.0,
                    "search_cache/requests_saved": float(self.hits),
                    "search_cache/usd_saved": self.hits * self.cost_per_1k / 1000}

    def summary(self) -> str:
        c = self.counters()
        total = c["search_cache/hits"] + c["search_cache/misses"]
        return (f"search cache {self.cache.path} ({self.config.mode}, {self.backend}): {c['search_cache/hits']:.0f}/"
                f"{total:.0f} lookups hit ({c['search_cache/hit_rate']:.1%}), {c['search_cache/requests_saved']:.0f} "
                f"requests saved (~${c['search_cache/usd_saved']:.2f} at ${self.cost_per_1k:g} per 1k)")

    def close(self) -> None:
        if self.hits + self.misses:
            log.info(self.summary())
        self.cache.close()


def wrap(retriever: Retriever, config: SearchCacheConfig | None, backend: str, checksum: str = "") -> Retriever:
    """``retriever`` behind the cache ``config`` describes; itself when the mode is off or no config."""
    if config is None or config.mode == "off":
        return retriever
    return CachedSearch(retriever, config, backend, checksum)


def identity(retriever: Retriever, index_meta: dict | None = None) -> tuple[str, str]:
    """(backend, checksum) of a retriever for the cache key: its ``cache_identity()`` when it has one,
    else the index's kind and :func:`index_checksum` of ``index_meta``, else its URL (an HTTP client)."""
    own = getattr(retriever, "cache_identity", None)
    if callable(own):
        return own()
    if index_meta is not None:
        return str(index_meta.get("kind")), index_checksum(index_meta)
    url = getattr(retriever, "url", None)
    if url:
        return "server", hashlib.sha256(str(url).encode()).hexdigest()[:16]
    raise ConfigError(f"the search cache cannot key results of {type(retriever).__name__}: it has no index "
                      "metadata, cache_identity() or URL.")
