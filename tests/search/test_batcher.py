"""The fair micro-batcher, without HTTP: chunking, round-robin, results never mixed."""
import asyncio

import pytest

from searchr1.search.batcher import MicroBatcher, ServerBusy


class Recording:
    """Records every retriever call (the batches) and answers with the real BM25 index."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def search(self, queries, topk):
        self.calls.append(list(queries))
        return self.inner.search(queries, topk)


def _run(coro_fn):
    return asyncio.run(coro_fn())


def test_a_small_request_does_not_wait_for_a_big_one(tiny_bm25):
    rec = Recording(tiny_bm25)
    big_q = [f"capital city {i}" for i in range(40)]

    async def main():
        b = MicroBatcher(rec, max_wait_s=0, max_batch_queries=8, chunk_queries=4)
        b.start()
        big = asyncio.create_task(b.submit(big_q, 2))
        await asyncio.sleep(0)
        small = asyncio.create_task(b.submit(["highest mountain"], 1))
        out = await asyncio.gather(big, small)
        await b.stop()
        return out, b

    (big_res, small_res), b = _run(main)
    assert small_res == tiny_bm25.search(["highest mountain"], 1)
    assert big_res == tiny_bm25.search(big_q, 2)
    where = next(i for i, call in enumerate(rec.calls) if "highest mountain" in call)
    assert where <= 2 and len(rec.calls) >= 4  # the big request took several batches; the small one rode early
    assert all(len(call) <= 8 for call in rec.calls) and b.pending == 0 and b.queries == 41


def test_many_requests_share_batches_round_robin(tiny_bm25):
    rec = Recording(tiny_bm25)
    requests = [([f"python {i}-{j}" for j in range(n)], 1 + i % 3) for i, n in enumerate([9, 1, 5, 12, 3])]

    async def main():
        b = MicroBatcher(rec, max_wait_s=0.01, max_batch_queries=8, chunk_queries=3)
        b.start()
        out = await asyncio.gather(*(b.submit(q, k) for q, k in requests))
        await b.stop()
        return out

    results = _run(main)
    for (queries, topk), got in zip(requests, results):
        assert got == tiny_bm25.search(queries, topk)
    assert sum(len(c) for c in rec.calls) == 30 and all(len(c) <= 8 for c in rec.calls)
    assert len(rec.calls) < 30 / 3 + 3  # batched together, not one call per chunk


def test_failures_reach_only_the_batch_and_busy_is_reported(tiny_bm25, fails_once):
    async def main():
        b = MicroBatcher(fails_once, max_wait_s=0, chunk_queries=2, max_pending_queries=10)
        b.start()
        with pytest.raises(RuntimeError, match="disk on fire"):
            await b.submit(["a", "b", "c", "d"], 1)  # its first chunk fails: the whole request fails
        assert b.pending == 0
        ok = await b.submit(["capital"], 1)
        with pytest.raises(ServerBusy, match="limit 10"):
            await b.submit(["q"] * 11, 1)
        assert await b.submit([], 1) == []
        await b.stop()
        return ok

    assert _run(main) == tiny_bm25.search(["capital"], 1)


def test_batches_in_flight_overlap_and_parts_come_back_in_order(tiny_bm25):
    """in_flight=2: the second chunk of a request finishes first (its batch is faster), yet the
    request's results are in query order; two retriever calls really ran at the same time."""
    import threading
    import time

    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    class SlowFirst:
        def search(self, queries, topk):
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.3 if "slow" in queries[0] else 0.02)
            with lock:
                state["now"] -= 1
            return tiny_bm25.search(queries, topk)

    queries = ["slow capital"] + [f"python {i}" for i in range(7)]

    async def main():
        b = MicroBatcher(SlowFirst(), max_wait_s=0, max_batch_queries=4, chunk_queries=4, in_flight=2)
        b.start()
        out = await b.submit(queries, 2)
        await b.stop()
        return out, b

    got, b = _run(main)
    assert got == tiny_bm25.search(queries, 2)
    assert state["most"] == 2 and b.batches == 2 and b.pending == 0


def test_in_flight_must_be_positive(tiny_bm25):
    with pytest.raises(ValueError, match="in_flight"):
        MicroBatcher(tiny_bm25, in_flight=0)
