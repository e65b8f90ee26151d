"""``search-r1`` — a policy that interleaves reasoning and ``<search>`` calls (the paper's method).

With a local model it runs the same :class:`~searchr1.rollout.engine.RolloutEngine` the
trainer uses (token-in/token-out, Search-R1's template, greedy by default), so an
evaluation sees exactly what training saw. With an API model (no token ids) it runs
the text-level loop of ``agent.py`` with the same template, parser, corrective message
and observation format. ``engine="auto"`` picks the rollout engine when the context
holds a local model and tokenizer.

Only a tagged ``<answer>`` counts, as in the paper's outcome reward.
"""
from __future__ import annotations

import time

from searchr1.data.prompts import apply_chat_template, get_template, make_prompt
from searchr1.eval.methods.agent import agent_loop
from searchr1.eval.methods.base import Method, score, user_prompt
from searchr1.eval.types import EvalContext, Prediction

ENGINES = ("auto", "rollout", "text")


class SearchR1(Method):
    name, needs_retriever, answer_rules = "search-r1", True, ("tag",)
    templates = {"search-r1": get_template("search-r1")}

    def __init__(self, engine: str = "auto", max_turn_tokens: int | None = None):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
        self.engine, self.max_turn_tokens = engine, max_turn_tokens

    def describe(self) -> dict:
        return {**super().describe(), "engine": self.engine}

    def _use_rollout(self, ctx: EvalContext) -> bool:
        local = ctx.model is not None and ctx.tokenizer is not None
        if self.engine == "rollout" and not local:
            raise ValueError("engine='rollout' needs a local model: set ctx.model and ctx.tokenizer "
                             "(API models use engine='text').")
        return local if self.engine == "auto" else self.engine == "rollout"

    def run(self, examples, ctx: EvalContext, dataset: str = "", on_event=None) -> list[Prediction]:
        if self._use_rollout(ctx):
            return self._run_rollout(examples, ctx, dataset)
        started = time.perf_counter()
        transcripts = [user_prompt(make_prompt(ex.question, "search-r1")) for ex in examples]
        stats = agent_loop(transcripts, ctx, on_event=on_event)
        return [self.finish(ex, dataset, t, started, **s) for ex, t, s in zip(examples, transcripts, stats)]

    def _run_rollout(self, examples, ctx: EvalContext, dataset: str) -> list[Prediction]:
        from searchr1.eval.methods.rollout_bridge import run_engine

        started = time.perf_counter()
        prompts = [apply_chat_template(ctx.tokenizer, make_prompt(ex.question, "search-r1")) for ex in examples]
        trajs, segments = run_engine(ctx, prompts, [str(ex.id) for ex in examples], search=True,
                                     max_turn_tokens=self.max_turn_tokens)
        preds = []
        for ex, tr, segs in zip(examples, trajs, segments):
            pred = Prediction(
                method=self.name, dataset=dataset, id=str(ex.id), question=ex.question,
                golden_answers=list(ex.golden_answers), answer=tr.answer,
                answer_source="tag" if tr.answer is not None else "none", response=tr.response_text,
                segments=segs, turns=tr.turns, searches=tr.searches, response_tokens=sum(tr.response_mask),
                invalid_actions=tr.invalid_actions, valid_actions=tr.valid_actions,
                search_failures=tr.search_failures, queries=list(tr.queries),
                retrieved_ids=[list(x) for x in tr.retrieved_ids], finish_reason=tr.finish_reason,
                seconds=round(time.perf_counter() - started, 3))
            preds.append(score(pred, ex))
        return preds
