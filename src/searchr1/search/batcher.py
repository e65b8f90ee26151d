"""Fair micro-batching: many concurrent requests, few ``search`` calls, no starvation.

Every request is cut into chunks. One background task builds each batch round-robin over
the waiting requests — one chunk from each, up to ``max_batch_queries`` — runs a single ``retriever.search`` in a worker thread (the event
loop stays free to accept and parse more requests meanwhile), and hands each request its
own slice of the results, cut to its own ``topk``. A 4,096-query request therefore moves
forward one chunk per batch, and a 1-query request that arrives meanwhile rides in the
next batch instead of waiting for the whole big request. Cutting to ``topk`` is exact
because every retriever returns hits in a fixed (score desc, corpus index asc) order.

Chunk size: the ``8 × chunk_queries`` queries a batch aims at are shared among the
waiting requests, but no share is below ``chunk_queries``. A lone request thus moves in
big steps (few retriever calls), while under contention every batch stays short.

An optional ``encode`` function (e.g. JSON serialisation) runs on each chunk's results in
the worker thread, so the cost of building a big response is spread over its chunks too.

``in_flight`` batches may run at once (each in its own worker thread): with 2, the next batch
is encoded while the last one's FAISS search and JSON run, so a dense server keeps its encoder
threads busy. Parts of a request that finish out of order are put back in query order.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from searchr1.search.base import Hit, Retriever


class ServerBusy(RuntimeError):
    """More queries are waiting than ``max_pending_queries``."""


class _Job:
    """One request: its queries, the chunks handed out so far and the encoded parts back."""

    __slots__ = ("queries", "topk", "encode", "fut", "taken", "done", "parts")

    def __init__(self, queries: list[str], topk: int, encode: Callable, fut: asyncio.Future):
        self.queries, self.topk, self.encode, self.fut = queries, topk, encode, fut
        self.taken = 0                   # queries already put into a batch
        self.done = 0                    # queries whose results are back
        self.parts: dict[int, Any] = {}  # encoded chunk results by their first query's position

    @property
    def remaining(self) -> int:
        return len(self.queries) - self.taken


class MicroBatcher:
    def __init__(self, retriever: Retriever, max_wait_s: float = 0.001, max_batch_queries: int = 1024,
                 max_pending_queries: int = 65536, chunk_queries: int = 64, in_flight: int = 1):
        if max_batch_queries < 1 or chunk_queries < 1 or max_wait_s < 0 or in_flight < 1:
            raise ValueError("MicroBatcher needs max_batch_queries >= 1, chunk_queries >= 1, max_wait_s >= 0, "
                             "in_flight >= 1.")
        self.retriever = retriever
        self.in_flight = in_flight
        self.max_wait_s = max_wait_s
        self.max_batch_queries = max_batch_queries
        self.max_pending_queries = max_pending_queries
        self.chunk_queries = min(chunk_queries, max_batch_queries)
        self.pending = 0   # queries submitted and not yet put into a batch
        self.batches = 0
        self.queries = 0
        self._active: deque[_Job] = deque()
        self._fresh_turn = False  # whether the last batch was the new requests' turn
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()  # batches in flight
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.in_flight)
        self._executor = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="searchr1-search")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self._task, *self._running]:
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """Ranked hits per query, cut to ``topk``."""
        parts = await self.submit_encoded(queries, topk, list)
        return [row for part in parts for row in part]

    async def submit_encoded(self, queries: list[str], topk: int, encode: Callable[[list[list[Hit]]], Any]) -> list:
        """``encode(hits of one chunk)`` for each chunk of ``queries``, in order (encoded in the worker)."""
        if self._wakeup is None:
            raise RuntimeError("MicroBatcher.start() was not called (the app's lifespan starts it).")
        if self.pending + len(queries) > self.max_pending_queries:
            raise ServerBusy(f"{self.pending} queries are already waiting (limit {self.max_pending_queries}); "
                             "retry later or send fewer concurrent requests.")
        if not queries:
            return []
        job = _Job(list(queries), topk, encode, asyncio.get_running_loop().create_future())
        self.pending += len(queries)
        self._active.append(job)
        self._wakeup.set()
        return await job.fut

    def _take(self) -> list[tuple[_Job, int, int]]:
        """One batch of chunks, at most one per request and ≤ max_batch_queries queries.

        Requests that have not had a chunk yet go first, alone, every other batch: a small
        request waits for the batch in flight plus one short batch, however big the others are.
        The other batches go round-robin over every waiting request, so old requests keep moving.
        """
        jobs = [job for job in self._active if not job.fut.done()]
        for job in self._active:
            if job.fut.done():  # the client went away (cancelled): drop the rest of its work
                self.pending -= job.remaining
        fresh = [job for job in jobs if job.taken == 0]
        self._fresh_turn = not self._fresh_turn
        candidates = fresh if fresh and self._fresh_turn else jobs
        target = min(self.max_batch_queries, 8 * self.chunk_queries)
        share = max(self.chunk_queries, target // max(len(candidates), 1))
        pieces: list[tuple[_Job, int, int]] = []
        n = 0
        for job in candidates:
            take = min(share, job.remaining)
            if pieces and n + take > self.max_batch_queries:
                break
            pieces.append((job, job.taken, take))
            job.taken += take
            self.pending -= take
            n += take
        chosen = {id(job) for job, _, _ in pieces}
        # the requests left out keep their place; the served ones go to the back of the line
        self._active = deque([job for job in jobs if id(job) not in chosen] +
                             [job for job, _, _ in pieces if job.remaining])
        return pieces

    def _search_and_encode(self, pieces: list[tuple[_Job, int, int]]) -> list:
        """Worker thread: one retriever call for the whole batch, then each piece cut and encoded."""
        queries = [q for job, start, n in pieces for q in job.queries[start:start + n]]
        k = max(job.topk for job, _, _ in pieces)
        results = self.retriever.search(queries, k)
        if len(results) != len(queries):
            raise RuntimeError(f"retriever returned {len(results)} result lists for {len(queries)} queries")
        out, pos = [], 0
        for job, _, n in pieces:
            out.append(job.encode([hits[:job.topk] for hits in results[pos:pos + n]]))
            pos += n
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._active:
                self._wakeup.clear()
                await self._wakeup.wait()
                if self.max_wait_s > 0:  # let concurrent requests join the first batch
                    await asyncio.sleep(self.max_wait_s)
            await self._slots.acquire()  # a batch slot first: requests arriving meanwhile join the batch
            pieces = self._take()
            if not pieces:
                self._slots.release()
                continue
            task = loop.create_task(self._execute(pieces))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, pieces: list[tuple[_Job, int, int]]) -> None:
        """Run one batch in a worker thread and hand each request its parts."""
        try:
            encoded = await asyncio.get_running_loop().run_in_executor(self._executor, self._search_and_encode,
                                                                       pieces)
        except Exception as e:  # the error goes to every request in the batch; the loop keeps serving
            failed = {id(job): job for job, _, _ in pieces}
            for job in failed.values():
                if not job.fut.done():
                    job.fut.set_exception(e)
            self.pending -= sum(job.remaining for job in failed.values() if job in self._active)
            self._active = deque(job for job in self._active if id(job) not in failed)
            return
        finally:
            self._slots.release()
        self.batches += 1
        self.queries += sum(n for _, _, n in pieces)
        for (job, start, n), part in zip(pieces, encoded):
            job.parts[start] = part
            job.done += n
            if job.done == len(job.queries) and not job.fut.done():
                job.fut.set_result([job.parts[k] for k in sorted(job.parts)])
