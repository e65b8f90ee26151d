"""``searchr1 ask "question"``: one question, the trajectory printed live as it unfolds.

The turn loop is the text-level loop of ``methods/agent.py`` at batch size 1 (the rollout
engine has no per-turn hook), with the engine's parser, corrective message and
observation format, so the printed trajectory is what the policy reads. Local models
continue their own assistant turn (chat template + response so far); API models get the
message rendering of ``OpenAIChatBackend``.
"""
from __future__ import annotations

import json
import re

from searchr1.data.prompts import make_prompt
from searchr1.eval.methods.agent import agent_loop
from searchr1.eval.methods.base import user_prompt
from searchr1.eval.types import EvalContext
from searchr1.rewards import extract_answer

_BLOCK = re.compile(r"<(think|search|answer)>(.*?)</\1>", re.DOTALL)


class LivePrinter:
    """Rich rendering of agent-loop events (think, search + titles, answer)."""

    def __init__(self, console):
        self.console = console

    def __call__(self, row: int, kind: str, payload: dict) -> None:
        from rich.markup import escape

        c = self.console
        if kind == "model":
            text = payload["text"]
            blocks = _BLOCK.findall(text)
            if not blocks and text.strip():
                c.print(f"[dim]{escape(text.strip())}[/dim]")
            for tag, body in blocks:
                if tag == "think":
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
    retrieved: [[{"id", "title", "score"}]], segments}``. ``live`` receives events as they happen."""
    transcript = user_prompt(make_prompt(question, template))
    retrieved: list[list[dict]] = []

    def on_event(row, kind, payload):
        if kind == "search":
            retrieved.append([{"id": h.doc.id, "title": h.doc.title, "score": round(h.score, 4)}
                              for h in payload["hits"]])
        if live is not None:
            live(row, kind, payload)

    stats = agent_loop([transcript], ctx, on_event=on_event)[0]
    model_text = "".join(t for s, t in transcript.segments if s == "model")
    return {"question": question, "answer": extract_answer(model_text), "finish_reason": stats["finish_reason"],
            "turns": stats["turns"], "searches": stats["searches"], "queries": stats["queries"],
            "retrieved": retrieved, "response_tokens": stats["response_tokens"],
            "invalid_actions": stats["invalid_actions"],
            "segments": [[s, t] for s, t in transcript.segments]}


def print_json(result: dict) -> None:
    print(json.dumps(result, ensure_ascii=False))
