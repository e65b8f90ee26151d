"""``searchr1 ask "question"``: one question, the trajectory printed live as it unfolds.

It is the rollout engine at batch size 1 (HFBackend for a local model, ChatBackend for an API
model, as in ``search-r1``'s evaluation), watched through its ``on_event`` hook, so the printed
trajectory is what the policy reads and the result is what an evaluation would record.
"""
from __future__ import annotations

import json

from searchr1.data.prompts import make_prompt
from searchr1.eval.methods.rollout_bridge import EngineParts, run_engine
from searchr1.eval.types import EvalContext
from searchr1.protocol import complete_blocks


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
