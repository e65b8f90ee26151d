"""``search-o1`` — prompt-based agentic search with a reason-in-documents step (Li et al., 2025).

No training: the instruction teaches the ``<search> query </search>`` protocol and the rollout
engine runs the loop (as for ``search-r1``: HFBackend for local models, ChatBackend for API
models). Before documents are injected, the engine's ``observe`` hook runs a separate
*reason-in-documents* generation (a one-turn, no-search engine run on the same backend) that reads
them, given the question, the query and the reasoning so far, and writes only the helpful facts;
that condensed note is what the model sees inside ``<information>``. The raw documents never enter
the reasoning chain, which is the point of Search-o1's design.

Departures: Search-o1 uses special tokens ``<|begin_search_query|>`` etc. and a long o1-style
instruction; here it speaks the same tag protocol as Search-R1 so the two are compared on the same
parser and budgets, with shorter zero-shot prompts. The condensing run stops at a blank line (and,
being an engine run, at ``</answer>``).
"""
from __future__ import annotations

import time

from searchr1.data.prompts import normalize_question, render_passages
from searchr1.eval.methods.base import Method
from searchr1.eval.methods.rollout_bridge import EngineParts, model_text, prediction, run_engine
from searchr1.eval.types import EvalContext, Prediction
from searchr1.models.generate import cut_at_stop

CONDENSE_STOP = "\n\n"
NOTHING_FOUND = "No helpful information found."

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
        parts = EngineParts(ctx)
        so_far = ["" for _ in examples]        # each row's response as the engine builds it
        extra_tokens = [0] * len(examples)     # reason-in-documents tokens, per row

        def track(row: int, kind: str, payload: dict) -> None:
            if kind in ("turn", "observation"):
                so_far[row] += payload["text"]
            if on_event is not None:
                on_event(row, kind, payload)

        def condense(rows: list[int], queries: list[str], hits: list) -> list[str]:
            prompts = [parts.prompt(self._condense_prompt(examples[i].question, so_far[i], q, h))
                       for i, q, h in zip(rows, queries, hits)]
            notes = run_engine(ctx, parts, prompts, search=False, stop=(CONDENSE_STOP,),
                               max_turn_tokens=min(self.condense_tokens, ctx.decoding.max_new_tokens))
            out = []
            for i, t in zip(rows, notes):
                extra_tokens[i] += t.generated_tokens
                text, _ = cut_at_stop(parts.tokenizer.decode(t.response_ids, skip_special_tokens=True),
                                      [CONDENSE_STOP])
                out.append(text.strip() or NOTHING_FOUND)
            return out

        prompts = [parts.prompt(SEARCH_O1_TEMPLATE.replace("{question}", normalize_question(ex.question)))
                   for ex in examples]
        trajs = run_engine(ctx, parts, prompts, search=True, example_ids=[str(ex.id) for ex in examples],
                           observe=condense, on_event=track)
        preds = []
        for i, (ex, t) in enumerate(zip(examples, trajs)):
            answer, source = self.extract(model_text(t, parts.tokenizer))
            preds.append(prediction(self.name, ex, dataset, t, started, answer, source, extra_tokens[i]))
        return preds

    def _condense_prompt(self, question: str, response: str, query: str, hits) -> str:
        reasoning = response[-self.reasoning_chars:] if self.reasoning_chars else ""
        return (REASON_IN_DOCUMENTS_TEMPLATE.replace("{question}", normalize_question(question))
                .replace("{reasoning}", reasoning.strip() or "(none yet)").replace("{query}", query)
                .replace("{documents}", render_passages(hits) or "(no documents)"))
