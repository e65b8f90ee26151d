"""Search-R1-compatible retrieval server (FastAPI + uvicorn).

``POST /retrieve`` — exactly Search-R1's schema and behaviour, so its clients work unchanged::

    request : {"queries": [str, ...], "topk": int | null, "return_scores": bool = false}
    response: {"result": [[{"document": {"id": ..., "contents": "\\"Title\\"\\ntext"}, "score": float}, ...], ...]}
              (with return_scores false the inner lists hold the bare document dicts)

As in Search-R1's server, an empty ``queries`` list answers ``{"result": []}`` and a
``topk`` of 0 or null means the server's default. ``GET /health`` reports the index and
the limits (open even when a token is set, so load balancers can probe it).

Limits (each named by its ``searchr1 serve`` flag in the 4xx/503 it causes; the defaults
accept Search-R1's largest batches, 2,560 queries):

* per request: ``--max-queries``, ``--max-topk``, ``--max-hits`` (queries × topk),
  ``--max-query-chars``, ``--max-body-bytes``; only ``Content-Type: application/json``
  (415 otherwise, so a cross-origin "simple request" from a web page is refused);
  malformed JSON, huge integers and deep nesting are a 400; a body not received within
  ``--body-timeout`` seconds is a 408.
* global: concurrent requests (``--max-concurrent``), body bytes held by requests in
  flight (``--max-inflight-bytes``) and queued queries; beyond them 503 + ``Retry-After``.
* fairness: requests are cut into chunks (``--chunk-queries``) and batched round-robin
  (:mod:`searchr1.search.batcher`), so one huge request cannot starve small ones.

With a token (``--token`` or ``SEARCHR1_TOKEN``), ``/retrieve`` needs ``Authorization:
Bearer <token>``. The OpenAPI pages (``/docs``) are off unless ``--docs`` is given.
"""

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from searchr1.errors import UsageError
from searchr1.search import cache as search_cache
from searchr1.search.base import TOKEN_ENV, Hit, Retriever
from searchr1.search.batcher import MicroBatcher, ServerBusy
from searchr1.search.cache import CachedSearch, SearchCacheConfig
from searchr1.search.dense import LoadOptions, cpu_has_bf16
from searchr1.search.faiss_index import batch_flat_search_with_blas
from searchr1.search.index import load_retriever, read_index_meta
from searchr1.search.rerank import CrossEncoderReranker, RerankConfig
from searchr1.search.web import WebConfig, WebSearchRetriever, parse_backend

log = logging.getLogger(__name__)
AUTO_CHUNK = {"bm25": 8, "dense": 256, "qdrant": 256}
"""Chunk size per retriever kind when ``chunk_queries`` is 0; other kinds get 64."""
AUTO_IN_FLIGHT = {"dense": 2}
"""Batches run at once per retriever kind when ``batches_in_flight`` is 0; other kinds get 1."""


@dataclass
class ServerConfig:
    default_topk: int = 3
    """topk used when a request sends 0, null or omits it (Search-R1's default is 3)."""
    max_topk: int = 100
    """Largest topk a request may ask for (``--max-topk``)."""
    max_queries: int = 4096
    """Most queries in one request (``--max-queries``); Search-R1's GRPO scripts send up to 2,560."""
    max_hits: int = 32768
    """Most passages in one response, queries × topk (``--max-hits``); bounds a response's size."""
    max_query_chars: int = 4096
    """Longest single query, in characters (``--max-query-chars``)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body, in bytes (``--max-body-bytes``)."""
    token: str | None = None
    """Bearer token required on /retrieve; None = no auth (bind loopback only then)."""
    batch_wait_ms: float = 1.0
    """How long the batcher waits for more requests after the first one (0 = only drain)."""
    max_batch_queries: int = 1024
    """Most queries per retriever call."""
    chunk_queries: int = 0
    """Smallest chunk of a request per batch (``--chunk-queries``; a batch aims at 8× this, see
    :mod:`searchr1.search.batcher`); 0 = by retriever kind (:data:`AUTO_CHUNK`): small chunks keep
    small requests fast, large ones keep a fixed per-call cost (a FAISS Flat scan, a GPU encoder
    pass) from being paid per chunk."""
    batches_in_flight: int = 0
    """Batches searched at once (``--batches-in-flight``); 0 = by retriever kind (:data:`AUTO_IN_FLIGHT`):
    a dense server encodes the next batch while the last one is searched and serialised."""
    max_pending_queries: int = 65536
    """Queries allowed to wait for the retriever; beyond this requests get 503."""
    max_concurrent: int = 64
    """Most /retrieve requests in flight at once (``--max-concurrent``); beyond it 503."""
    max_inflight_bytes: int = 64 * 1024 * 1024
    """Most request-body bytes held by requests in flight (``--max-inflight-bytes``); beyond it 503."""
    body_timeout_s: float = 30.0
    """Seconds a client may take to send its body (``--body-timeout``); then 408."""
    docs: bool = False
    """Serve the OpenAPI pages (/docs, /redoc, /openapi.json)."""

    def __post_init__(self):
        if not 1 <= self.default_topk <= self.max_topk:
            raise ValueError(f"need 1 <= default_topk ({self.default_topk}) <= max_topk ({self.max_topk}).")
        if self.max_queries < 1 or self.max_query_chars < 1 or self.max_body_bytes < 64:
            raise ValueError("max_queries and max_query_chars must be >= 1 and max_body_bytes >= 64.")
        if self.max_hits < self.max_topk:
            raise ValueError(f"max_hits ({self.max_hits}) must be >= max_topk ({self.max_topk}).")
        if self.batch_wait_ms < 0 or self.max_batch_queries < 1 or self.chunk_queries < 0 or self.batches_in_flight < 0:
            raise ValueError("batch_wait_ms must be >= 0, max_batch_queries >= 1, and chunk_queries and "
                             "batches_in_flight >= 0 (0 = auto).")
        if self.max_concurrent < 1 or self.max_inflight_bytes < self.max_body_bytes or self.body_timeout_s <= 0:
            raise ValueError("max_concurrent must be >= 1, max_inflight_bytes >= max_body_bytes "
                             f"({self.max_body_bytes}) and body_timeout_s > 0.")
        if self.token is not None and not self.token:
            raise ValueError("token is empty; pass a non-empty token or None for no auth.")


class RequestError(ValueError):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def parse_request(payload: object, config: ServerConfig) -> tuple[list[str], int, bool]:
    """Validate a decoded /retrieve body → (queries, topk, return_scores); raises RequestError."""
    if not isinstance(payload, dict):
        raise RequestError(422, 'body must be a JSON object like {"queries": ["..."], "topk": 3}.')
    queries = payload.get("queries")
    if not isinstance(queries, list):
        raise RequestError(422, "'queries' must be a list of strings.")
    if len(queries) > config.max_queries:
        raise RequestError(422, f"too many queries: {len(queries)} > max_queries={config.max_queries} (the server's "
                                "--max-queries); restart `searchr1 serve` with a larger --max-queries.")
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise RequestError(422, f"queries[{i}] is {type(q).__name__}, not a string.")
        if len(q) > config.max_query_chars:
            raise RequestError(422, f"queries[{i}] has {len(q)} characters > max_query_chars="
                                    f"{config.max_query_chars} (the server's --max-query-chars); shorten the query.")
    topk = payload.get("topk")
    if isinstance(topk, bool) or not (topk is None or isinstance(topk, int)):
        raise RequestError(422, f"'topk' must be an integer or null, got {type(topk).__name__}.")
    if not topk:  # Search-R1's server: a falsy topk (0, null, missing) means its default
        topk = config.default_topk
    elif not 1 <= topk <= config.max_topk:
        raise RequestError(422, f"'topk'={topk} is out of range; use 1..{config.max_topk} (max_topk, the "
                                "server's --max-topk), or 0/null for its default.")
    if len(queries) * topk > config.max_hits:
        raise RequestError(422, f"{len(queries)} queries × topk {topk} = {len(queries) * topk} passages > "
                                f"max_hits={config.max_hits} (the server's --max-hits); lower topk or raise --max-hits.")
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise RequestError(422, f"'return_scores' must be true or false, got {type(return_scores).__name__}.")
    return queries, topk, return_scores


def format_results(results: list[list[Hit]], return_scores: bool) -> dict:
    """Search-R1's response body."""
    if return_scores:
        return {"result": [[{"document": h.doc.to_json(), "score": h.score} for h in hits] for hits in results]}
    return {"result": [[h.doc.to_json() for h in hits] for hits in results]}


def encode_rows(results: list[list[Hit]], return_scores: bool) -> bytes:
    """The rows of a response as JSON list items, without the brackets (joined by ``, ``)."""
    return json.dumps(format_results(results, return_scores)["result"], ensure_ascii=False)[1:-1].encode()


def is_json(content_type: str) -> bool:
    """A ``Content-Type`` header that announces JSON (parameters such as charset ignored)."""
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant-time comparison)."""
    given = authorization[7:] if authorization.lower().startswith("bearer ") else ""
    return hmac.compare_digest(given.encode(), token.encode())


class _Gate:
    """Counts requests and body bytes in flight (the event loop is single-threaded: no lock)."""

    def __init__(self, config: ServerConfig):
        self.config, self.requests, self.bytes = config, 0, 0

    def reserve(self, n: int) -> None:
        if self.bytes + n > self.config.max_inflight_bytes:
            raise RequestError(503, f"the server holds {self.bytes} body bytes in flight (limit "
                                    f"{self.config.max_inflight_bytes}, --max-inflight-bytes); retry later.",
                               {"Retry-After": "1"})
        self.bytes += n


async def _read_body(request, config: ServerConfig, gate: _Gate) -> tuple[bytes, int]:
    """The body (size-checked, timed out, counted in ``gate``) and the bytes reserved for it."""
    declared = request.headers.get("content-length")
    reserved = 0
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"invalid Content-Length header {declared!r}.")
        if int(declared) > config.max_body_bytes:
            raise RequestError(413, f"body of {declared} bytes exceeds max_body_bytes={config.max_body_bytes} "
                                    "(the server's --max-body-bytes).")
        gate.reserve(int(declared))
        reserved = int(declared)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(config.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_body_bytes:
                    raise RequestError(413, f"body exceeds max_body_bytes={config.max_body_bytes} "
                                            "(the server's --max-body-bytes).")
                if size > reserved:
                    gate.reserve(size - reserved)
                    reserved = size
                chunks.append(chunk)
    except TimeoutError:
        gate.bytes -= reserved
        raise RequestError(408, f"the request body was not received within {config.body_timeout_s:g} s "
                                "(the server's --body-timeout).") from None
    except BaseException:
        gate.bytes -= reserved
        raise
    return b"".join(chunks), reserved


def _decode(body: bytes) -> object:
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, "malformed JSON body: nested too deeply; send "
                                '{"queries": ["..."], "topk": 3, "return_scores": true}.') from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, or an integer beyond 4300 digits
        raise RequestError(400, f"malformed JSON body ({e}); send "
                                '{"queries": ["..."], "topk": 3, "return_scores": true}.') from None


async def _stream_result(parts: list[bytes]):
    yield b'{"result": ['
    for i, part in enumerate(parts):
        if i:
            yield b", "
        yield part
    yield b"]}"


def create_app(retriever: Retriever, config: ServerConfig | None = None, *, kind: str | None = None):
    """The FastAPI app serving ``retriever``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    config = config or ServerConfig()
    kind = kind or getattr(retriever, "kind", type(retriever).__name__)
    chunk = config.chunk_queries or AUTO_CHUNK.get(kind, 64)
    batcher = MicroBatcher(retriever, config.batch_wait_ms / 1000, config.max_batch_queries,
                           config.max_pending_queries, chunk,
                           in_flight=config.batches_in_flight or AUTO_IN_FLIGHT.get(kind, 1))
    gate = _Gate(config)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    pages = {} if config.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="searchr1 retrieval server", lifespan=lifespan, **pages)
    app.state.batcher, app.state.config, app.state.gate = batcher, config, gate

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    def check_auth(request: Request) -> None:
        if config.token is None:
            return
        if not bearer_matches(request.headers.get("authorization", ""), config.token):
            raise RequestError(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'.",
                               {"WWW-Authenticate": "Bearer"})

    async def answer(request: Request) -> list[bytes]:
        """The encoded rows of the response, one part per chunk (raises RequestError)."""
        check_auth(request)
        if not is_json(request.headers.get("content-type", "")):
            raise RequestError(415, "Content-Type must be application/json; send the body as JSON "
                                    "(e.g. requests.post(url, json=payload)).")
        body, reserved = await _read_body(request, config, gate)
        try:
            queries, topk, return_scores = parse_request(_decode(body), config)
            del body
            if not queries:  # Search-R1's server answers an empty batch with an empty result
                return []
            parts = await batcher.submit_encoded(queries, topk, lambda rows: encode_rows(rows, return_scores))
        finally:
            gate.bytes -= reserved
        return parts

    @app.post("/retrieve")
    async def retrieve(request: Request):
        if gate.requests >= config.max_concurrent:
            return error(503, f"{gate.requests} requests are in flight (limit {config.max_concurrent}, "
                              "--max-concurrent); retry later.", {"Retry-After": "1"})
        gate.requests += 1
        try:
            parts = await answer(request)
            if len(parts) <= 1:
                return Response(b'{"result": [' + b"".join(parts) + b"]}", media_type="application/json")
            # a big response goes out part by part: no multi-megabyte copy blocks the event loop,
            # and the transport's flow control paces it to the client
            return StreamingResponse(_stream_result(parts), media_type="application/json")
        except RequestError as e:
            return error(e.status, str(e), e.headers)
        except ServerBusy as e:
            return error(503, str(e), {"Retry-After": "1"})
        except Exception as e:  # a retriever failure is a 500 for this request only
            return error(500, f"search failed: {type(e).__name__}: {e}")
        finally:
            gate.requests -= 1

    @app.get("/health")
    async def health():
        stages = _stages(retriever)
        sized = next((r for r in stages if hasattr(r, "__len__")), None)  # none: a web backend, a proxying client
        body = {"status": "ok", "index_loaded": True, "retriever": kind,
                "corpus_size": len(sized) if sized is not None else None,
                "max_topk": config.max_topk, "max_queries": config.max_queries, "max_hits": config.max_hits,
                "chunk_queries": batcher.chunk_queries,
                "batches": batcher.batches, "queries_served": batcher.queries,
                "requests_in_flight": gate.requests}
        for stage in stages:
            if isinstance(stage, CachedSearch):
                body["search_cache"] = {"path": str(stage.cache.path), "mode": stage.config.mode, **stage.counters()}
            if isinstance(stage, CrossEncoderReranker):
                body["rerank"] = {"model": stage.config.model, "top_n": stage.config.top_n}
        return body

    return app


def _stages(retriever) -> list:
    """``retriever`` and the retrievers it wraps (``.inner``), outermost first."""
    out = [retriever]
    while getattr(out[-1], "inner", None) is not None and len(out) < 16:
        out.append(out[-1].inner)
    return out


def build_backend(backend: str = "index", index_dir: str | Path | None = None, *, web: WebConfig | None = None,
                  cache: SearchCacheConfig | None = None, rerank: RerankConfig | None = None,
                  options: LoadOptions | None = None) -> tuple[Retriever, str]:
    """(retriever, kind) for ``searchr1 serve``: a local index (``backend="index"``) or a web search
    backend (``"web:serper"``, ...), behind the search cache and then the reranker when configured
    (the cache stores the backend's top-n, so rescoring never costs a provider request)."""
    if backend == "index":
        if not index_dir:
            raise UsageError("serving a local index needs --index DIR; for web search pass --backend web:NAME.")
        meta = read_index_meta(index_dir)
        retriever, kind = load_retriever(index_dir, options), meta["kind"]
        ident = search_cache.identity(retriever, meta)
    else:
        if index_dir:
            raise UsageError(f"--backend {backend} searches the web; leave out --index {index_dir}.")
        if options is not None and options != LoadOptions():
            raise UsageError(f"--backend {backend} searches the web: --mmap, --nprobe, --ef-search, --k-factor "
                             "and --faiss-gpu apply to a local index; leave them out.")
        provider = parse_backend(backend)
        web = WebConfig(**{**(web or WebConfig()).__dict__, "provider": provider})
        retriever = WebSearchRetriever(web)
        kind, ident = retriever.kind, retriever.cache_identity()
    retriever = search_cache.wrap(retriever, cache, *ident)
    if rerank is not None and rerank.model:
        retriever = CrossEncoderReranker(retriever, rerank)
    return retriever, kind


def resolve_token(token: str | None) -> str | None:
    """``--token`` if given, else ``$SEARCHR1_TOKEN``; an empty one is an error, never 'no auth'."""
    if token is not None:
        if not token.strip():
            raise UsageError("--token is empty; pass a non-empty token, or leave --token out for no auth.")
        return token
    env = os.environ.get(TOKEN_ENV)
    if env is not None and not env.strip():
        raise UsageError(f"{TOKEN_ENV} is set but empty; set it to a token, or unset it for no auth.")
    return env


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def serve(index_dir: str | Path | None, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          config: ServerConfig | None = None, log_level: str = "warning", *, backend: str = "index",
          web: WebConfig | None = None, cache: SearchCacheConfig | None = None,
          rerank: RerankConfig | None = None, options: LoadOptions | None = None) -> None:
    """Load the index in ``index_dir`` (or open the web ``backend``) and serve it until interrupted;
    ``cache`` and ``rerank`` add those stages (:func:`build_backend`); ``options``: mmap, nprobe,
    efSearch, GPUs of a local index."""
    import uvicorn

    token = resolve_token(token)
    config = config or ServerConfig()
    if token is not None:
        config = ServerConfig(**{**config.__dict__, "token": token})
    if config.token is None and not is_loopback(host):
        log.warning("serving on %s without a token: anyone who can reach this address can query the "
                    "index; set --token or %s.", host, TOKEN_ENV)
    options = _server_load_options(backend, index_dir, options)
    if options.encoder_workers is not None:  # a dense index: batches through BLAS (see faiss_index)
        batch_flat_search_with_blas()
    retriever, kind = build_backend(backend, index_dir, web=web, cache=cache, rerank=rerank,
                                    options=options)
    app = create_app(retriever, config, kind=kind)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        for stage in _stages(retriever):
            if isinstance(stage, CachedSearch):
                stage.close()  # logs the hit rate and the requests saved


def _server_load_options(backend: str, index_dir, options: LoadOptions | None) -> LoadOptions:
    """The query encoder's settings left unset for a dense index, as a server wants them: one encoder
    thread per CPU core (the server owns its process, so single-threaded kernels on every core are
    safe, see ``Encoder``) and bf16 weights where the CPU has bf16 matrix instructions."""
    options = options or LoadOptions()
    if backend != "index" or not index_dir or read_index_meta(index_dir)["kind"] != "dense":
        return options
    workers = (os.cpu_count() or 1) if options.encoder_workers is None else options.encoder_workers
    dtype = options.encoder_dtype or ("bf16" if cpu_has_bf16() else "fp32")
    return dataclasses.replace(options, encoder_workers=workers, encoder_dtype=dtype)


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
