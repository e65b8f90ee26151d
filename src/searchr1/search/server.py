"""Search-R1-compatible retrieval server (FastAPI + uvicorn).

``POST /retrieve`` — exactly Search-R1's schema, so Search-R1/veRL clients work unchanged::

    request : {"queries": [str, ...], "topk": int | null, "return_scores": bool = false}
    response: {"result": [[{"document": {"id": ..., "contents": "\\"Title\\"\\ntext"}, "score": float}, ...], ...]}
              (with return_scores false the inner lists hold the bare document dicts)

``GET /health`` — ``{"status": "ok", "index_loaded": true, "retriever": kind, "corpus_size": N, ...}``
(open even when a token is set, so load balancers can probe it).

Bad input never reaches the retriever: an empty or non-list ``queries``, non-string or
over-long queries, too many queries, ``topk`` <= 0 or above ``max_topk``, malformed JSON
and oversized bodies (Content-Length and the bytes actually read) are answered with a
4xx ``{"detail": "..."}`` naming the problem and the limit. With a token set (``--token``
or ``SEARCHR1_TOKEN``), ``/retrieve`` needs ``Authorization: Bearer <token>``.
Concurrent requests are micro-batched (:mod:`searchr1.search.batcher`).
"""

import hmac
import json
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from searchr1.search.base import Hit, Retriever
from searchr1.search.batcher import MicroBatcher, ServerBusy
from searchr1.search.index import load_retriever, read_index_meta

TOKEN_ENV = "SEARCHR1_TOKEN"


@dataclass
class ServerConfig:
    default_topk: int = 3
    """topk used when a request sends null or omits it (Search-R1's default is 3)."""
    max_topk: int = 100
    """Largest topk a request may ask for."""
    max_queries: int = 512
    """Most queries in one request."""
    max_query_chars: int = 4096
    """Longest single query, in characters."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body, in bytes."""
    token: str | None = None
    """Bearer token required on /retrieve; None = no auth (bind loopback only then)."""
    batch_wait_ms: float = 1.0
    """How long the batcher waits for more requests after the first one (0 = only drain)."""
    max_batch_queries: int = 1024
    """Most queries per retriever call."""
    max_pending_queries: int = 65536
    """Queries allowed to wait; beyond this requests get 503."""

    def __post_init__(self):
        if not 1 <= self.default_topk <= self.max_topk:
            raise ValueError(f"need 1 <= default_topk ({self.default_topk}) <= max_topk ({self.max_topk}).")
        if self.max_queries < 1 or self.max_query_chars < 1 or self.max_body_bytes < 64:
            raise ValueError("max_queries and max_query_chars must be >= 1 and max_body_bytes >= 64.")
        if self.batch_wait_ms < 0 or self.max_batch_queries < 1:
            raise ValueError("batch_wait_ms must be >= 0 and max_batch_queries >= 1.")
        if self.token is not None and not self.token:
            raise ValueError("token is empty; pass a non-empty token or None for no auth.")


class RequestError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(payload: object, config: ServerConfig) -> tuple[list[str], int, bool]:
    """Validate a decoded /retrieve body → (queries, topk, return_scores); raises RequestError."""
    if not isinstance(payload, dict):
        raise RequestError(422, 'body must be a JSON object like {"queries": ["..."], "topk": 3}.')
    queries = payload.get("queries")
    if not isinstance(queries, list):
        raise RequestError(422, "'queries' must be a list of strings.")
    if not queries:
        raise RequestError(422, "'queries' is empty; send at least one query.")
    if len(queries) > config.max_queries:
        raise RequestError(422, f"too many queries: {len(queries)} > max_queries={config.max_queries}; "
                                "split the batch into several requests.")
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise RequestError(422, f"queries[{i}] is {type(q).__name__}, not a string.")
        if len(q) > config.max_query_chars:
            raise RequestError(422, f"queries[{i}] has {len(q)} characters > max_query_chars="
                                    f"{config.max_query_chars}; shorten the query.")
    topk = payload.get("topk")
    if topk is None:
        topk = config.default_topk
    elif isinstance(topk, bool) or not isinstance(topk, int):
        raise RequestError(422, f"'topk' must be an integer or null, got {type(topk).__name__}.")
    elif not 1 <= topk <= config.max_topk:
        raise RequestError(422, f"'topk'={topk} is out of range; use 1..{config.max_topk} (max_topk).")
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise RequestError(422, f"'return_scores' must be true or false, got {type(return_scores).__name__}.")
    return queries, topk, return_scores


def format_results(results: list[list[Hit]], return_scores: bool) -> dict:
    """Search-R1's response body."""
    if return_scores:
        return {"result": [[{"document": h.doc.to_json(), "score": h.score} for h in hits] for hits in results]}
    return {"result": [[h.doc.to_json() for h in hits] for hits in results]}


def create_app(retriever: Retriever, config: ServerConfig | None = None, *, kind: str | None = None):
    """The FastAPI app serving ``retriever``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    config = config or ServerConfig()
    batcher = MicroBatcher(retriever, config.batch_wait_ms / 1000, config.max_batch_queries,
                           config.max_pending_queries)
    kind = kind or getattr(retriever, "kind", type(retriever).__name__)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="searchr1 retrieval server", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.config = config

    def error(status: int, message: str, **headers) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers or None)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError(400, f"invalid Content-Length header {declared!r}.")
            if int(declared) > config.max_body_bytes:
                raise RequestError(413, f"body of {declared} bytes exceeds max_body_bytes={config.max_body_bytes}.")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise RequestError(413, f"body exceeds max_body_bytes={config.max_body_bytes}.")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/retrieve")
    async def retrieve(request: Request):
        if config.token is not None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), config.token.encode()):
                return error(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'.",
                             **{"WWW-Authenticate": "Bearer"})
        try:
            body = await read_body(request)
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise RequestError(400, f"malformed JSON body ({e}); send "
                                        '{"queries": ["..."], "topk": 3, "return_scores": true}.') from e
            queries, topk, return_scores = parse_request(payload, config)
            results = await batcher.submit(queries, topk)
        except RequestError as e:
            return error(e.status, str(e))
        except ServerBusy as e:
            return error(503, str(e), **{"Retry-After": "1"})
        except Exception as e:  # a retriever failure is a 500 for this request only
            return error(500, f"search failed: {type(e).__name__}: {e}")
        return Response(json.dumps(format_results(results, return_scores)), media_type="application/json")

    @app.get("/health")
    async def health():
        size = len(retriever) if hasattr(retriever, "__len__") else None  # e.g. a proxying client
        return {"status": "ok", "index_loaded": True, "retriever": kind, "corpus_size": size,
                "max_topk": config.max_topk, "max_queries": config.max_queries,
                "batches": batcher.batches, "queries_served": batcher.queries}

    return app


def serve(index_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          config: ServerConfig | None = None, log_level: str = "warning") -> None:
    """Load the index in ``index_dir`` and serve it until interrupted."""
    import uvicorn

    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    config = config or ServerConfig()
    if token is not None:
        config = ServerConfig(**{**config.__dict__, "token": token})
    kind = read_index_meta(index_dir)["kind"]
    app = create_app(load_retriever(index_dir), config, kind=kind)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """Run an app on a free loopback port in a daemon thread (tests, demos, benchmarks).

    ``with BackgroundServer(app) as srv: httpx.post(srv.url + "/retrieve", ...)``
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                                     lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="searchr1-server")
        self.url = ""

    def start(self, timeout: float = 20.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the retrieval server did not start (port in use or app error; see log).")
            time.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
