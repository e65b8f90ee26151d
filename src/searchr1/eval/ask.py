"""``searchr1 ask "question"``: one question, the trajectory printed live as it unfolds.

It is the rollout engine at batch size 1 (HFBackend for a local model, ChatBackend for an API
model, as in ``search-r1``'s evaluation), watched through its ``on_event`` hook, so the printed
trajectory is what the policy reads and the result is what an evaluation would record.
"""
from __future__ import annotations

import json

from searchr1.data.prompts import make_prompt
from searchr1.errors import SearchR1Error
from searchr1.eval.methods.rollout_bridge import EngineParts, run_engine
from searchr1.eval.types import EvalContext
from searchr1.protocol import complete_blocks
from searchr1.search.base import Document, Hit


class LivePrinter:
    """Rich rendering of the engine's events (think, search + titles, answer)."""

    def __init__(self, console):
        self.console = console

    def __call__(self, row: int, kind: str, payload: dict) -> None:
        from rich.markup import escape

        c = self.console
        if kind == "turn":
            text = payload["text"]
            tagged = any(next(complete_blocks(text, tag), None) for tag in ("think", "search", "answer"))
            if text.strip() and not tagged:
                c.print(f"[dim]{escape(text.strip())}[/dim]")
            for _, _, body in complete_blocks(text, "think"):
                c.print(f"[bold magenta]think[/]  [dim]{escape(body.strip())}[/dim]")
        elif kind == "search":
            c.print(f"[bold cyan]search[/] {escape(payload['query'])}")
            if payload.get("error"):
                c.print(f"  [red]failed: {escape(payload['error'])}[/red]")
            for k, h in enumerate(payload["hits"], 1):
                c.print(f"  [cyan]{k}.[/] {escape(h.doc.title)} [dim]({h.score:.2f})[/dim]")
        elif kind == "answer":
            c.print(f"[bold green]answer[/] {escape(payload['answer'])}")
        elif kind == "invalid":
            c.print(f"[yellow]invalid action[/] [dim]({escape(payload.get('reason', ''))})[/dim]")


def ask(question: str, ctx: EvalContext, live=None, template: str = "search-r1") -> dict:
    """Run one question; return ``{question, answer, finish_reason, turns, searches, queries,
    retrieved: [[{"id", "title", "score"}]], response_tokens, invalid_actions, segments}``.
    ``live`` receives the engine's events as they happen."""
    retrieved: list[list[dict]] = []

    def on_event(row, kind, payload):
        if kind == "search":
            retrieved.append([{"id": h.doc.id, "title": h.doc.title, "score": round(h.score, 4)}
                              for h in payload["hits"]])
        if live is not None:
            live(row, kind, payload)

    parts = EngineParts(ctx)
    t = run_engine(ctx, parts, [parts.prompt(make_prompt(question, template))], search=True, on_event=on_event)[0]
    return {"question": question, "answer": t.answer, "finish_reason": t.finish_reason,
            "turns": t.turns, "searches": t.searches, "queries": list(t.queries),
            "retrieved": retrieved, "response_tokens": t.generated_tokens,
            "invalid_actions": t.invalid_actions,
            "segments": [["model" if sampled else "env", text] for text, sampled in t.segments]}


def print_json(result: dict) -> None:
    print(json.dumps(result, ensure_ascii=False))


class AgentError(SearchR1Error):
    """A running agent service (`searchr1 serve-agent`) could not answer."""


def ask_agent(url: str, question: str, token: str | None = None, live=None, timeout: float = 600.0) -> dict:
    """One question to a running ``searchr1 serve-agent`` at ``url`` (streamed): ``live`` gets the same events
    as :func:`ask`'s, and the result has its keys (``queries``, ``retrieved``, ...) plus ``citations``."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"model": "searchr1", "messages": [{"role": "user", "content": question}], "stream": True}
    endpoint = url.rstrip("/").removesuffix("/v1") + "/v1/chat/completions"
    final = None
    try:
        with httpx.stream("POST", endpoint, json=body, headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                r.read()
                raise AgentError(f"{endpoint} answered HTTP {r.status_code}: {r.text[:300]}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: "):])
                if "error" in chunk:
                    raise AgentError(f"{endpoint}: {chunk['error'].get('message')}")
                event = chunk.get("searchr1_event")
                if event and live is not None:
                    if event["type"] == "turn":
                        live(0, "turn", {"text": event["text"]})
                    elif event["type"] == "search":
                        hits = [Hit(Document(p["id"], p["title"], p["text"]), p["score"]) for p in event["passages"]]
                        live(0, "search", {"query": event["query"], "error": event["error"], "hits": hits})
                final = chunk.get("searchr1", final)
    except httpx.HTTPError as e:
        raise AgentError(f"could not reach the agent at {endpoint} ({type(e).__name__}: {e}); start it with "
                         "`searchr1 serve-agent` or check the URL") from e
    if final is None:
        raise AgentError(f"{endpoint} ended its stream without the final chunk")
    if live is not None and final["answer"] is not None:
        live(0, "answer", {"answer": final["answer"]})
    searches = final["searches"]
    return {"question": question, "answer": final["answer"], "finish_reason": final["finish_reason"],
            "turns": final["turns"], "searches": len(searches), "queries": [s["query"] for s in searches],
            "retrieved": [[{"id": p["id"], "title": p["title"], "score": p["score"]} for p in s["passages"]]
                          for s in searches], "citations": final["citations"]}
