"""A failure policy around a retriever: count failed searches and stop a run in an outage.

A single failed search is an observation the policy can read (the rollout turns the
:class:`SearchError` into one). A retrieval *outage* is different: when every search fails, a
training run would learn from searches that never happened and still end with exit 0.
:class:`GuardedRetriever` counts failed calls and, under ``policy="abort"``, raises
:class:`RetrievalOutage` (fatal, not a ``SearchError``) once ``max_consecutive_failures`` calls
in a row failed or the failure rate over at least ``min_searches`` calls exceeds
``max_failure_rate``; ``policy="record"`` only counts. A rejected credential (HTTP 401/403)
is never an observation: it raises :class:`SearchAuthError`.

:func:`startup_check` probes a retriever once before the first rollout (``/health`` for HTTP
clients, then one tiny search) so a dead server or a wrong token fails at once.
"""
from __future__ import annotations

import re
import threading

from searchr1.errors import SearchR1Error
from searchr1.search.base import Hit, Retriever, SearchAuthError, SearchError

POLICIES = ("abort", "record")
_AUTH_REJECTION = re.compile(r"\bHTTP 40[13]\b")


class RetrievalOutage(SearchR1Error):
    """Too many searches failed (or the server is unreachable at start): the run stops."""


def _where(retriever) -> str:
    url = getattr(retriever, "url", None)
    return f"the retrieval server at {url}" if url else f"the retriever ({type(retriever).__name__})"


def as_auth_error(exc: SearchError, retriever) -> SearchAuthError | None:
    """The :class:`SearchAuthError` a client's HTTP 401/403 rejection stands for, else None."""
    if not _AUTH_REJECTION.search(str(exc)):
        return None
    return SearchAuthError(f"{_where(retriever)} refused the credentials ({exc}); pass the token the server "
                           "was started with (`searchr1 serve --token ...`): `--token` for eval/ask, "
                           "data.retriever_token for train, or the SEARCHR1_TOKEN environment variable.")


class GuardedRetriever:
    """``search(queries, topk)`` of ``inner``, counting failures and applying the failure policy.

    ``calls`` and ``failures`` count calls (one batch of queries each); thread-safe.
    """

    def __init__(self, inner: Retriever, policy: str = "abort", max_consecutive_failures: int = 10,
                 max_failure_rate: float = 0.5, min_searches: int = 20):
        if policy not in POLICIES:
            raise ValueError(f"search failure policy {policy!r}: use one of {', '.join(POLICIES)}.")
        if max_consecutive_failures < 1 or min_searches < 1:
            raise ValueError("max_consecutive_failures and min_searches must be >= 1.")
        if not 0 <= max_failure_rate <= 1:
            raise ValueError(f"max_failure_rate={max_failure_rate}: use a value in [0, 1].")
        self.inner, self.policy = inner, policy
        self.max_consecutive, self.max_rate, self.min_searches = max_consecutive_failures, max_failure_rate, min_searches
        self.calls = self.failures = self.consecutive = 0
        self.last_error = ""
        self._lock = threading.Lock()

    @property
    def url(self) -> str | None:
        return getattr(self.inner, "url", None)

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        try:
            result = self.inner.search(queries, topk)
        except SearchAuthError:
            raise
        except SearchError as e:
            auth = as_auth_error(e, self.inner)
            if auth is not None:
                raise auth from e
            self._failed(e)
            raise
        with self._lock:
            self.calls += 1
            self.consecutive = 0
        return result

    def _failed(self, exc: SearchError) -> None:
        with self._lock:
            self.calls += 1
            self.failures += 1
            self.consecutive += 1
            self.last_error = str(exc)
            reason = self._outage()
        if reason and self.policy == "abort":
            raise RetrievalOutage(
                f"retrieval outage: {reason} ({_where(self.inner)}; last error: {exc}). The run stops so that "
                "failed searches are not trained into the policy; fix the retriever and continue with --resume, "
                "or set data.search_failure_policy=record to train through failures.") from exc

    def _outage(self) -> str | None:
        if self.consecutive >= self.max_consecutive:
            return f"{self.consecutive} searches in a row failed (limit {self.max_consecutive})"
        rate = self.failures / self.calls
        if self.calls >= self.min_searches and rate > self.max_rate:
            return (f"{self.failures} of {self.calls} searches failed ({rate:.0%} > "
                    f"{self.max_rate:.0%} allowed)")
        return None

    def counters(self) -> dict[str, float]:
        """Totals since the start (or the resumed checkpoint) for the metrics log, plus the wrapped
        retriever's own counters when it has them (the search cache's hit rate and savings)."""
        inner = getattr(self.inner, "counters", None)
        extra = inner() if callable(inner) else {}
        with self._lock:
            return {"search/calls_total": float(self.calls), "search/failures_total": float(self.failures),
                    "search/failure_rate": self.failures / self.calls if self.calls else 0.0,
                    "search/consecutive_failures": float(self.consecutive), **extra}

    def state_dict(self) -> dict[str, int]:
        with self._lock:
            return {"calls": self.calls, "failures": self.failures, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        with self._lock:
            self.calls, self.failures = int(state["calls"]), int(state["failures"])
            self.consecutive = int(state["consecutive"])


def startup_check(retriever) -> None:
    """One ``/health`` (HTTP clients) and one tiny search; a failure raises one clear error.

    Raises :class:`RetrievalOutage` when the retriever cannot answer and
    :class:`SearchAuthError` when the server refuses the credentials.
    """
    inner = getattr(retriever, "inner", retriever)
    if getattr(inner, "replays", False):
        return  # a search cache in replay mode answers from its file: a live probe would only be a miss
    health = getattr(inner, "health", None)
    if callable(health):
        import httpx  # HTTP clients only; httpx is the search extra's dependency

        try:
            health()
        except (httpx.HTTPError, OSError, ValueError) as e:
            raise RetrievalOutage(f"{_where(inner)} did not answer /health ({type(e).__name__}: {e}); start it "
                                  "(`searchr1 serve --index DIR`) or fix data.retriever_url.") from e
    try:
        inner.search(["health check"], 1)
    except SearchAuthError:
        raise
    except SearchError as e:
        auth = as_auth_error(e, inner)
        if auth is not None:
            raise auth from e
        raise RetrievalOutage(f"{_where(inner)} failed a test search before training ({e}); fix the retriever "
                              "before training.") from e
