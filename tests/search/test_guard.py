"""GuardedRetriever: failed searches are counted; an outage (or a rejected token) stops the run."""
import pytest

from searchr1.errors import SearchR1Error
from searchr1.search.base import Document, Hit, SearchAuthError, SearchError
from searchr1.search.guard import GuardedRetriever, RetrievalOutage, startup_check

HIT = Hit(Document("d0", "T", "text"), 1.0)


class Scripted:
    """Fails on the calls whose outcome is False; ``url`` like an HTTP client."""

    url = "http://127.0.0.1:9/retrieve"

    def __init__(self, outcomes, error="search at x failed after 4 attempts; last error: ConnectError"):
        self.outcomes, self.error, self.n = list(outcomes), error, 0

    def search(self, queries, topk):
        ok = self.outcomes[self.n] if self.n < len(self.outcomes) else self.outcomes[-1]
        self.n += 1
        if not ok:
            raise SearchError(self.error)
        return [[HIT] for _ in queries]


def _drive(guard, n):
    """Call ``n`` times; a SearchError is what the rollout would turn into an observation."""
    for _ in range(n):
        try:
            guard.search(["q"], 1)
        except SearchError:
            pass


def test_consecutive_failures_abort_with_a_fatal_error_not_a_search_error():
    guard = GuardedRetriever(Scripted([True, False]), max_consecutive_failures=3, min_searches=1000)
    _drive(guard, 3)                                   # 1 ok + 2 failures: still observations
    assert (guard.calls, guard.failures, guard.consecutive) == (3, 2, 2)
    with pytest.raises(RetrievalOutage, match="3 searches in a row failed") as e:
        guard.search(["q"], 1)
    assert not isinstance(e.value, SearchError) and isinstance(e.value, SearchR1Error)
    assert "data.search_failure_policy=record" in str(e.value) and "127.0.0.1:9" in str(e.value)


def test_a_success_resets_the_consecutive_count():
    guard = GuardedRetriever(Scripted([False, False, True] * 10), max_consecutive_failures=3,
                             max_failure_rate=1.0)
    _drive(guard, 30)                                  # never 3 in a row: no outage
    assert guard.counters() == {"search/calls_total": 30.0, "search/failures_total": 20.0,
                                "search/failure_rate": 20 / 30, "search/consecutive_failures": 0.0}


def test_failure_rate_aborts_only_after_min_searches():
    outcomes = [True, False] * 3 + [False]             # 4 of 7 fail, never 2 in a row until the 7th call
    guard = GuardedRetriever(Scripted(outcomes), max_consecutive_failures=50, max_failure_rate=0.5,
                             min_searches=7)
    _drive(guard, 6)                                   # 3 of 6 = 50%, not above, and < min_searches
    with pytest.raises(RetrievalOutage, match=r"4 of 7 searches failed \(57% > 50% allowed\)"):
        guard.search(["q"], 1)


def test_record_policy_only_counts():
    guard = GuardedRetriever(Scripted([False]), policy="record", max_consecutive_failures=1, min_searches=1)
    _drive(guard, 25)
    assert (guard.calls, guard.failures) == (25, 25)


def test_http_401_is_an_auth_error_never_an_observation():
    inner = Scripted([False], error="search request to http://h/retrieve was rejected: HTTP 401: bad token")
    guard = GuardedRetriever(inner, policy="record")
    with pytest.raises(SearchAuthError, match="data.retriever_token"):
        guard.search(["q"], 1)
    assert guard.failures == 0


def test_state_round_trips_and_bad_arguments_are_rejected():
    guard = GuardedRetriever(Scripted([False]), policy="record")
    _drive(guard, 4)
    other = GuardedRetriever(Scripted([True]))
    other.load_state_dict(guard.state_dict())
    assert other.counters() == guard.counters()
    with pytest.raises(ValueError, match="abort, record"):
        GuardedRetriever(Scripted([True]), policy="ignore")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GuardedRetriever(Scripted([True]), max_failure_rate=2.0)


def test_startup_check_against_a_dead_server_and_a_token_protected_one():
    import socket

    from searchr1.search.client import HTTPSearchClient
    from searchr1.search.server import BackgroundServer, ServerConfig, create_app

    with socket.socket() as s:                         # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = HTTPSearchClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(RetrievalOutage, match=f"127.0.0.1:{port}.*did not answer /health"):
        startup_check(GuardedRetriever(dead))
    with BackgroundServer(create_app(Scripted([True]), ServerConfig(token="s3cret", batch_wait_ms=0))) as srv:
        with pytest.raises(SearchAuthError, match="HTTP 401.*SEARCHR1_TOKEN"):
            startup_check(GuardedRetriever(HTTPSearchClient(srv.url, retries=0)))
        startup_check(GuardedRetriever(HTTPSearchClient(srv.url, retries=0, token="s3cret")))  # passes
