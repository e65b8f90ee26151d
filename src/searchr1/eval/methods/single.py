"""Single-call baselines: ``direct``, ``cot``, ``r1`` (no retrieval) and ``rag`` (top-k for the question).

Each example is one user message built with DATA's templates (``searchr1.data.prompts``)
and one generation that stops at ``</answer>``.

* ``direct`` — answer at once, no reasoning, no retrieval.
* ``cot`` — reason step by step, then answer.
* ``r1`` — Search-R1's no-search template (reason in ``<think>``, answer in ``<answer>``):
  the prompt an ``r1`` policy (RL without a search engine) is trained with. As the paper,
  only a tagged answer counts.
* ``rag`` — retrieve ``ctx.topk`` passages with the question itself, put them in the
  prompt, answer.
"""
from __future__ import annotations

import time

from searchr1.data.prompts import get_template, make_prompt
from searchr1.data.qa import QAExample
from searchr1.eval.methods.base import Method, user_prompt
from searchr1.eval.types import EvalContext, Prediction
from searchr1.protocol import failure_body

STOP = ["</answer>"]


class SinglePrompt(Method):
    template = ""

    def __init__(self):
        self.templates = {self.template: get_template(self.template)}

    def prompts(self, examples: list[QAExample], ctx: EvalContext) -> tuple[list[str], list[dict]]:
        """(prompt text, per-example stats) for each example."""
        return [make_prompt(ex.question, self.template) for ex in examples], [{} for _ in examples]

    def run(self, examples, ctx, dataset: str = "") -> list[Prediction]:
        started = time.perf_counter()
        prompts, stats = self.prompts(examples, ctx)
        transcripts = [user_prompt(p) for p in prompts]
        completions = ctx.generator.complete(transcripts, ctx.decoding, stop=STOP)
        preds = []
        for ex, t, c, st in zip(examples, transcripts, completions, stats):
            t.add("model", c.text)
            preds.append(self.finish(ex, dataset, t, started, turns=1, response_tokens=c.n_tokens,
                                     finish_reason=c.finish_reason, **st))
        return preds


class Direct(SinglePrompt):
    name, template, answer_rules = "direct", "direct", ("tag", "plain")


class CoT(SinglePrompt):
    name, template, answer_rules = "cot", "cot", ("tag", "answer-is")


class R1(SinglePrompt):
    name, template, answer_rules = "r1", "r1", ("tag",)


class RAG(SinglePrompt):
    name, template, answer_rules, needs_retriever = "rag", "rag", ("tag", "plain"), True

    def prompts(self, examples, ctx):
        hits, errors = ctx.search([ex.question for ex in examples])
        prompts, stats = [], []
        for ex, h, err in zip(examples, hits, errors):
            passages = failure_body(err) + "\n" if err else h
            prompts.append(make_prompt(ex.question, "rag", passages=passages))
            stats.append({"searches": 1, "queries": [ex.question], "search_failures": int(bool(err)),
                          "retrieved_ids": [[x.doc.id for x in h]]})
        return prompts, stats
