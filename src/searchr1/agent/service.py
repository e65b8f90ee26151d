"""The trained agent as a service: an OpenAI-compatible ``POST /v1/chat/completions``.

Any OpenAI client library can call it. The last user message is the question; the agent runs the
search protocol on the rollout engine (the trainer's and the evaluation's loop: same template, parser and
budgets) and the reply's ``message.content`` is its ``<answer>``. The trajectory comes in an extension
field ``searchr1`` of the response::

    {"answer": str | null, "finish_reason": "answer" | "eos" | "max_turns" | "budget", "turns": int,
     "searches": [{"query": str, "error": str | null,
                   "passages": [{"id": str, "title": str, "text": str, "score": float}]}],
     "citations": [{"id": str, "title": str}]}      # every passage retrieved, first seen first

``"stream": true`` sends server-sent events: chunks in OpenAI's ``chat.completion.chunk`` shape whose
``searchr1_event`` field carries the trajectory as it unfolds (``{"type": "turn", "text"}``,
``{"type": "search", "query", "passages", "error"}``); the answer arrives as ``delta.content``, then a
final chunk with ``finish_reason`` and ``searchr1`` (as above), then ``data: [DONE]``.

Concurrent requests are batched: one worker thread runs the engine on up to ``max_batch`` waiting
questions at a time. Requests are bounded (body size, question length, waiting requests: 503 with
``Retry-After`` beyond ``max_pending``); a bearer token is required when ``token`` is set; errors use
OpenAI's ``{"error": {"message", "type"}}`` shape.

``GET /`` is a web page (``agent/static``: plain HTML, CSS and JS, no build step, nothing loaded from
elsewhere) that asks through the streaming endpoint and shows the trajectory turn by turn; it asks
for the token when ``/health`` reports ``auth_required``.
"""

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from searchr1.data.prompts import apply_chat_template, make_prompt
from searchr1.rollout.backends.base import Backend
from searchr1.rollout.config import RolloutConfig
from searchr1.rollout.engine import RolloutEngine
from searchr1.rollout.types import Trajectory
from searchr1.search.base import Hit, Retriever
from searchr1.search.server import bearer_matches, is_json

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {   # the page loads only its own files and talks only to this service
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class AgentConfig:
    model_name: str = "searchr1-agent"
    """The ``model`` the service reports."""
    template: str = "search-r1"
    """Prompt template (a name or a raw template with ``{question}``); the chat template wraps it."""
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(do_sample=False, return_logprobs=False))
    """Turns, top-k, token budgets; greedy by default."""
    max_batch: int = 8
    """Questions per engine run."""
    max_wait_ms: float = 5.0
    """How long the worker waits for more questions after the first one."""
    max_pending: int = 256
    """Requests allowed to wait; beyond this: 503."""
    max_question_chars: int = 4000
    max_body_bytes: int = 1 << 20
    token: str | None = None
    """Bearer token required on /v1/*; None = open (bind loopback only then)."""

    def __post_init__(self):
        if self.max_batch < 1 or self.max_pending < 1 or self.max_question_chars < 1 or self.max_body_bytes < 64:
            raise ValueError("max_batch, max_pending, max_question_chars must be >= 1 and max_body_bytes >= 64")
        if self.token is not None and not self.token:
            raise ValueError("token is empty; pass a non-empty token or None for no auth")


@dataclass
class _Job:
    question: str
    on_event: Callable[[str, dict], None]
    future: Future


class AgentRunner:
    """Runs the engine in one worker thread on batches of waiting questions."""

    def __init__(self, backend: Backend, tokenizer, retriever: Retriever, config: AgentConfig):
        self.backend, self.tokenizer, self.retriever, self.config = backend, tokenizer, retriever, config
        self._queue: queue.Queue[_Job] = queue.Queue()
        self.batches = self.questions = 0
        self._thread = threading.Thread(target=self._work, daemon=True, name="searchr1-agent")
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, question: str, on_event: Callable[[str, dict], None] = lambda kind, payload: None) -> Future:
        fut: Future = Future()
        self._queue.put(_Job(question, on_event, fut))
        return fut

    def _work(self) -> None:
        while True:
            jobs = [self._queue.get()]
            deadline = time.monotonic() + self.config.max_wait_ms / 1000
            while len(jobs) < self.config.max_batch:
                try:
                    jobs.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        prompts = [apply_chat_template(self.tokenizer, make_prompt(j.question, self.config.template)) for j in jobs]

        def on_event(row: int, kind: str, payload: dict) -> None:
            jobs[row].on_event(kind, payload)

        engine = RolloutEngine(self.backend, self.retriever, self.tokenizer, self.config.rollout, on_event=on_event)
        try:
            trajs = engine.run(prompts)
        except Exception as e:   # the batch's requests fail with the error; the worker keeps serving
            for j in jobs:
                j.future.set_exception(e)
            return
        self.batches += 1
        self.questions += len(jobs)
        for j, t in zip(jobs, trajs):
            j.future.set_result(t)


def passage_json(h: Hit) -> dict:
    return {"id": h.doc.id, "title": h.doc.title, "text": h.doc.text, "score": round(float(h.score), 4)}


def trajectory_json(t: Trajectory, searches: list[dict]) -> dict:
    cited: dict[str, str] = {}
    for s in searches:
        for p in s["passages"]:
            cited.setdefault(p["id"], p["title"])
    return {"answer": t.answer, "finish_reason": t.finish_reason, "turns": t.turns, "searches": searches,
            "citations": [{"id": i, "title": title} for i, title in cited.items()]}


class BadRequest(ValueError):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


def parse_chat_request(payload: object, config: AgentConfig) -> tuple[str, bool]:
    """(question, stream) from a chat-completions body; BadRequest names what is wrong."""
    if not isinstance(payload, dict):
        raise BadRequest(400, 'body must be a JSON object like {"messages": [{"role": "user", "content": "..."}]}')
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "'messages' must be a non-empty list of {role, content} objects")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadRequest(400, "'messages' has no user message; the last user message is the question")
    content = users[-1].get("content")
    if isinstance(content, list):   # content parts: keep the text ones
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str) or not content.strip():
        raise BadRequest(400, "the last user message has no text content")
    if len(content) > config.max_question_chars:
        raise BadRequest(400, f"the question has {len(content)} characters > max_question_chars="
                              f"{config.max_question_chars}; shorten it")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(400, "'stream' must be true or false")
    return content.strip(), stream


def create_agent_app(runner: AgentRunner, config: AgentConfig | None = None):
    """The FastAPI app: /v1/chat/completions, /v1/models, /health, and the page at /."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles

    config = config or runner.config
    app = FastAPI(title="searchr1 agent", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runner = runner
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    def error(status: int, message: str, kind: str = "invalid_request_error", **headers) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status,
                            headers=headers or None)

    def authorized(request: Request) -> bool:
        return config.token is None or bearer_matches(request.headers.get("authorization", ""), config.token)

    async def read_json(request: Request) -> object:
        if not is_json(request.headers.get("content-type", "")):
            raise BadRequest(415, "send the body as application/json")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise BadRequest(413, f"body exceeds max_body_bytes={config.max_body_bytes}")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
            raise BadRequest(400, f"malformed JSON body ({type(e).__name__})") from None

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, "auth_required": config.token is not None,
                "pending": runner.pending,
                "batches": runner.batches, "questions": runner.questions}

    @app.get("/v1/models")
    async def models(request: Request):
        if not authorized(request):
            return error(401, "missing or wrong bearer token", "authentication_error")
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "owned_by": "searchr1"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if not authorized(request):
            return error(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
                         "authentication_error")
        try:
            question, stream = parse_chat_request(await read_json(request), config)
        except BadRequest as e:
            return error(e.status, str(e), e.kind)
        if runner.pending >= config.max_pending:
            return error(503, f"{runner.pending} requests are waiting (max_pending={config.max_pending}); retry later",
                         "server_busy", **{"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        searches: list[dict] = []

        def on_event(kind: str, payload: dict) -> None:   # called in the worker thread
            if kind == "search":
                searches.append({"query": payload["query"], "error": payload["error"],
                                 "passages": [passage_json(h) for h in payload["hits"]]})
                loop.call_soon_threadsafe(events.put_nowait, {"type": "search", **searches[-1]})
            elif kind == "turn":
                loop.call_soon_threadsafe(events.put_nowait, {"type": "turn", "text": payload["text"]})

        fut = runner.submit(question, on_event)
        done = asyncio.wrap_future(fut)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not stream:
            try:
                t = await done
            except Exception as e:   # the engine failed on this batch (e.g. a retrieval outage)
                return error(500, f"the agent failed: {type(e).__name__}: {e}", "server_error")
            return completion_json(cid, created, config.model_name, t, trajectory_json(t, searches))

        async def sse():
            def chunk(delta: dict, finish: str | None = None, **extra) -> str:
                body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": config.model_name,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
                return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

            yield chunk({"role": "assistant", "content": ""})
            while not (done.done() and events.empty()):
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield chunk({}, searchr1_event=getter.result())
                else:
                    getter.cancel()
            try:
                t = done.result()
            except Exception as e:
                yield f"data: {json.dumps({'error': {'message': f'the agent failed: {e}', 'type': 'server_error'}})}\n\n"
                yield "data: [DONE]\n\n"
                return
            if t.answer is not None:
                yield chunk({"content": t.answer})
            yield chunk({}, "stop" if t.answer is not None else "length", searchr1=trajectory_json(t, searches))
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def completion_json(cid: str, created: int, model: str, t: Trajectory, trajectory: dict) -> dict:
    sampled = sum(t.response_mask)
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": t.answer or ""},
                         "finish_reason": "stop" if t.answer is not None else "length"}],
            "usage": {"prompt_tokens": len(t.prompt_ids), "completion_tokens": sampled,
                      "total_tokens": len(t.prompt_ids) + sampled},
            "searchr1": trajectory}
