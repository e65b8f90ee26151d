"""``search-o1`` — prompt-based agentic search with a reason-in-documents step (Li et al., 2025).

No training: the instruction teaches the ``<search> query </search>`` protocol, the
loop (``agent.py``) runs the searches, and before documents are injected a separate
*reason-in-documents* call reads them, given the question, the query and the
reasoning so far, and writes only the helpful facts; that condensed note is what the
model sees inside ``<information>``. The raw documents never enter the reasoning
chain, which is the point of Search-o1's design.

Departures: Search-o1 uses special tokens ``<|begin_search_query|>`` etc. and a
long o1-style instruction; here it speaks the same tag protocol as Search-R1 so the
two are compared on the same parser and budgets, with shorter zero-shot prompts.
"""
from __future__ import annotations

import time

from searchr1.data.prompts import normalize_question
from searchr1.eval.methods.agent import agent_loop
from searchr1.eval.methods.base import Method, user_prompt
from searchr1.eval.types import EvalContext, Prediction
from searchr1.models.generate import Decoding
from searchr1.rollout.observation import render_passages

SEARCH_O1_TEMPLATE = (
    "You are a reasoning assistant with a search engine. Think step by step. Whenever you are "
    "missing a fact, write a search query as <search> query </search>; the findings will be given "
    "back between <information> and </information>. Search as often as needed. When you are sure, "
    "write the final short answer as <answer> answer </answer>, for example <answer> Beijing </answer>.\n"
    "Question: {question}\n"
)

REASON_IN_DOCUMENTS_TEMPLATE = (
    "Read the searched documents and extract the information that helps answer the search query, "
    "given the question and the reasoning so far. Write only the helpful facts, in one or two short "
    "sentences. If nothing helps, write: No helpful information found.\n"
    "Question: {question}\n"
    "Reasoning so far: {reasoning}\n"
    "Search query: {query}\n"
    "Searched documents:\n{documents}\n"
)


class SearchO1(Method):
    name, needs_retriever, answer_rules = "search-o1", True, ("tag", "answer-is")
    templates = {"search-o1": SEARCH_O1_TEMPLATE, "reason-in-documents": REASON_IN_DOCUMENTS_TEMPLATE}

    def __init__(self, condense_tokens: int = 96, reasoning_chars: int = 1500):
        if condense_tokens < 1 or reasoning_chars < 0:
            raise ValueError("condense_tokens must be >= 1 and reasoning_chars >= 0.")
        self.condense_tokens, self.reasoning_chars = condense_tokens, reasoning_chars

    def describe(self) -> dict:
        return {**super().describe(), "condense_tokens": self.condense_tokens,
                "reasoning_chars": self.reasoning_chars}

    def run(self, examples, ctx: EvalContext, dataset: str = "", on_event=None) -> list[Prediction]:
        started = time.perf_counter()
        transcripts = [user_prompt(SEARCH_O1_TEMPLATE.replace("{question}", normalize_question(ex.question)))
                       for ex in examples]
        extra_tokens = [0] * len(examples)
        dec = Decoding(max_new_tokens=min(self.condense_tokens, ctx.decoding.max_new_tokens),
                       temperature=ctx.decoding.temperature, top_p=ctx.decoding.top_p, seed=ctx.decoding.seed)

        def condense(rows, queries, hits):
            reqs = []
            for i, q, h in zip(rows, queries, hits):
                reasoning = transcripts[i].response[-self.reasoning_chars:] if self.reasoning_chars else ""
                reqs.append(user_prompt(
                    REASON_IN_DOCUMENTS_TEMPLATE.replace("{question}", normalize_question(examples[i].question))
                    .replace("{reasoning}", reasoning.strip() or "(none yet)").replace("{query}", q)
                    .replace("{documents}", render_passages(h) or "(no documents)")))
            comps = ctx.generator.complete(reqs, dec, stop=["\n\n"])
            for i, c in zip(rows, comps):
                extra_tokens[i] += c.n_tokens
            return [c.text.strip() or "No helpful information found." for c in comps]

        stats = agent_loop(transcripts, ctx, condense=condense, on_event=on_event)
        preds = []
        for i, ex in enumerate(examples):
            stats[i]["response_tokens"] += extra_tokens[i]
            preds.append(self.finish(ex, dataset, transcripts[i], started, **stats[i]))
        return preds
