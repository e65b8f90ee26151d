"""The text-level search loop shared by ``search-o1`` and ``search-r1`` on API models.

Per row: generate until ``</search>`` or ``</answer>``; parse the action with the
rollout's parser (``searchr1.rollout.tags``); run all queries of the batch in one
retriever call; inject ``<information>…</information>`` (optionally condensed first,
see ``search_o1.py``); continue. A turn without a valid action gets Search-R1's
corrective message. The last turn may only answer. Token ids are not kept: the
trajectory is text (``Prediction.segments``).
"""
from __future__ import annotations

from collections.abc import Callable

from searchr1.eval.types import EvalContext
from searchr1.models.generate import Transcript
from searchr1.rollout.config import ANSWER_STOP, SEARCH_STOP
from searchr1.rollout.observation import failure_body, information, render_passages
from searchr1.rollout.tags import INVALID_ACTION_TEXT, parse_action
from searchr1.search.base import Hit

# condense(rows, queries, hits) -> observation bodies; rows index the batch
Condense = Callable[[list[int], list[str], list[list[Hit]]], list[str]]
TurnCallback = Callable[[int, str, dict], None]  # (row, event, payload) for live display


def new_stats() -> dict:
    return dict(turns=0, searches=0, queries=[], retrieved_ids=[], search_failures=0, response_tokens=0,
                valid_actions=0, invalid_actions=0, finish_reason="max_turns")


def agent_loop(transcripts: list[Transcript], ctx: EvalContext, condense: Condense | None = None,
               on_event: TurnCallback | None = None) -> list[dict]:
    """Run the loop on ``transcripts`` in place; return per-row stats.

    ``on_event(row, kind, payload)`` is called as things happen: ``"model"`` (text of a
    turn), ``"search"`` (``{"query", "hits"}``), ``"information"`` (injected text),
    ``"answer"`` (``{"answer"}``), ``"invalid"``.
    """
    stats = [new_stats() for _ in transcripts]
    emit = on_event or (lambda *a: None)
    active = list(range(len(transcripts)))
    for turn in range(ctx.max_turns):
        if not active:
            break
        last = turn == ctx.max_turns - 1
        stop = [ANSWER_STOP] if last else [SEARCH_STOP, ANSWER_STOP]
        comps = ctx.generator.complete([transcripts[i] for i in active], ctx.decoding, stop=stop)
        rows, queries, still = [], [], []
        for i, c in zip(active, comps):
            s = stats[i]
            s["turns"] += 1
            s["response_tokens"] += c.n_tokens
            transcripts[i].add("model", c.text)
            emit(i, "model", {"text": c.text})
            action = parse_action(c.text, allow_search=not last)
            if action.kind == "answer":
                s["valid_actions"] += 1
                s["finish_reason"] = "answer"
                emit(i, "answer", {"answer": action.content})
            elif action.kind == "search":
                s["valid_actions"] += 1
                rows.append(i)
                queries.append(action.content)
            else:
                s["invalid_actions"] += 1
                emit(i, "invalid", {"reason": action.reason})
                if not last:
                    transcripts[i].add("env", INVALID_ACTION_TEXT)
                    still.append(i)
        if rows:
            hits, errors = ctx.search(queries)
            bodies = [render_passages(h) for h in hits]
            if condense is not None:
                ok = [k for k, e in enumerate(errors) if e is None]
                condensed = condense([rows[k] for k in ok], [queries[k] for k in ok], [hits[k] for k in ok])
                for k, body in zip(ok, condensed):
                    bodies[k] = body
            for k, i in enumerate(rows):
                s = stats[i]
                s["searches"] += 1
                s["queries"].append(queries[k])
                s["retrieved_ids"].append([h.doc.id for h in hits[k]])
                emit(i, "search", {"query": queries[k], "hits": hits[k], "error": errors[k]})
                body = failure_body(RuntimeError(errors[k])) if errors[k] else bodies[k]
                if errors[k]:
                    s["search_failures"] += 1
                obs = information(body)
                transcripts[i].add("env", obs)
                emit(i, "information", {"text": obs})
                still.append(i)
        active = sorted(still)
    return stats
