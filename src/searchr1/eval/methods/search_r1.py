"""``search-r1`` — a policy that interleaves reasoning and ``<search>`` calls (the paper's method).

It runs the :class:`~searchr1.rollout.engine.RolloutEngine` the trainer uses, with Search-R1's
template, greedy by default: on :class:`~searchr1.rollout.backends.hf.HFBackend` for a local
model (token-in/token-out, so an evaluation sees exactly what training saw) and on the text-level
:class:`~searchr1.rollout.backends.openai.ChatBackend` for an API model (see ``rollout_bridge.py``;
``engine="text"`` forces the text level for a local generator too).

Only a tagged ``<answer>`` counts, as in the paper's outcome reward: the answer is the engine's
(the first complete action of the answering turn).

``template`` (a template name or a raw template with ``{question}``) and ``chat_template`` (wrap the
prompt in the tokenizer's chat template, as Search-R1's data pipeline does whenever the tokenizer has
one; False sends the raw prompt) are recorded in the protocol manifest (template text hash and the flag).
"""
from __future__ import annotations

import time

from searchr1.data.prompts import get_template, make_prompt
from searchr1.eval.methods.base import Method
from searchr1.eval.methods.rollout_bridge import ENGINES, EngineParts, prediction, run_engine
from searchr1.eval.types import EvalContext, Prediction


class SearchR1(Method):
    name, needs_retriever, answer_rules = "search-r1", True, ("tag",)
    templates = {"search-r1": get_template("search-r1")}

    def __init__(self, engine: str = "auto", max_turn_tokens: int | None = None, template: str = "search-r1",
                 chat_template: bool = True):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
        self.engine, self.max_turn_tokens = engine, max_turn_tokens
        self.template, self.chat_template = template, chat_template
        self.templates = {"search-r1": get_template(template)}   # the text actually used (hashed in the manifest)

    def describe(self) -> dict:
        return {**super().describe(), "engine": self.engine, "chat_template": self.chat_template}

    def run(self, examples, ctx: EvalContext, dataset: str = "", on_event=None) -> list[Prediction]:
        started = time.perf_counter()
        parts = EngineParts(ctx, self.engine)
        raw = [make_prompt(ex.question, self.template) for ex in examples]
        prompts = [parts.prompt(p) for p in raw] if self.chat_template else raw
        trajs = run_engine(ctx, parts, prompts, search=True, example_ids=[str(ex.id) for ex in examples],
                           max_turn_tokens=self.max_turn_tokens, on_event=on_event)
        return [prediction(self.name, ex, dataset, t, started, t.answer, "tag" if t.answer is not None else "none")
                for ex, t in zip(examples, trajs)]
