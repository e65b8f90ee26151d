"""Micro-batching: many concurrent requests, one ``search`` call.

Requests put ``(queries, topk)`` on a queue. One background task takes the first
waiting request, drains every other waiting request (and, if ``max_wait_s`` > 0,
waits that long for more) up to ``max_batch_queries``, runs a single
``retriever.search`` in a worker thread — the event loop stays free to accept and
parse more requests meanwhile, which then form the next batch — and hands each
request its own slice of the results, cut to its own ``topk``. Cutting is exact
because every retriever returns hits in a fixed (score desc, corpus index asc) order.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from searchr1.search.base import Hit, Retriever


class ServerBusy(RuntimeError):
    """More queries are waiting than ``max_pending_queries``."""


class MicroBatcher:
    def __init__(self, retriever: Retriever, max_wait_s: float = 0.001, max_batch_queries: int = 1024,
                 max_pending_queries: int = 65536):
        self.retriever = retriever
        self.max_wait_s = max_wait_s
        self.max_batch_queries = max_batch_queries
        self.max_pending_queries = max_pending_queries
        self.pending = 0
        self.batches = 0
        self.queries = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="searchr1-search")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, queries: list[str], topk: int) -> list[list[Hit]]:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called (the app's lifespan starts it).")
        if self.pending + len(queries) > self.max_pending_queries:
            raise ServerBusy(f"{self.pending} queries are already waiting (limit {self.max_pending_queries}); "
                             "retry later or send fewer concurrent requests.")
        fut = asyncio.get_running_loop().create_future()
        self.pending += len(queries)
        await self._queue.put((queries, topk, fut))
        return await fut

    async def _collect(self) -> list[tuple[list[str], int, asyncio.Future]]:
        queue = self._queue
        batch = [await queue.get()]
        n = len(batch[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while n < self.max_batch_queries:
            if not queue.empty():
                item = queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            batch.append(item)
            n += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [item for item in batch if not item[2].done()]  # a cancelled client leaves a done future
            queries = [q for item in live for q in item[0]]
            k = max((item[1] for item in live), default=1)
            self.pending -= sum(len(item[0]) for item in batch)
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.retriever.search, queries, k)
                if len(results) != len(queries):
                    raise RuntimeError(f"retriever returned {len(results)} result lists for {len(queries)} queries")
            except Exception as e:  # the error goes to every waiting request; the loop keeps serving
                for _, _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.queries += len(queries)
            start = 0
            for qs, topk, fut in live:
                part = [hits[:topk] for hits in results[start:start + len(qs)]]
                start += len(qs)
                if not fut.done():
                    fut.set_result(part)
